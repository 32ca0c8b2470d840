"""Segment Tracking Pixel API: ``GET /v1/pixel/{identify,group,alias,page,screen,track}``.

Two forms, as Segment documents them:

* ``?data=<base64 JSON>``: the JSON is a Segment HTTP API call (``writeKey``,
  ``userId``, ``event``, ``properties`` ...). Standard or URL-safe alphabet,
  padding optional, percent-encoded or not (a ``+`` turned into a space by
  form decoding is turned back). JSON types are kept exactly; numeric ids
  become their text, since identifiers are always strings.
* flat parameters, the same dot notation as RudderStack's pixel.

======================================  ==================================
JSON key or query parameter             canonical event
======================================  ==================================
``writeKey`` (required)                 checked; never copied
``userId``, ``anonymousId``             the same (one of them required)
``event`` (track, required)             ``event``
``name`` (page, screen)                 ``name``
``groupId`` (group, required)           ``groupId``
``previousId`` (alias, required)        ``previousId``
``messageId``                           ``messageId``
``timestamp``                           ``timestamp`` (ISO 8601 or epoch ms)
``properties``, ``traits``, ``context``  the same objects (flat form:
                                        ``properties.*`` ..., numbers coerced)
anything else                           ignored
======================================  ==================================

Requests carrying ``wk`` belong to the compact dialect, which shares these
routes. Segment answers every pixel with 200 and the GIF, errors included;
so does this middleware.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import unquote

from ...core.events import DecodeError, Event, check_depth, finish, identifier, parse_timestamp

from ...core.query import MAX_NUMBER_CHARS, FlatForm
from .base import Dialect, Pairs, require

_TYPES = ("identify", "group", "alias", "page", "screen", "track")
_IDS = ("userId", "anonymousId", "groupId", "previousId", "messageId")
_FIELDS = {f: f for f in _IDS + ("event", "name")}
_CONTAINERS = {c: c for c in ("properties", "traits", "context")}
_FLAT = FlatForm(_FIELDS, _CONTAINERS)
_URLSAFE = bytes.maketrans(b"-_ ", b"+/+")


def _refuse_constant(name: str) -> Any:
    raise DecodeError("invalid_json", f"{name} is not JSON")


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise DecodeError("invalid_value", f"a number is longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _float(text: str) -> float:
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise DecodeError("invalid_value", "a number is too long or too large for JSON")
    return value


# Built once: json.loads with hooks builds a decoder per call, which costs more than the parse.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_int, parse_float=_float)

# A lone surrogate can enter an event only through a JSON ``\uD800``-style
# escape: every other value passed strict UTF-8 decoding. Escapes of the
# surrogate range are rare, so only a payload that has one pays for the check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_data(data: str) -> Dict[str, Any]:
    """The JSON object inside a ``data=`` parameter."""
    if "%" in data:  # percent-encoded twice, as happens when a URL is pasted into another
        data = unquote(data)
    raw = data.strip().encode("ascii", "replace").translate(_URLSAFE)
    raw += b"=" * (-len(raw) % 4)
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("invalid_base64", "data is not base64") from None
    try:
        text = decoded.decode("utf-8")
        payload = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise DecodeError("invalid_encoding", "data is not UTF-8") from None
    except DecodeError:
        raise
    except (ValueError, RecursionError):
        raise DecodeError("invalid_json", "data is not valid JSON") from None
    if type(payload) is not dict:
        raise DecodeError("invalid_json", "data is not a JSON object")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError("invalid_encoding", "data holds a lone surrogate, which is not Unicode text") from None
    return payload


def _json_event(payload: Dict[str, Any]) -> Event:
    event: Event = {}
    for field in _IDS:
        value = identifier(payload.get(field), field)
        if value is not None:
            event[field] = value
    for field in ("event", "name"):
        value = payload.get(field)
        if value is not None:
            if type(value) is not str:
                raise DecodeError("invalid_value", f"{field} must be a string")
            event[field] = value
    for container in _CONTAINERS:
        value = payload.get(container)
        if value is not None:
            if type(value) is not dict:
                raise DecodeError("invalid_value", f"{container} must be an object")
            check_depth(value, 2)
            event[container] = value
    if payload.get("timestamp") is not None:
        event["timestamp"] = parse_timestamp(payload["timestamp"])
    return event


class Segment(Dialect):
    name = "segment"
    routes = {f"/v1/pixel/{t}": {"type": t} for t in _TYPES}
    write_key_param = "writeKey (or in data)"

    def carries_write_key(self, params: Mapping[str, str], route: Mapping[str, str]) -> bool:
        return bool(params.get("writeKey")) or "data" in params  # data= may hold one: decode finds out

    def decode(self, params: Dict[str, str], route: Mapping[str, str]) -> Tuple[Event, Optional[str]]:
        data = params.get("data")
        if data is None:
            event = _FLAT(params)
            if params.get("timestamp"):
                event["timestamp"] = parse_timestamp(params["timestamp"])
            write_key = params.get("writeKey")
        else:
            payload = decode_data(data)
            event = _json_event(payload)
            write_key = payload.get("writeKey") or params.get("writeKey")
            if write_key is not None and type(write_key) is not str:
                raise DecodeError("invalid_value", "writeKey must be a string")
        if not write_key:  # before finish()'s checks: the first thing to fix (see Dialect.carries_write_key)
            raise DecodeError("missing_write_key", "the request carries no write key")
        return finish(event, route["type"], require_identity=True), write_key

    def encode(self, event: Event, write_key: Optional[str]) -> Tuple[str, Pairs]:
        type_ = event["type"]
        if type_ not in _TYPES:
            raise ValueError(f"the segment dialect has no {type_!r} pixel")
        payload: Dict[str, Any] = {"writeKey": require(write_key, self.name)}
        for field in _FIELDS:
            if event.get(field) is not None:
                payload[field] = event[field]
        for field in ("properties", "traits", "context", "timestamp"):
            if event.get(field) is not None:
                payload[field] = event[field]
        try:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the segment dialect carries JSON only: {exc}") from None
        data = base64.urlsafe_b64encode(body.encode("utf-8")).rstrip(b"=").decode("ascii")
        return f"/v1/pixel/{type_}", [("data", data)]
