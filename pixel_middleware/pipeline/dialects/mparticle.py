"""mParticle Pixel Service: ``GET /v1/{api_key}/Pixel``.

The API key in the path is the write key. Key/value data comes as two
comma-separated lists of equal length (mParticle has no escape for a comma
inside a value, so neither do we); lists of different lengths drop the event.

=======================  ======================================================
query parameter          canonical event
=======================  ======================================================
``dt`` (required)        ``AppEvent`` -> ``type: track``;
                         ``ScreenView`` -> ``type: page``; anything else drops
``n``                    ``event`` on track (required there); ``name`` on page
``et``                   ``context.mparticle.eventType`` (default ``Unknown``
                         on AppEvent, as mParticle documents)
``ct``                   ``timestamp`` (epoch ms); absent: the receive time
``attrs_k`` / ``attrs_v``  ``properties`` (values stay strings, as mParticle
                         attributes are strings)
``ua_k`` / ``ua_v``      ``context.traits`` (user attributes)
``ui_t`` / ``ui_v``      identities: ``customerid`` -> ``userId``; ``email``
                         -> ``context.traits.email`` as well; every identity
                         but ``customerid`` -> ``context.externalIds`` as
                         ``{"id", "type", "collection": "users", "encoding": "none"}``
``flags_k`` / ``flags_v``  ``context.mparticle.flags``
``lc``                   ``context.location`` ``{"latitude", "longitude"}``
``av``                   ``context.app.version``
``dbg``                  ``context.mparticle.debug`` (``true``/``false``)
``hn`` (ScreenView)      ``context.page.host``
``ttl`` (ScreenView)     ``properties.title`` and ``context.page.title``
``path`` (AMP)           ``context.page.path`` (and ``properties.path`` on page)
``amp_id`` (AMP)         ``anonymousId`` (the AMP client id)
=======================  ======================================================

Without ``customerid`` or ``amp_id`` the event gets a random ``anonymousId``,
since mParticle's pixel requires no identity. mParticle's HTML example
(``n=My%20Page%20Viewdt=ScreenView``) lacks an ``&`` and so carries no
``dt``: it is dropped, as the service would drop it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...core.events import DecodeError, Event, epoch_ms, finish, parse_timestamp
from .base import Dialect, Pairs, require, text

_TYPES = {"AppEvent": "track", "ScreenView": "page"}
_DT = {v: k for k, v in _TYPES.items()}


def _pairs(params: Mapping[str, str], keys: str, values: str) -> Dict[str, str]:
    key_text = params.get(keys)
    value_text = params.get(values)
    if not key_text and not value_text:
        return {}
    names = key_text.split(",") if key_text is not None else []
    items = value_text.split(",") if value_text is not None else []
    if len(names) != len(items):
        raise DecodeError("mismatched_lists", f"{keys} and {values} differ in length")
    result: Dict[str, str] = {}
    for name, value in zip(names, items):
        if not name:
            raise DecodeError("invalid_parameter", f"empty name in {keys}")
        result.setdefault(name, value)
    return result


def _location(text_: str) -> Dict[str, float]:
    try:
        if "_" in text_:  # float() reads "1_0" as 10; a coordinate never has one
            raise ValueError(text_)
        latitude, longitude = (float(part) for part in text_.split(","))
    except ValueError:
        raise DecodeError("invalid_value", "lc must be latitude,longitude") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise DecodeError("invalid_value", "lc is outside the globe")
    return {"latitude": latitude, "longitude": longitude}


class MParticle(Dialect):
    name = "mparticle"
    routes = {"/v1/<api_key>/Pixel": {}}
    write_key_param = "the path's API key"

    def decode(self, params: Dict[str, str], route: Mapping[str, str]) -> Tuple[Event, Optional[str]]:
        dt = params.get("dt")
        type_ = _TYPES.get(dt)  # type: ignore[arg-type]
        if type_ is None:
            raise DecodeError("unknown_type", "dt must be AppEvent or ScreenView")
        event: Event = {}
        context: Dict[str, Any] = {}
        mparticle: Dict[str, Any] = {}
        name = params.get("n")
        if name:
            event["event" if type_ == "track" else "name"] = name
        properties = _pairs(params, "attrs_k", "attrs_v")
        traits = _pairs(params, "ua_k", "ua_v")
        external: List[Dict[str, str]] = []
        for kind, value in _pairs(params, "ui_t", "ui_v").items():
            if kind == "customerid":
                event["userId"] = value
                continue
            if kind == "email":
                traits.setdefault("email", value)
            external.append({"id": value, "type": kind, "collection": "users", "encoding": "none"})
        if params.get("amp_id"):
            event["anonymousId"] = params["amp_id"]
        if "ct" in params:
            event["timestamp"] = parse_timestamp(params["ct"])
        event_type = params.get("et") or ("Unknown" if type_ == "track" else None)
        if event_type:
            mparticle["eventType"] = event_type
        flags = _pairs(params, "flags_k", "flags_v")
        if flags:
            mparticle["flags"] = flags
        debug = params.get("dbg", "").lower()
        if debug in ("true", "false"):
            mparticle["debug"] = debug == "true"
        if params.get("lc"):
            context["location"] = _location(params["lc"])
        if params.get("av"):
            context["app"] = {"version": params["av"]}
        page: Dict[str, str] = {}
        if params.get("path"):
            page["path"] = params["path"]
            if type_ == "page":
                properties.setdefault("path", params["path"])
        if type_ == "page":
            if params.get("hn"):
                page["host"] = params["hn"]
            if params.get("ttl"):
                page["title"] = params["ttl"]
                properties.setdefault("title", params["ttl"])
        if page:
            context["page"] = page
        if traits:
            context["traits"] = traits
        if external:
            context["externalIds"] = external
        if mparticle:
            context["mparticle"] = mparticle
        if properties:
            event["properties"] = properties
        if context:
            event["context"] = context
        return finish(event, type_, require_identity=False), route.get("api_key")

    def encode(self, event: Event, write_key: Optional[str]) -> Tuple[str, Pairs]:
        type_ = event["type"]
        if type_ not in _DT:
            raise ValueError(f"the mparticle dialect has no {type_!r} pixel (track and page only)")
        key = require(write_key, self.name)
        if "/" in key or not (key.isascii() and key.isprintable()):
            raise ValueError("the mparticle dialect carries the write key in the path: printable ASCII, no '/'")
        pairs: Pairs = [("dt", _DT[type_])]
        name = event.get("event") if type_ == "track" else event.get("name")
        if name is not None:
            pairs.append(("n", text(name, "event")))
        if event.get("timestamp") is not None:
            pairs.append(("ct", str(epoch_ms(event["timestamp"]))))
        if event.get("anonymousId") is not None:
            pairs.append(("amp_id", text(event["anonymousId"], "anonymousId")))
        for field in ("groupId", "previousId", "messageId", "context"):
            if event.get(field):
                raise ValueError(f"the mparticle dialect cannot carry {field}")
        lists = (
            ("attrs_k", "attrs_v", event.get("properties") or {}),
            ("ua_k", "ua_v", event.get("traits") or {}),
            ("ui_t", "ui_v", {"customerid": event["userId"]} if event.get("userId") is not None else {}),
        )
        for keys, values, mapping in lists:
            if not mapping:
                continue
            names, items = [], []
            for k, v in mapping.items():
                item = text(v, keys)
                if type(v) is not str or type(k) is not str or not k or "," in k or "," in item:
                    raise ValueError(f"the mparticle dialect carries strings without commas only ({k!r})")
                names.append(k)
                items.append(item)
            pairs += [(keys, ",".join(names)), (values, ",".join(items))]
        return f"/v1/{key}/Pixel", pairs
