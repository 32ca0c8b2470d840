"""The compact pixel: ``GET /v1/pixel/{track,page,identify,group}?wk=...``.

The shortest URLs, and the default for URLs this project builds. It shares
its routes with Segment's pixel; the ``wk`` parameter marks a compact request.

==================  ===================================================
query parameter     canonical event
==================  ===================================================
``wk`` (required)   the write key: checked, never copied
``e``               ``event`` on track (required there); ``name`` on page
``uid``             ``userId``
``aid``             ``anonymousId`` (without either id, a random one:
                    email clients carry no cookies)
``gid``             ``groupId`` (required on group)
``p.*``             ``properties`` (dot notation, numbers coerced)
``t.*``             ``traits`` (``context.traits`` on track and page)
``c.*``             ``context`` (dot notation, numbers coerced)
``ts``              ``timestamp``, given in Unix milliseconds
``mid``             ``messageId``, for deduplication downstream
``cb``              ignored: a cache buster
``sig``             the signature (:mod:`pixel_middleware.pipeline.steps.signing`)
``url``             on ``/v1/click`` only: the link's target, recorded
                    as ``properties.link_url``
==================  ===================================================

``GET /v1/click`` records a track event, ``Email Link Clicked`` unless
``e`` names another, and redirects to ``url`` (:mod:`pixel_middleware.pipeline.clicks`).

``gid``, ``c.*`` and ``e`` as a page name go beyond the gateway document
this dialect follows, which lists neither a group id nor page names.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from ...core.events import CLICK_EVENT
from ...core.events import Event, epoch_ms, finish, parse_timestamp
from ...core.query import FlatForm
from .base import Dialect, Pairs, flat_pairs, require, text

_TYPES = ("track", "page", "identify", "group")
_FIELDS = {"uid": "userId", "aid": "anonymousId", "gid": "groupId", "mid": "messageId"}
_CONTAINERS = {"p": "properties", "t": "traits", "c": "context"}
_FLAT = FlatForm(_FIELDS, _CONTAINERS)


class Compact(Dialect):
    name = "compact"
    routes = {**{f"/v1/pixel/{t}": {"type": t} for t in _TYPES}, "/v1/click": {"type": "track", "click": "1"}}

    write_key_param = "wk"

    def claims(self, params: Mapping[str, str]) -> bool:
        return "wk" in params

    def carries_write_key(self, params: Mapping[str, str], route: Mapping[str, str]) -> bool:
        return bool(params.get("wk"))

    def decode(self, params: Dict[str, str], route: Mapping[str, str]) -> Tuple[Event, Optional[str]]:
        event = _FLAT(params)
        type_ = route["type"]
        name = params.get("e")
        if route.get("click") == "1":
            name = name or CLICK_EVENT
            if "url" in params:
                event.setdefault("properties", {})["link_url"] = params["url"]
        if name:
            event["event" if type_ == "track" else "name"] = name
        if "ts" in params:
            event["timestamp"] = parse_timestamp(params["ts"])
        return finish(event, type_, require_identity=False), params.get("wk")

    def encode(self, event: Event, write_key: Optional[str]) -> Tuple[str, Pairs]:
        type_ = event["type"]
        if type_ not in _TYPES:
            raise ValueError(f"the compact dialect has no {type_!r} pixel ({', '.join(_TYPES)})")
        pairs: Pairs = [("wk", require(write_key, self.name))]
        name = event.get("event") if type_ == "track" else event.get("name")
        if name is not None:
            pairs.append(("e", text(name, "event")))
        for param, field in _FIELDS.items():
            if event.get(field) is not None:
                pairs.append((param, text(event[field], field)))
        if event.get("timestamp") is not None:
            pairs.append(("ts", str(epoch_ms(event["timestamp"]))))
        for prefix, container in _CONTAINERS.items():
            if event.get(container):
                pairs.extend(flat_pairs(prefix, event[container], container))
        return f"/v1/pixel/{type_}", pairs
