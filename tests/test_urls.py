"""build_pixel_url: what it builds decodes, through the middleware, to the fields it was given."""
from __future__ import annotations

import unicodedata
import warnings
from datetime import datetime, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, PixelUrlWarning, build_pixel_url
from pixel_middleware.core.events import check_depth, DecodeError, format_epoch_ms
from pixel_middleware.core.query import coerce_number

WRITE_KEY = "wk-round-trip"
TYPES = {
    "compact": ["track", "page", "identify", "group"],
    "rudderstack": ["track", "page"],
    "segment": ["track", "page", "screen", "identify", "group", "alias"],
    "mparticle": ["track", "page"],
}
REQUIRES_IDENTITY = {"rudderstack", "segment"}

ids = st.text(min_size=1, max_size=20)
#: Default-ignorable code points outside categories Cc and Cf (Unicode's DerivedCoreProperties.txt).
IGNORABLE = [(0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2065, 0x2065),
             (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF)]


def invisible(c: str) -> bool:
    """What a RudderStack messageId loses: control, format and default-ignorable characters."""
    return unicodedata.category(c) in ("Cc", "Cf") or any(low <= ord(c) <= high for low, high in IGNORABLE)
names = st.text(min_size=1, max_size=20)
flat_keys = st.text(min_size=1, max_size=8).filter(lambda k: "." not in k)
flat_scalars = (
    st.text(max_size=12).filter(lambda s: coerce_number(s) is s)  # numeric-looking text comes back a number
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
)
flat_objects = st.recursive(
    st.dictionaries(flat_keys, flat_scalars, min_size=1, max_size=4),
    lambda inner: st.dictionaries(flat_keys, flat_scalars | inner, min_size=1, max_size=3),
    max_leaves=8,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
no_commas = st.text(max_size=10).filter(lambda s: "," not in s)
mparticle_objects = st.dictionaries(no_commas.filter(bool), no_commas, min_size=1, max_size=4)
timestamps = st.integers(min_value=0, max_value=253402300799999)


@st.composite
def calls(draw, dialect):
    type_ = draw(st.sampled_from(TYPES[dialect]))
    call = {"type": type_, "dialect": dialect, "write_key": WRITE_KEY}
    objects = {"segment": json_objects, "mparticle": mparticle_objects}.get(dialect, flat_objects)
    if type_ == "track" or draw(st.booleans()):
        call["event"] = draw(no_commas.filter(bool) if dialect == "mparticle" else names)
    id_values = ids.filter(lambda s: "," not in s) if dialect == "mparticle" else ids
    message_ids = ids
    if dialect == "rudderstack":  # rudder-server's rules, which the dialect's encoder refuses to break
        id_values = id_values.filter(lambda s: not s.isspace() and not (len(s) > 1 and s[0] == s[-1] == '"'))
        message_ids = ids.filter(lambda s: s == s.strip() and not any(invisible(c) for c in s))
    user, anonymous = draw(st.sampled_from([(1, 0), (0, 1), (1, 1), (0, 0)]))
    if user or type_ == "alias":
        call["user_id"] = draw(id_values)
    if anonymous or (not user and dialect in REQUIRES_IDENTITY):
        call["anonymous_id"] = draw(id_values)
    if type_ == "group":
        call["group_id"] = draw(ids)
    if type_ == "alias":
        call["previous_id"] = draw(ids)
    if draw(st.booleans()):
        call["properties"] = draw(objects)
    if draw(st.booleans()):
        call["traits"] = draw(objects)
    if dialect != "mparticle" and draw(st.booleans()):
        call["context"] = draw(objects.filter(lambda c: not {"ip", "traits", "pixel"} & set(c)))  # the server's own
    if dialect != "mparticle" and draw(st.booleans()):
        call["message_id"] = draw(message_ids)
    if draw(st.booleans()):
        call["timestamp"] = draw(timestamps)
    for field in ("properties", "traits", "context"):
        try:
            check_depth(call.get(field, {}), 2)
        except DecodeError:
            assume(False)
    return call


def send(call):
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, write_keys={WRITE_KEY}, prefix="/t"))
    args = {k: v for k, v in call.items() if k != "event"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUrlWarning)
        url = build_pixel_url("http://collector.test/t/", call.get("event"), **args)
    response = client.get(url)
    assert response.status_code == 200
    assert len(sink.events) == 1, f"{url} was rejected"
    return sink.events[0]


def check(call, event):
    assert event["type"] == call["type"]
    name_field = "event" if call["type"] == "track" else "name"
    if "event" in call:
        assert event[name_field] == call["event"]
    for arg, field in (("user_id", "userId"), ("anonymous_id", "anonymousId"), ("group_id", "groupId"),
                       ("previous_id", "previousId"), ("message_id", "messageId")):
        if arg in call:
            assert event[field] == call[arg]
    assert event.get("userId") or event.get("anonymousId")
    if "timestamp" in call:
        assert event["timestamp"] == format_epoch_ms(call["timestamp"])
    assert (event.get("properties") or {}) == (call.get("properties") or {})
    traits = event.get("traits") if call["type"] in ("identify", "group") else event.get("context", {}).get("traits")
    assert (traits or {}) == (call.get("traits") or {})
    for key, value in (call.get("context") or {}).items():
        assert event["context"][key] == value


@pytest.mark.parametrize("dialect", sorted(TYPES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_round_trip(dialect, data):
    call = data.draw(calls(dialect))
    check(call, send(call))


def test_datetime_and_iso_timestamps():
    moment = datetime(2025, 2, 25, 15, 30, 0, 123000, tzinfo=timezone.utc)
    for value in (moment, "2025-02-25T15:30:00.123Z", moment.replace(tzinfo=None)):
        call = {"type": "track", "dialect": "compact", "write_key": WRITE_KEY, "event": "E", "user_id": "u", "timestamp": value}
        assert send(call)["timestamp"] == "2025-02-25T15:30:00.123Z"


def test_cache_buster_differs_each_time_and_can_be_off():
    urls = {build_pixel_url("https://x.test", "E", user_id="u", write_key="k") for _ in range(5)}
    assert len(urls) == 5
    assert "cb=" not in build_pixel_url("https://x.test", "E", user_id="u", write_key="k", cache_buster=False)


def test_long_urls_warn_and_overlong_ones_raise():
    with pytest.warns(PixelUrlWarning, match="2000"):
        build_pixel_url("https://x.test", "E", user_id="u", write_key="k", properties={"body": "x" * 2100})
    with pytest.raises(ValueError, match="32768-byte"):
        build_pixel_url("https://x.test", "E", user_id="u", write_key="k", properties={"body": "x" * 40000})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"dialect": "compact"}, "needs write_key", id="no-write-key"),
        pytest.param({"write_key": "k", "properties": {"a.b": 1}}, "dot notation", id="dotted-key"),
        pytest.param({"write_key": "k", "properties": {"a": [1]}}, "cannot carry list", id="list"),
        pytest.param({"write_key": "k", "type": "alias"}, "no 'alias' pixel", id="compact-alias"),
        pytest.param({"write_key": "k", "dialect": "rudderstack", "type": "identify"}, "page and track only", id="rudder-identify"),
        pytest.param({"write_key": "k", "dialect": "mparticle", "properties": {"a": "x,y"}}, "without commas", id="comma"),
        pytest.param({"write_key": "k", "dialect": "mparticle", "properties": {"a": 1}}, "without commas", id="mparticle-number"),
        pytest.param({"write_key": "k/x", "dialect": "mparticle"}, "no '/'", id="slash-in-key"),
        pytest.param({"write_key": "k", "dialect": "segment", "properties": {"a": object()}}, "JSON only", id="not-json"),
        pytest.param({"write_key": "k", "dialect": "nope"}, "unknown dialect", id="unknown"),
        pytest.param({"write_key": "k", "dialect": "rudderstack", "anonymous_id": "\t"}, "blank anonymousId", id="rudder-blank-id"),
        pytest.param({"write_key": "k", "dialect": "rudderstack", "anonymous_id": '"a"'}, "double quotes",
                     id="rudder-quoted-anonymous-id"),
        pytest.param({"write_key": "k", "dialect": "rudderstack", "message_id": "m\u200b"}, "invisible characters",
                     id="rudder-invisible-message-id"),
    ],
)
def test_what_a_dialect_cannot_carry_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_pixel_url("https://x.test", "E", user_id="u", **kwargs)
