"""The canonical event and the rules every dialect shares to build one.

A canonical event is a plain JSON-able dict in the Segment/RudderStack spec
shape (``type``, ``event``, ``name``, ``userId``, ``anonymousId``,
``groupId``, ``previousId``, ``properties``, ``traits``, ``context``,
``timestamp``, ``receivedAt``, ``messageId``), so that a sink can forward it
unchanged to either service.

What is here is shared on purpose: the query limits, dot-notation nesting,
numeric coercion, timestamps and the per-type requirements are one piece of
code for all dialects, so that they cannot drift apart.
"""
from __future__ import annotations

import re
import time
from binascii import a2b_qp
from random import getrandbits
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote_to_bytes

Event = Dict[str, Any]

#: Longest query string accepted, in bytes (RudderStack's 32 KB message limit).
MAX_QUERY_BYTES = 32 * 1024
#: Most query parameters accepted in one request.
MAX_PARAMETERS = 256
#: Deepest nesting accepted, counted from the event itself: ``context.page.path``
#: is 3 deep.
MAX_DEPTH = 10
#: Longest number text taken as a number: longer ones stay strings in the flat
#: dialects and are refused in JSON (no float or safe integer needs more).
MAX_NUMBER_CHARS = 40
#: Most characters of a ``User-Agent`` copied into ``context.userAgent``.
MAX_USER_AGENT_CHARS = 1024
#: Most characters of a ``Referer`` copied into ``context.page.referrer``.
MAX_REFERRER_CHARS = 2048

_IDENTIFIERS = ("userId", "anonymousId", "groupId", "previousId", "messageId")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: A piece of a query holding a second "=" (in its value).
_TWO_EQUALS = re.compile(r"=[^&]*=")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")
_MAX_SAFE_INTEGER = 2**53
_MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: The event a click records unless the URL names another (``e``): Segment's email spec name.
#: Here, below both, because the click route and the compact dialect that builds click URLs share it.
CLICK_EVENT = "Email Link Clicked"


class DecodeError(ValueError):
    """A request that carries no acceptable event.

    ``reason`` is a short stable code, counted by the middleware and sent on
    :data:`~pixel_middleware.event_rejected`; the message is for humans and
    never contains the write key.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


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


def check_depth(value: Any, depth: int = 1) -> None:
    """Refuse JSON objects nested deeper than :data:`MAX_DEPTH` (counted from the event)."""
    stack = [(value, depth)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            raise DecodeError("nesting_too_deep", f"nesting deeper than {MAX_DEPTH} levels")
        if type(node) is dict:
            stack.extend((child, level + 1) for child in node.values())
        elif type(node) is list:
            stack.extend((child, level + 1) for child in node)


def format_epoch_ms(ms: int) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``: the one timestamp format events carry."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % millis


def parse_timestamp(value: Any) -> str:
    """Normalise a timestamp given in a request to :func:`format_epoch_ms`'s format."""
    return format_epoch_ms(epoch_ms(value))


def epoch_ms(value: Any) -> int:
    """Milliseconds since the epoch of a timestamp given in a request.

    Accepts epoch milliseconds (digits, as ``ts`` and ``ct`` carry them) and
    ISO 8601 strings (a naive one is taken as UTC); anything else, or a time
    outside years 1970 to 9999, is a :class:`DecodeError`.
    """
    if type(value) is int or (type(value) is str and value.isdigit() and value.isascii()):
        if len(str(value)) > 15 or not 0 <= int(value) <= _MAX_EPOCH_MS:
            raise DecodeError("invalid_timestamp", "timestamp is out of range")
        return int(value)
    if type(value) is not str or not 10 <= len(value) <= 40:
        raise DecodeError("invalid_timestamp", "timestamp is neither epoch ms nor ISO 8601")
    text = value[:-1] + "+00:00" if value[-1:] in "zZ" else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError("invalid_timestamp", "timestamp is neither epoch ms nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    if not 0 <= ms <= _MAX_EPOCH_MS:
        raise DecodeError("invalid_timestamp", "timestamp is out of range")
    return ms


_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_UUID4_MASK = ~((0xF000 << 64) | (0xC000 << 48))


def new_id() -> str:
    """A random (version 4) UUID as text, for ``messageId`` and a missing ``anonymousId``.

    ``str(uuid.uuid4())`` asks the kernel for randomness on every call and
    costs three times as much. Ids need to be unique, not secret, and
    :mod:`random` is reseeded from ``os.urandom`` in every forked worker, so
    two gunicorn workers never share a sequence.
    """
    h = "%032x" % (getrandbits(128) & _UUID4_MASK | _UUID4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: (second, its text down to the second) and (millisecond, its whole text), each replaced in one
#: assignment so that request threads never read one half of one moment and one of another.
_now_second: Tuple[int, str] = (-1, "")
_now_ms: Tuple[int, str] = (-1, "")


def now() -> str:
    """The current UTC time in :func:`format_epoch_ms`'s format, cheaply.

    Formatting the date costs more than the rest of an accepted request's
    bookkeeping, so the text is reused within a millisecond (a busy worker
    takes several requests in one) and its part down to the second within a
    second.
    """
    global _now_second, _now_ms
    ms = time.time_ns() // 1_000_000
    cached = _now_ms
    if cached[0] == ms:
        return cached[1]
    second, millis = divmod(ms, 1000)
    prefix = _now_second
    if prefix[0] != second:
        prefix = _now_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    text = "%s.%03dZ" % (prefix[1], millis)
    _now_ms = (ms, text)
    return text


def finish(event: Event, type_: str, *, require_identity: bool) -> Event:
    """Apply the rules every event type has, whatever dialect built it.

    Empty identifiers count as absent. ``track`` needs an event name,
    ``group`` a ``groupId``, ``alias`` a ``previousId`` and ``userId``.
    Without ``userId`` or ``anonymousId`` the event is refused where the
    vendor requires one; otherwise it gets a random ``anonymousId``, because
    Segment's and RudderStack's APIs refuse events with neither (it identifies
    nobody). Traits stay top-level on identify and group and move to
    ``context.traits`` elsewhere, as the Segment spec places them.
    """
    event = {"type": type_, **event}  # type first: log lines read better
    for name in _IDENTIFIERS:
        if name in event and not event[name]:
            del event[name]
    if type_ == "track" and not event.get("event"):
        raise DecodeError("missing_event", "a track event needs an event name")
    if type_ == "group" and "groupId" not in event:
        raise DecodeError("missing_group_id", "a group event needs a groupId")
    if type_ == "alias" and ("previousId" not in event or "userId" not in event):
        raise DecodeError("missing_identity", "an alias event needs previousId and userId")
    if "userId" not in event and "anonymousId" not in event:
        if require_identity:
            raise DecodeError("missing_identity", "neither userId nor anonymousId was given")
        event["anonymousId"] = new_id()
    if "traits" in event and type_ not in ("identify", "group"):
        context = event.setdefault("context", {})
        traits = event.pop("traits")
        given = context.get("traits")
        context["traits"] = {**traits, **given} if type(given) is dict else traits
    return event


def enrich(event: Event, environ: Mapping[str, Any], received_at: str) -> Event:
    """Add what the server knows: receive time, ids, the client's address and headers.

    Header values are cut to :data:`MAX_USER_AGENT_CHARS` and
    :data:`MAX_REFERRER_CHARS`, as the query is capped: a client may send
    megabytes of header. ``context.ip`` is always the request's ``REMOTE_ADDR``, never a value the
    URL claims, and ``context.pixel`` (what the pipeline's steps note about
    the request) is the server's alone: a URL's ``c.pixel...`` is dropped. Behind a proxy, wrap the app in werkzeug's ``ProxyFix`` with
    the number of proxies you trust. User agent and referrer come from the
    headers only when the URL did not give them.
    """
    event["receivedAt"] = received_at
    if "messageId" not in event:
        event["messageId"] = new_id()
    if "timestamp" not in event:
        event["timestamp"] = received_at
    context = event.get("context")
    if context is None:
        context = event["context"] = {}
    else:
        context.pop("pixel", None)  # the server's own notes on the request: never the URL's say
    ip = environ.get("REMOTE_ADDR")
    if ip:
        context["ip"] = ip
    if "userAgent" not in context:
        agent = environ.get("HTTP_USER_AGENT")
        if agent:
            context["userAgent"] = agent[:MAX_USER_AGENT_CHARS]
    if event["type"] == "page":
        referrer = environ.get("HTTP_REFERER")
        if referrer:
            referrer = referrer[:MAX_REFERRER_CHARS]
            page = context.get("page")
            if page is None:
                context["page"] = {"referrer": referrer}
            elif type(page) is dict and "referrer" not in page:
                page["referrer"] = referrer
    return event


def identifier(value: Any, field: str) -> Optional[str]:
    """An identifier from JSON: strings as they are, numbers as their text, nothing else."""
    if value is None or type(value) is str:
        return value
    if type(value) is int or type(value) is float:
        return str(value)
    raise DecodeError("invalid_value", f"{field} must be a string or a number")
