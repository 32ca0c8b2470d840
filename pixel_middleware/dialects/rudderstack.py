"""RudderStack Pixel API: ``GET /pixel/v1/page`` and ``GET /pixel/v1/track``.

A RudderStack pixel URL works against this middleware by changing only the
host. Parameters, as RudderStack documents them and as they land in the event:

=================================  ==========================================
query parameter                    canonical event
=================================  ==========================================
``writeKey`` (required)            checked against ``write_keys``; never copied
``userId``                         ``userId``
``anonymousId``                    ``anonymousId``, surrounding ``"`` stripped
                                   (one of the two ids is required)
``event`` (track, required)        ``event``
``name``                           ``name``; an empty page name becomes
                                   ``"Unknown Page"``, as rudder-server does
``messageId``                      ``messageId``
``timestamp``, ``originalTimestamp``  ``timestamp`` (ISO 8601 or epoch ms)
``context.*``                      ``context`` object, numbers coerced
``properties.*``                   ``properties`` object, numbers coerced
``traits.*``                       ``traits`` (``context.traits`` on track/page)
anything else                      ignored (``integrations.*``, cache busters)
=================================  ==========================================

Numbers are coerced as RudderStack's own examples show
(``context.screen.width=1920`` -> ``1920``): see
:func:`pixel_middleware.events.coerce_number`.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from ..events import Event, FlatForm, finish, parse_timestamp
from .base import Dialect, Pairs, flat_pairs, require, text

_FIELDS = {f: f for f in ("userId", "anonymousId", "event", "name", "messageId")}
_CONTAINERS = {c: c for c in ("context", "properties", "traits")}
_FLAT = FlatForm(_FIELDS, _CONTAINERS)


class RudderStack(Dialect):
    name = "rudderstack"
    routes = {"/pixel/v1/page": {"type": "page"}, "/pixel/v1/track": {"type": "track"}}

    def decode(self, params: Dict[str, str], route: Mapping[str, str]) -> Tuple[Event, Optional[str]]:
        event = _FLAT(params)
        stamp = params.get("timestamp") or params.get("originalTimestamp")
        if stamp:
            event["timestamp"] = parse_timestamp(stamp)
        if "anonymousId" in event:
            event["anonymousId"] = event["anonymousId"].strip('"')
        type_ = route["type"]
        if type_ == "page" and not event.get("name"):
            event["name"] = "Unknown Page"
        return finish(event, type_, require_identity=True), params.get("writeKey")

    def encode(self, event: Event, write_key: Optional[str]) -> Tuple[str, Pairs]:
        type_ = event["type"]
        if type_ not in ("page", "track"):
            raise ValueError(f"the rudderstack dialect has no {type_!r} pixel (page and track only)")
        pairs: Pairs = [("writeKey", require(write_key, self.name))]
        for field in ("userId", "anonymousId", "event", "name", "messageId", "timestamp"):
            if event.get(field) is not None:
                pairs.append((field, text(event[field], field)))
        for container in ("properties", "traits", "context"):
            if event.get(container):
                pairs.extend(flat_pairs(container, event[container], container))
        return f"/pixel/v1/{type_}", pairs
