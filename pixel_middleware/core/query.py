"""Query strings into flat parameters, and flat dot-notation parameters into nested events.

Every dialect's request is a query string: :func:`parse_query` reads it
within this library's limits (size, count, percent-encoding), and
:class:`FlatForm` turns ``context.page.path=...`` parameters into the nested
event, with :func:`coerce_number` deciding which values are numbers. One
piece of code for all dialects, so that they cannot read a query apart; the
event's own rules (timestamps, identifiers, what each type requires) are in
:mod:`pixel_middleware.core.events`.
"""
from __future__ import annotations

import re
from binascii import a2b_qp
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote_to_bytes

from .events import MAX_DEPTH, DecodeError, Event

#: Longest query string accepted, in bytes (RudderStack's 32 KB message limit).
MAX_QUERY_BYTES = 32 * 1024
#: Most query parameters accepted in one request.
MAX_PARAMETERS = 256
#: Longest number text taken as a number: longer ones stay strings in the flat
#: dialects and are refused in JSON (no float or safe integer needs more).
MAX_NUMBER_CHARS = 40
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: A piece of a query holding a second "=" (in its value).
_TWO_EQUALS = re.compile(r"=[^&]*=")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")
_MAX_SAFE_INTEGER = 2**53


def parse_query(query_string: str) -> Dict[str, str]:
    """Decode a WSGI ``QUERY_STRING`` into a dict, keeping the first of repeated names.

    First-wins matches rudder-server. Percent-escapes that are not two hex
    digits and bytes that are not UTF-8 are refused rather than guessed at,
    since a value changed in transit is not the value the sender meant.

    This is ``urllib.parse.parse_qsl`` without its per-pair overhead: when
    every piece is ``name=value`` (URLs as built are), the whole query is
    split and percent-decoded in a few C calls, with no loop over its pieces;
    otherwise the names and values are split apart first and then
    percent-decoded together in one pass (see :func:`_unquote`). The dict is
    built in C unless a name repeats.
    """
    if len(query_string) > MAX_QUERY_BYTES:
        raise DecodeError("query_too_long", f"query string is over {MAX_QUERY_BYTES} bytes")
    count = query_string.count("&") + 1
    flat = None
    if (count <= MAX_PARAMETERS and query_string.count("=") == count and query_string.isascii()
            and not _TWO_EQUALS.search(query_string)):
        # Every piece is one name, one "=" and one value (as many "=" as pieces, none with two),
        # as in every URL this library builds: the whole query is split and decoded at once.
        flat = _split_simple(query_string, count)
    if flat is None:
        flat = _split(query_string, count)
    pairs = iter(flat)
    params = dict(zip(pairs, pairs))
    if len(params) * 2 != len(flat):  # a repeated name: the first one wins, as in rudder-server
        params = {}
        for i in range(0, len(flat), 2):
            params.setdefault(flat[i], flat[i + 1])
    return params


def _split_simple(query_string: str, count: int) -> Optional[List[str]]:
    """The names and values of an ASCII query of ``count`` ``name=value`` pieces, or ``None`` for :func:`_split`.

    "&" and "=" both become NUL and the escapes are decoded by binascii's
    quoted-printable decoder in one C call (see :func:`_unquote`). It leaves
    an escape that is not two hex digits as it is (or drops one character
    of it, for a trailing "%" or "%%"), while each valid escape shortens the
    text by two: so the decoded length tells whether every escape was valid,
    with no pattern search, provided that no line break could be read as a
    soft line break. A NUL decoded from ``%00`` or sent raw adds a piece.
    Whatever is odd, ``None`` hands it to :func:`_split`, which finds out.
    """
    if "%" not in query_string and "+" not in query_string:
        return query_string.replace("=", "&").split("&")
    if "\n" in query_string or "\r" in query_string:
        return None
    text = query_string.replace("&", "\x00").replace("=", "\x00").replace("+", " ").replace("%", "=")
    data = a2b_qp(text)
    if len(data) != len(text) - 2 * query_string.count("%"):
        return None
    try:
        flat = data.decode("utf-8").split("\x00")
    except UnicodeDecodeError:
        raise DecodeError("invalid_encoding", "percent-encoded bytes are not UTF-8") from None
    return flat if len(flat) == 2 * count else None


def _split(query_string: str, count: int) -> List[str]:
    """The names and values of any query, in order, for :func:`parse_query`."""
    if not query_string.isascii():
        # PEP 3333 hands the raw bytes over as latin-1.
        try:
            query_string = query_string.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise DecodeError("invalid_encoding", "query string is not UTF-8") from None
    if "%" in query_string and _BAD_PERCENT.search(query_string):
        raise DecodeError("invalid_encoding", "invalid percent-encoding")
    if count > MAX_PARAMETERS:
        raise DecodeError("too_many_parameters", f"more than {MAX_PARAMETERS} parameters")
    flat: List[str] = []
    for piece in query_string.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            flat += (name, value)
    if "%" in query_string or "+" in query_string:
        try:
            if "\x00" in query_string or "%00" in query_string:
                flat = [_unquote(text) for text in flat]
            else:
                # One percent-decoding pass over every name and value together, far
                # cheaper than one per string: with no NUL in the query, a NUL
                # separates the strings after decoding as before it.
                flat = _unquote("\x00".join(flat)).split("\x00")
        except UnicodeDecodeError:
            raise DecodeError("invalid_encoding", "percent-encoded bytes are not UTF-8") from None
    return flat


def _unquote(text: str) -> str:
    """``unquote_plus`` with strict UTF-8, for text whose escapes are all ``%XX`` (checked before).

    For ASCII text, binascii's quoted-printable decoder does the work in C,
    four times faster than ``unquote_to_bytes``: with every ``=`` escaped as
    ``=3D`` and ``%`` turned into ``=``, its ``=XX`` escapes are exactly the
    query's. tests/test_events.py checks it against ``unquote_to_bytes``.
    """
    text = text.replace("+", " ")
    if text.isascii():
        data = a2b_qp(text.replace("=", "=3D").replace("%", "="))
    else:
        data = unquote_to_bytes(text)
    return data.decode("utf-8")


def coerce_number(text: str) -> Any:
    """Turn ``text`` into a number only when the number prints back as exactly ``text``.

    So ``1920`` and ``29.99`` become numbers, while ``1.0.0``, ``007``,
    ``1.10``, ``1e3`` and integers beyond +/-2**53 (which JavaScript and
    float-based JSON parsers would round) stay strings.
    """
    if text.isdigit() and text.isascii() and len(text) < 16 and (text[0] != "0" or len(text) == 1):
        return int(text)  # the common case, without the pattern: a safe integer, no leading zero
    whole, dot, fraction = text.partition(".")
    if dot and whole.isdigit() and fraction.isdigit() and text.isascii() and len(text) <= MAX_NUMBER_CHARS:
        value = float(text)  # the next most common, a price: the pattern could only agree
        return value if repr(value) == text else text
    first = text[:1]
    if not ("0" <= first <= "9" or first == "-") or len(text) > MAX_NUMBER_CHARS:
        return text
    match = _NUMBER.match(text)
    if match is None:
        return text
    if match.group(1) is None and match.group(2) is None:
        number = int(text)
        if -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER and str(number) == text:
            return number
        return text
    value = float(text)
    return value if repr(value) == text else text


_NUMBER_START = frozenset("-0123456789")
_PLANS_MAX = 4096
#: Most layouts (orders of parameter names) a form compiles in its life, and most it
#: remembers having seen once: past these, new layouts take the loop.
_LAYOUTS_MAX = 256
#: Most parameter names of a layout worth compiling.
_LAYOUT_NAMES_MAX = 64


class FlatForm:
    """Builds events from flat query parameters: ``FlatForm(fields, containers)(params)``.

    ``fields`` maps a parameter name to a top-level event field (kept as a
    string); ``containers`` maps a dotted prefix (``p`` in ``p.plan``) to the
    object it fills (``properties``). Parameters in neither are ignored: cache
    busters, ``integrations.*`` and the write key all land there. Values in
    containers are numbers when :func:`coerce_number` says so.

    What each parameter name means is worked out once and remembered (up to
    4,096 names, then forgotten all at once, so that made-up names cannot
    grow it): pixel URLs repeat the same few dozen names, and splitting and
    checking them again on every request was a third of the decoding time.

    A layout (a request's names, in order) that the loop has built an event
    for twice is compiled into a function building its event in one
    expression (:func:`_compile_layout`), a third of the loop's time: the
    pixels of one template share a layout. At most 256 layouts are compiled
    in a form's life, so that made-up layouts can cost a process at most a
    fraction of a second of compiling in all; a layout seen once costs one
    lookup.
    """

    def __init__(self, fields: Mapping[str, str], containers: Mapping[str, str], *, coerce: bool = True) -> None:
        self.fields = fields
        self.containers = containers
        self.coerce = coerce
        self._plans: Dict[str, Any] = {}
        #: layout -> the function compiled to build its events.
        self._layouts: Dict[Tuple[str, ...], Callable[[Mapping[str, str]], Event]] = {}
        #: Layouts built once by the loop, not yet compiled.
        self._seen: Dict[Tuple[str, ...], bool] = {}

    def _plan(self, key: str) -> Any:
        """``(field, None, None)``, ``(container, parents, leaf)``, ``(None, None, None)`` to ignore, or a DecodeError to raise."""
        field = self.fields.get(key)
        if field is not None:
            return field, None, None
        head, dot, rest = key.partition(".")
        container = self.containers.get(head) if dot else None
        if container is None:
            return None, None, None
        parts = tuple(rest.split("."))
        if len(parts) + 2 > MAX_DEPTH:
            return DecodeError("nesting_too_deep", f"nesting deeper than {MAX_DEPTH} levels")
        if "" in parts:
            return DecodeError("invalid_parameter", "empty name in a dotted parameter")
        return container, parts[:-1], parts[-1]

    def __call__(self, params: Mapping[str, str]) -> Event:
        layout = tuple(params)
        build = self._layouts.get(layout)
        if build is not None:
            return build(params)
        event = self._loop(params)
        if len(self._layouts) < _LAYOUTS_MAX and len(layout) <= _LAYOUT_NAMES_MAX:
            if self._seen.pop(layout, False):
                self._layouts[layout] = _compile_layout(self, layout)
            else:
                if len(self._seen) >= _LAYOUTS_MAX:
                    self._seen.clear()
                self._seen[layout] = True
        return event

    def _loop(self, params: Mapping[str, str]) -> Event:
        """The event, built name by name: what every compiled layout must build too."""
        plans = self._plans
        coerce = self.coerce
        event: Event = {}
        for key, value in params.items():
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
                if len(plans) >= _PLANS_MAX:
                    plans.clear()
                plans[key] = plan
            if type(plan) is DecodeError:
                raise DecodeError(plan.reason, str(plan))
            target, parents, leaf = plan
            if leaf is None:
                if target is not None:
                    event[target] = value
                continue
            node = event.get(target)
            if node is None:
                node = event[target] = {}
            if coerce and value and value[0] in _NUMBER_START:
                value = coerce_number(value)
            for part in parents:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                elif type(child) is not dict:
                    raise DecodeError("conflicting_parameters", "a parameter is both a value and an object")
                node = child
            if leaf in node:  # p.a.b came first, now p.a: a name is both a value and an object
                raise DecodeError("conflicting_parameters", "a parameter is both a value and an object")
            node[leaf] = value
        return event


def _compile_layout(form: FlatForm, layout: Tuple[str, ...]) -> Callable[[Mapping[str, str]], Event]:
    """A function building ``form``'s event from the parameters of a request with these names, in order.

    For ``a=1&context.page.path=/x`` (``a`` a field) it is, in effect::

        values = tuple(params.values())
        return {k0: values[0], k1: {k2: {k3: coerced(values[1])}}}

    with the names bound as closure variables: no text of a request is ever
    part of the compiled source, which holds only ``k``/``v`` identifiers
    and indexes. Keys come in the order the loop inserts them, and a field
    named twice keeps its place and takes the last value, as in the loop:
    the event (and its JSON line) is the same, key order included. Only a
    layout the loop has built an event for is compiled, so every name is
    one the form takes and none is both a value and an object.
    """
    root: Dict[str, Any] = {}  # name -> value index, or a dict of the same shape (an object)
    coerced = set()
    for index, key in enumerate(layout):
        target, parents, leaf = form._plan(key)
        if target is None:
            continue
        node = root
        if leaf is None:
            leaf = target
        else:
            for part in (target,) + parents:
                node = node.setdefault(part, {})
            if form.coerce:
                coerced.add(index)
        node[leaf] = index
    names: List[str] = []

    def display(node: Dict[str, Any]) -> str:
        items = []
        for name, value in node.items():
            names.append(name)
            key = f"k{len(names) - 1}"
            if type(value) is dict:
                items.append(f"{key}: {display(value)}")
            elif value in coerced:
                items.append(f"{key}: (c(v) if (v := values[{value}]) and v[0] in S else v)")
            else:
                items.append(f"{key}: values[{value}]")
        return "{" + ", ".join(items) + "}"

    body = display(root)
    source = (f"def factory(c, S, {', '.join(f'k{i}' for i in range(len(names)))}):\n"
              f"    def build(params):\n        values = tuple(params.values())\n        return {body}\n"
              f"    return build\n")
    scope: Dict[str, Any] = {}
    exec(compile(source, "<pixel_middleware layout>", "exec"), scope)
    return scope["factory"](coerce_number, _NUMBER_START, *names)
