"""No poison pills in decoding: hostile pixels get a counted reason, and what is accepted is valid, finite JSON.

Each case of issue 11 that a pixel URL can carry is a row here; the sinks'
own side (batches, spool, Retry-After, kill -9, serve) is in
``tests/sinks/test_poison_sinks.py``.
"""
from __future__ import annotations

import base64
import json
import logging
from typing import Any, Dict, List
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pixel_middleware import LogSink, MemorySink, PixelMiddleware, event_received
from pixel_middleware.core.events import MAX_REFERRER_CHARS, MAX_USER_AGENT_CHARS
from pixel_middleware.sinks.base import event_line
from tests.conftest import ENVIRON, fire


def segment(payload: str) -> str:
    """A Segment pixel whose ``data=`` is this JSON text, exactly as written (escapes included)."""
    return "/v1/pixel/track?data=" + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def strict_loads(line: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize(
    "url, reason",
    [
        pytest.param(segment('{"writeKey":"k","userId":"u","event":"x","properties":{"s":"\\ud800"}}'),
                     "invalid_encoding", id="lone-high-surrogate-value"),
        pytest.param(segment('{"writeKey":"k","userId":"u","event":"x","properties":{"\\udfff":1}}'),
                     "invalid_encoding", id="lone-low-surrogate-key"),
        pytest.param(segment('{"writeKey":"k","userId":"u","event":"x","context":{"a":[{"b":"\\uDBFF"}]}}'),
                     "invalid_encoding", id="surrogate-deep-in-a-list"),
        pytest.param(segment('{"writeKey":"k","userId":"\\ud800","event":"x"}'), "invalid_encoding", id="surrogate-id"),
        pytest.param(segment('{"writeKey":"k","userId":"u","event":"x","properties":{"n":1e400}}'),
                     "invalid_value", id="1e400"),
        pytest.param(segment('{"writeKey":"k","userId":"u","event":"x","properties":{"n":-1E+999}}'),
                     "invalid_value", id="minus-1e999"),
        pytest.param(segment('{"writeKey":"k","userId":"u","event":"x","properties":{"n":%s}}' % ("9" * 5000)),
                     "invalid_value", id="5000-digit-integer"),
        pytest.param(segment('{"writeKey":"k","userId":%s,"event":"x"}' % ("1" * 41)), "invalid_value",
                     id="over-long-numeric-id"),
        pytest.param(segment('{"writeKey":"k","userId":"u","event":"x","properties":{"n":NaN}}'), "invalid_json",
                     id="NaN"),
        pytest.param("/v1/pixel/track?wk=k&e=x&p.s=%ED%A0%80", "invalid_encoding", id="utf8-encoded-surrogate"),
        pytest.param("/pixel/v1/track?writeKey=k&userId=u&event=%ED%BF%BF", "invalid_encoding",
                     id="rudderstack-encoded-surrogate"),
        pytest.param("/v1/KEY/Pixel?dt=AppEvent&n=x&lc=1e400,2", "invalid_value", id="mparticle-infinite-location"),
        pytest.param("/v1/KEY/Pixel?dt=AppEvent&n=x&lc=nan,nan", "invalid_value", id="mparticle-nan-location"),
        pytest.param("/v1/KEY/Pixel?dt=AppEvent&n=x&lc=1_0,2", "invalid_value", id="mparticle-underscore-location"),
        pytest.param("/v1/pixel/track?wk=k&e=x&ts=" + "9" * 5000, "invalid_timestamp", id="5000-digit-timestamp"),
    ],
)
def test_hostile_values_are_refused_with_one_warning_line(url: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    middleware = PixelMiddleware(None, sink=sink)
    with caplog.at_level(logging.DEBUG, logger="pixel_middleware"):
        fire(Client(middleware), url)
    assert sink.events == []
    assert middleware.rejections == {reason: 1}
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None


@pytest.mark.parametrize(
    "url, field, expected",
    [
        pytest.param("/v1/pixel/track?wk=k&e=x&uid=u&p.n=" + "9" * 5000, "n", "9" * 5000, id="5000-digits-stay-text"),
        pytest.param("/v1/pixel/track?wk=k&e=x&uid=u&p.n=1e400", "n", "1e400", id="1e400-stays-text"),
        pytest.param("/pixel/v1/track?writeKey=k&userId=u&event=x&properties.n=-1e400", "n", "-1e400",
                     id="rudderstack-minus-1e400-stays-text"),
        pytest.param("/v1/pixel/track?writeKey=k&userId=u&event=x&properties.n=" + "1" * 400 + ".5", "n",
                     "1" * 400 + ".5", id="segment-flat-long-decimal-stays-text"),
        pytest.param("/v1/KEY/Pixel?dt=AppEvent&n=x&attrs_k=n&attrs_v=1e400", "n", "1e400", id="mparticle-stays-text"),
    ],
)
def test_numbers_that_would_not_survive_stay_text_where_dialects_coerce(url: str, field: str, expected: str) -> None:
    sink = MemorySink()
    fire(Client(PixelMiddleware(None, sink=sink)), url)
    (event,) = sink.events
    assert event["properties"][field] == expected
    strict_loads(event_line(event))


def test_headers_are_capped() -> None:
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink))
    fire(client, "/v1/pixel/page?wk=k&e=Home", headers={"User-Agent": "A" * 1_000_000, "Referer": "https://r/" + "x" * 1_000_000})
    (event,) = sink.events
    assert event["context"]["userAgent"] == "A" * MAX_USER_AGENT_CHARS
    assert len(event["context"]["page"]["referrer"]) == MAX_REFERRER_CHARS


def test_log_sink_writes_one_valid_line_per_event_and_counts_what_has_none(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """10 good events and one a receiver spoiled (a value JSON has no form for), through a real file handler."""
    path = tmp_path / "events.jsonl"
    logger = logging.getLogger("tests.poison.logsink")
    logger.propagate = False
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    middleware = PixelMiddleware(None, sink=LogSink(logger))
    client = Client(middleware)

    def spoil(sender: Any, event: Dict[str, Any], **extra: Any) -> None:
        if event.get("messageId") == "poison":
            event["properties"]["when"] = float("inf")

    separators = "a\u2028b\u2029c\x85d"
    try:
        with event_received.connected_to(spoil, sender=middleware), caplog.at_level(logging.ERROR, "pixel_middleware"):
            for i in range(5):
                fire(client, f"/v1/pixel/track?wk=k&e=x&uid=u&mid=g{i}&p.s={quote(separators)}")
            fire(client, "/v1/pixel/track?wk=k&e=x&uid=u&mid=poison&p.s=1")
            for i in range(5, 10):
                fire(client, f"/v1/pixel/track?wk=k&e=x&uid=u&mid=g{i}")
    finally:
        logger.removeHandler(handler)
        handler.close()
    data = path.read_bytes()
    lines = data.decode("utf-8").splitlines()  # strict UTF-8; splitlines splits at U+2028 too
    events = [strict_loads(line) for line in lines]
    assert [e["messageId"] for e in events] == [f"g{i}" for i in range(10)]
    assert events[0]["properties"]["s"] == separators
    assert data.count(b"\n") == 10
    assert middleware.rejections == {"sink_error": 1}
    assert "--- Logging error ---" not in caplog.text and "Traceback" not in caplog.text


# -- the property: whatever a pixel carries, an accepted event is valid, finite UTF-8 JSON ----------

any_char = st.characters(blacklist_categories=())  # surrogates included
hostile_text = st.one_of(
    st.text(any_char, max_size=12),
    st.sampled_from(["1e400", "-1e400", "9" * 5000, "NaN", "Infinity", "\u2028", "\x85", "1.10", "007", "-0"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)),
    max_leaves=8,
)


def flat_query(pairs: List[Any]) -> str:
    return "&".join(
        quote(k.encode("utf-8", "surrogatepass"), safe="") + "=" + quote(v.encode("utf-8", "surrogatepass"), safe="")
        for k, v in pairs
    )


@st.composite
def hostile_urls(draw: Any) -> str:
    dialect = draw(st.sampled_from(["rudderstack", "segment-json", "segment-flat", "mparticle", "compact"]))
    names = st.sampled_from(["p.a", "p.b.c", "properties.a", "context.x", "t.n", "attrs_k", "attrs_v", "ua_k", "ua_v", "n", "e", "uid"])
    pairs = draw(st.lists(st.tuples(names | hostile_text, hostile_text), max_size=6))
    if dialect == "segment-json":
        payload = {"writeKey": "k", "userId": draw(hostile_text | st.integers() | st.floats()), "event": "x",
                   "properties": draw(st.dictionaries(hostile_text, json_values, max_size=4)),
                   "context": draw(st.dictionaries(hostile_text, json_values, max_size=3))}
        # json.dumps writes lone surrogates as \\udXXX escapes and infinities as Infinity: the attacks themselves.
        return segment(json.dumps(payload))
    if dialect == "rudderstack":
        return "/pixel/v1/track?writeKey=k&userId=u&event=x&" + flat_query(pairs)
    if dialect == "segment-flat":
        return "/v1/pixel/track?writeKey=k&userId=u&event=x&" + flat_query(pairs)
    if dialect == "mparticle":
        return "/v1/KEY/Pixel?dt=AppEvent&n=x&" + flat_query(pairs)
    return "/v1/pixel/track?wk=k&e=x&" + flat_query(pairs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(url=hostile_urls())
def test_every_accepted_event_serialises_to_valid_finite_utf8_json_and_round_trips(url: str) -> None:
    sink = MemorySink()
    middleware = PixelMiddleware(None, sink=sink)
    logging.getLogger("pixel_middleware").disabled = True
    try:
        fire(Client(middleware), url, environ_base={**ENVIRON})
    finally:
        logging.getLogger("pixel_middleware").disabled = False
    assert "internal_error" not in middleware.rejections and "sink_error" not in middleware.rejections
    for event in sink.events:
        line = event_line(event)  # LogSink's line; KafkaSink and HttpSink send its UTF-8 bytes
        data = line.encode("utf-8")
        assert len(data.decode("utf-8").splitlines()) == 1
        assert strict_loads(data.decode("utf-8")) == event
        record = json.dumps([event, "compact", None], separators=(",", ":"), allow_nan=False)  # the spool's record
        assert json.loads(record)[0] == event
