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
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional
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
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")
_MAX_SAFE_INTEGER = 2**53
_MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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

    This is ``urllib.parse.parse_qsl`` without its per-pair overhead: most
    names and many values of a pixel URL hold no escape at all and are taken
    as they are. Percent-decoding itself is the standard library's.
    """
    if len(query_string) > MAX_QUERY_BYTES:
        raise DecodeError("query_too_long", f"query string is over {MAX_QUERY_BYTES} bytes")
    if not query_string.isascii():
        # PEP 3333 hands the raw bytes over as latin-1.
        try:
            query_string = query_string.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise DecodeError("invalid_encoding", "query string is not UTF-8") from None
    if "%" in query_string and _BAD_PERCENT.search(query_string):
        raise DecodeError("invalid_encoding", "invalid percent-encoding")
    pieces = query_string.split("&")
    if len(pieces) > MAX_PARAMETERS:
        raise DecodeError("too_many_parameters", f"more than {MAX_PARAMETERS} parameters")
    params: Dict[str, str] = {}
    try:
        for piece in pieces:
            if not piece:
                continue
            name, _, value = piece.partition("=")
            if "%" in name or "+" in name:
                name = unquote_to_bytes(name.replace("+", " ")).decode("utf-8")
            if name in params:
                continue
            if "%" in value or "+" in value:
                value = unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
            params[name] = value
    except UnicodeDecodeError:
        raise DecodeError("invalid_encoding", "percent-encoded bytes are not UTF-8") from None
    return params


def coerce_number(text: str) -> Any:
    """Turn ``text`` into a number only when the number prints back as exactly ``text``.

    So ``1920`` and ``29.99`` become numbers, while ``1.0.0``, ``007``,
    ``1.10``, ``1e3`` and integers beyond +/-2**53 (which JavaScript and
    float-based JSON parsers would round) stay strings.
    """
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


def assign(target: Dict[str, Any], dotted: str, value: Any, depth: int = 1) -> None:
    """Set ``target[a][b][c] = value`` for ``dotted`` ``"a.b.c"``, creating the dicts.

    ``depth`` is how deep ``target`` itself sits in the event. A name used both
    as a value and as an object (``p.a=1&p.a.b=2``) is refused, not overwritten.
    """
    parts = dotted.split(".")
    if len(parts) + depth > MAX_DEPTH:
        raise DecodeError("nesting_too_deep", f"nesting deeper than {MAX_DEPTH} levels")
    node = target
    for part in parts[:-1]:
        if not part:
            raise DecodeError("invalid_parameter", "empty name in a dotted parameter")
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif type(child) is not dict:
            raise DecodeError("conflicting_parameters", "a parameter is both a value and an object")
        node = child
    leaf = parts[-1]
    if not leaf:
        raise DecodeError("invalid_parameter", "empty name in a dotted parameter")
    if leaf in node:
        raise DecodeError("conflicting_parameters", "a parameter is both a value and an object")
    node[leaf] = value


def flat_event(
    params: Mapping[str, str],
    fields: Mapping[str, str],
    containers: Mapping[str, str],
    *,
    coerce: bool = True,
) -> Event:
    """Build an event from flat query parameters.

    ``fields`` maps a parameter name to a top-level event field (kept as a
    string); ``containers`` maps a dotted prefix (``p`` in ``p.plan``) to the
    object it fills (``properties``). Parameters in neither are ignored: cache
    busters, ``integrations.*`` and the write key all land there.
    """
    event: Event = {}
    for key, value in params.items():
        field = fields.get(key)
        if field is not None:
            event[field] = value
            continue
        head, dot, rest = key.partition(".")
        if dot:
            container = containers.get(head)
            if container is not None:
                node = event.get(container)
                if node is None:
                    node = event[container] = {}
                if coerce:
                    value = coerce_number(value)
                if "." in rest or not rest or rest in node:
                    assign(node, rest, value, 2)  # the general case, with its checks
                else:
                    node[rest] = value
    return event


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


_now_second = -1
_now_prefix = ""


def now() -> str:
    """The current UTC time in :func:`format_epoch_ms`'s format, cheaply.

    Formatting the date costs more than the rest of an accepted request's
    bookkeeping, so the part down to the second is reused within a second.
    """
    global _now_second, _now_prefix
    ms = time.time_ns() // 1_000_000
    second, millis = divmod(ms, 1000)
    if second != _now_second:
        _now_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _now_second = second
    return "%s.%03dZ" % (_now_prefix, millis)


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
        event["anonymousId"] = str(uuid.uuid4())
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
        event["messageId"] = str(uuid.uuid4())
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
