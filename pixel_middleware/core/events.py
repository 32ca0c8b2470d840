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

import time
from random import getrandbits
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional, Tuple

Event = Dict[str, Any]

#: Deepest nesting accepted, counted from the event itself: ``context.page.path``
#: is 3 deep.
MAX_DEPTH = 10
#: Most characters of a ``User-Agent`` copied into ``context.userAgent``.
MAX_USER_AGENT_CHARS = 1024
#: Most characters of a ``Referer`` copied into ``context.page.referrer``.
MAX_REFERRER_CHARS = 2048

_IDENTIFIERS = ("userId", "anonymousId", "groupId", "previousId", "messageId")
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
