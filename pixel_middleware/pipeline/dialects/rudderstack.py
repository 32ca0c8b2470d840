"""RudderStack Pixel API: ``GET /pixel/v1/page`` and ``GET /pixel/v1/track``.

A RudderStack pixel URL works against this middleware by changing only the
host. Parameters, as RudderStack documents them and as they land in the event:

=================================  ==========================================
query parameter                    canonical event
=================================  ==========================================
``writeKey`` (required)            checked against ``write_keys``; never copied
``userId``                         ``userId``
``anonymousId``                    ``anonymousId``, less one pair of
                                   surrounding ``"`` (one of the two ids is
                                   required; a blank one counts as absent)
``event`` (track, required)        ``event``
``name``                           ``name``; a page's ``name=`` sent empty
                                   becomes ``"Unknown Page"``, as
                                   rudder-server does (none sent: no name)
``messageId``                      ``messageId``, less invisible characters
                                   and surrounding whitespace; blank: a new one
``timestamp``, ``originalTimestamp``  ``timestamp`` (ISO 8601 or epoch ms)
``context.*``                      ``context`` object, numbers coerced
``properties.*``                   ``properties`` object, numbers coerced
``traits.*``                       ``traits`` (``context.traits`` on track/page)
anything else                      ignored (``integrations.*``, cache busters)
=================================  ==========================================

Numbers are coerced as RudderStack's own examples show
(``context.screen.width=1920`` -> ``1920``): see
:func:`pixel_middleware.core.query.coerce_number`.

The identifier rules are rudder-server's, so that a URL recorded here and
there gives the same ids: it trims both ids before its identity check (an
id of only whitespace identifies nobody), unquotes an ``anonymousId`` sent
in double quotes, and cleans
``messageId`` of characters nobody can see, which would otherwise make two
deliveries of one message look like two messages downstream.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Dict, Mapping, Optional, Tuple

from ...core.events import Event, finish, parse_timestamp

from ...core.query import FlatForm
from .base import Dialect, Pairs, flat_pairs, require, text

_FIELDS = {f: f for f in ("userId", "anonymousId", "event", "name", "messageId")}
_CONTAINERS = {c: c for c in ("context", "properties", "traits")}
_FLAT = FlatForm(_FIELDS, _CONTAINERS)

#: Control characters (Cc) and Unicode's default-ignorable code points (DerivedCoreProperties.txt:
#: U+034F, zero-width spaces and joiners, bidi marks, variation selectors, U+FEFF, tags...).
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def _visible(message_id: str) -> str:
    """``message_id`` without control, format (Cf) or default-ignorable characters, nor surrounding whitespace."""
    text = _INVISIBLE.sub("", message_id)
    if not text.isascii():  # the rest of Cf (U+0600, U+06DD...), as this Python's Unicode data has it
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return text.strip()


class RudderStack(Dialect):
    name = "rudderstack"
    routes = {"/pixel/v1/page": {"type": "page"}, "/pixel/v1/track": {"type": "track"}}
    write_key_param = "writeKey"

    def carries_write_key(self, params: Mapping[str, str], route: Mapping[str, str]) -> bool:
        return bool(params.get("writeKey"))

    def decode(self, params: Dict[str, str], route: Mapping[str, str]) -> Tuple[Event, Optional[str]]:
        event = _FLAT(params)
        stamp = params.get("timestamp") or params.get("originalTimestamp")
        if stamp:
            event["timestamp"] = parse_timestamp(stamp)
        # On every request, so the common case costs a lookup each: ids that need no change.
        user_id = event.get("userId")
        if user_id is not None and user_id.isspace():
            del event["userId"]
        anonymous_id = event.get("anonymousId")
        if anonymous_id is not None:
            if len(anonymous_id) > 1 and anonymous_id[0] == '"' and anonymous_id[-1] == '"':
                anonymous_id = event["anonymousId"] = anonymous_id[1:-1]
            if anonymous_id.isspace():
                del event["anonymousId"]
        message_id = event.get("messageId")
        if message_id and not (message_id.isascii() and message_id.isprintable()
                               and message_id[0] != " " and message_id[-1] != " "):
            event["messageId"] = _visible(message_id)  # finish() drops it if blank: a new one is made
        type_ = route["type"]
        if type_ == "page" and event.get("name") == "":
            event["name"] = "Unknown Page"
        return finish(event, type_, require_identity=True), params.get("writeKey")

    def encode(self, event: Event, write_key: Optional[str]) -> Tuple[str, Pairs]:
        type_ = event["type"]
        if type_ not in ("page", "track"):
            raise ValueError(f"the rudderstack dialect has no {type_!r} pixel (page and track only)")
        pairs: Pairs = [("writeKey", require(write_key, self.name))]
        for field in ("userId", "anonymousId", "event", "name", "messageId", "timestamp"):
            if event.get(field) is not None:
                pairs.append((field, _carried(field, text(event[field], field))))
        for container in ("properties", "traits", "context"):
            if event.get(container):
                pairs.extend(flat_pairs(container, event[container], container))
        return f"/pixel/v1/{type_}", pairs


def _carried(field: str, value: str) -> str:
    """``value`` if :meth:`RudderStack.decode` gives it back unchanged; a ValueError naming the rule otherwise."""
    if field in ("userId", "anonymousId") and value.isspace():
        raise ValueError(f"the rudderstack dialect cannot carry a blank {field}: rudder-server reads it as absent")
    if field == "anonymousId" and len(value) > 1 and value[0] == '"' and value[-1] == '"':
        raise ValueError("the rudderstack dialect cannot carry an anonymousId in double quotes: they are removed")
    if field == "messageId" and _visible(value) != value:
        raise ValueError("the rudderstack dialect cannot carry a messageId with invisible characters or "
                         "surrounding whitespace: they are removed")
    return value
