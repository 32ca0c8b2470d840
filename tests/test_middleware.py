"""PixelMiddleware as a WSGI citizen: routing, the GIF, enrichment, write keys, signals, sinks, limits."""
from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from PIL import Image
from werkzeug.test import Client

from pixel_middleware import (
    FanoutSink,
    LogSink,
    MemorySink,
    PixelMiddleware,
    Sink,
    event_received,
    sink_from_url,
)
from pixel_middleware.core.gif import GIF
from tests.conftest import ENVIRON, downstream_app, fire

TRACK = "/v1/pixel/track?wk=secret-key&e=Email+Opened&uid=u1"


def test_gif_is_a_transparent_1x1_gif89a():
    assert len(GIF) == 43 and GIF.startswith(b"GIF89a")
    image = Image.open(io.BytesIO(GIF))
    assert image.size == (1, 1)
    assert image.info["transparency"] == image.getpixel((0, 0))


def test_pixel_answer(client):
    response = fire(client, TRACK)
    assert response.data == GIF
    assert dict(response.headers) == {
        "Content-Type": "image/gif",
        "Content-Length": "43",
        "Cache-Control": "no-store, no-cache, must-revalidate",
        "Pragma": "no-cache",
        "Expires": "0",
    }


def test_head_answers_like_get_without_body_and_records_nothing(client, sink):
    response = client.head(TRACK)
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Length"] == "43" and response.headers["Content-Type"] == "image/gif"
    assert sink.events == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405(client, sink, method):
    response = client.open(TRACK, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert sink.events == []


def test_other_paths_reach_the_app_untouched(sink):
    closed = []

    class Body:
        def __iter__(self):
            yield b"hello"

        def close(self):
            closed.append(True)

    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("201 Created", [("X-App", "yes")])
        return Body()

    middleware = PixelMiddleware(app, sink=sink)
    environ = {"PATH_INFO": "/v1/pixel/trackx", "REQUEST_METHOD": "POST", "QUERY_STRING": "wk=k&e=E"}
    result = middleware(environ, lambda status, headers: None)
    assert isinstance(result, Body)  # the very iterable, so the server calls its close()
    response = Client(middleware).post("/account?x=1", data=b"payload")
    assert response.status_code == 201 and response.data == b"hello"
    response.close()
    assert closed == [True]
    assert seen["QUERY_STRING"] == "x=1" and sink.events == []


def test_without_an_app_other_paths_are_404(sink):
    assert Client(PixelMiddleware(None, sink=sink)).get("/").status_code == 404


def test_prefix_mounts_the_routes(sink):
    client = Client(PixelMiddleware(downstream_app, sink=sink, prefix="/t/"))
    fire(client, "/t" + TRACK)
    assert client.get(TRACK).data.startswith(b"downstream")
    assert len(sink.events) == 1


def test_dialect_subset(sink):
    client = Client(PixelMiddleware(downstream_app, sink=sink, dialects=["compact"]))
    fire(client, TRACK)
    assert client.get("/pixel/v1/track?writeKey=k&userId=u&event=E").data.startswith(b"downstream")
    # Segment's requests on the shared route are not claimed by anyone now: GIF, no event.
    fire(client, "/v1/pixel/track?writeKey=k&userId=u&event=E")
    assert len(sink.events) == 1


def test_unknown_dialect_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dialect 'snowplow'"):
        PixelMiddleware(None, dialects=["snowplow"])


def test_enrichment(accept):
    event = accept(TRACK, headers={"User-Agent": "Mail/1.0", "Referer": "https://mail.example/"})
    uuid.UUID(event["messageId"])
    assert event["timestamp"] == event["receivedAt"]
    assert event["receivedAt"].endswith("Z") and len(event["receivedAt"]) == 24
    context = {k: v for k, v in event["context"].items() if k != "pixel"}  # the agent step's notes
    assert context == {"ip": "203.0.113.7", "userAgent": "Mail/1.0"}  # referrer is for pages


def test_ip_is_the_request_address_never_a_claimed_one(accept):
    event = accept("/pixel/v1/track?writeKey=k&userId=u&event=E&context.ip=1.2.3.4")
    assert event["context"]["ip"] == "203.0.113.7"


def test_context_pixel_is_the_servers_own_never_the_urls(accept):
    event = accept("/v1/pixel/track?wk=k&e=Open&uid=u&c.pixel.signed=forged&c.pixel.agent=forged&c.locale=en")
    assert event["context"]["locale"] == "en"
    assert "forged" not in json.dumps(event)


def test_page_referrer_from_header_only_when_absent(accept):
    headers = {"Referer": "https://mail.example/"}
    assert accept("/v1/pixel/page?wk=k&uid=u", headers=headers)["context"]["page"]["referrer"] == "https://mail.example/"
    given = accept("/pixel/v1/page?writeKey=k&userId=u&context.page.referrer=https%3A%2F%2Fa.example%2F", headers=headers)
    assert given["context"]["page"]["referrer"] == "https://a.example/"


@pytest.mark.parametrize("write_keys", [{"secret-key"}, ["secret-key", "other"], "secret-key", lambda key: key == "secret-key"])
def test_write_keys(sink, write_keys, caplog):
    middleware = PixelMiddleware(None, sink=sink, write_keys=write_keys)
    client = Client(middleware)
    fire(client, TRACK)
    with caplog.at_level(logging.WARNING):
        fire(client, TRACK.replace("secret-key", "stolen-key"))
    assert len(sink.events) == 1
    assert middleware.rejections == {"invalid_write_key": 1}
    assert "stolen-key" not in caplog.text and "secret-key" not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("/v1/pixel/track?e=Email+Opened&uid=user_1", id="compact-without-wk-read-as-segment"),
        pytest.param("/v1/pixel/group?e=x&uid=u1", id="compact-group-without-wk-or-gid"),
        pytest.param("/v1/pixel/track?wk=&e=E&uid=u", id="compact-empty-wk"),
        pytest.param("/v1/pixel/track?userId=u", id="segment-flat-without-event"),
        pytest.param("/v1/pixel/track?data=eyJ1c2VySWQiOiJ1In0", id="segment-data-without-event"),  # {"userId":"u"}
        pytest.param("/v1/pixel/track?writeKey=&event=E", id="segment-empty-writeKey-no-identity"),
        pytest.param("/pixel/v1/track?userId=u", id="rudderstack-without-event"),
        pytest.param("/pixel/v1/track?event=E", id="rudderstack-without-identity"),
        pytest.param("/pixel/v1/page?userId=u&properties.a=1&properties.a.b=2", id="rudderstack-conflicting"),
        pytest.param("/v1/click?uid=u1&url=https%3A%2F%2Fgood.example%2F", id="click-without-wk"),
    ],
)
def test_a_request_with_no_write_key_is_missing_write_key_before_anything_else(url, sink, caplog):
    """The first thing to fix is named: a compact URL without ``wk`` is not a Segment URL without ``event``."""
    middleware = PixelMiddleware(None, sink=sink, click_allowed_hosts=["good.example"])
    with caplog.at_level(logging.WARNING, logger="pixel_middleware"):
        Client(middleware).get(url, environ_base=ENVIRON)
    assert sink.events == [] and middleware.rejections == {"missing_write_key": 1}
    (record,) = [r for r in caplog.records if r.name == "pixel_middleware"]
    assert "no write key" in record.getMessage()


@pytest.mark.parametrize(
    "url, reason",
    [
        pytest.param("/v1/pixel/track?wk=k&uid=user_1", "missing_event", id="compact"),
        pytest.param("/v1/pixel/track?writeKey=k&userId=u", "missing_event", id="segment-flat"),
        pytest.param("/v1/pixel/track?data=eyJ3cml0ZUtleSI6ImsiLCJ1c2VySWQiOiJ1In0", "missing_event",
                     id="segment-data"),  # {"writeKey":"k","userId":"u"}
        pytest.param("/v1/pixel/track?data=%21%21", "invalid_base64", id="segment-data-unreadable"),
        pytest.param("/pixel/v1/track?writeKey=k&event=E", "missing_identity", id="rudderstack"),
        pytest.param("/v1/k/Pixel?n=x", "unknown_type", id="mparticle-key-in-path"),
    ],
)
def test_with_a_write_key_the_reason_is_the_dialects_own(reject, url, reason):
    assert reject(url) == reason


def test_write_key_never_in_event(accept):
    event = accept(TRACK)
    assert "secret-key" not in json.dumps(event)


def test_signals(client, middleware, signals):
    fire(client, TRACK)
    fire(client, "/v1/pixel/track?wk=k&uid=u")
    ((name, sender, received), (name2, sender2, rejected)) = signals.calls
    assert (name, name2) == ("received", "rejected")
    assert sender is middleware and sender2 is middleware
    assert received["event"]["event"] == "Email Opened" and received["dialect"] == "compact"
    arrived = rejected.pop("received_at")
    assert rejected == {"reason": "missing_event", "detail": "a track event needs an event name", "dialect": "compact"}
    assert len(arrived) == 24 and arrived >= received["event"]["receivedAt"]  # receivedAt's format; it came second


def test_receiver_that_raises_harms_nobody(client, sink, signals, caplog):
    calls = []

    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    def after(sender, **kwargs):
        calls.append(kwargs["event"]["messageId"])

    with event_received.connected_to(broken), event_received.connected_to(after):
        with caplog.at_level(logging.ERROR, logger="pixel_middleware"):
            fire(client, TRACK)
    assert len(sink.events) == 1 and calls == [sink.events[0]["messageId"]]
    assert "receiver bug" in caplog.text


def test_receiver_may_add_to_the_event_before_the_sink(client, sink):
    def tag(sender, event, **kwargs):
        event.setdefault("properties", {})["tagged"] = True

    with event_received.connected_to(tag):
        fire(client, TRACK)
    assert sink.events[0]["properties"] == {"tagged": True}


def test_receiver_for_one_sender_only(sink, signals):
    one, other = PixelMiddleware(None, sink=sink), PixelMiddleware(None, sink=sink)
    seen = []
    with event_received.connected_to(lambda s, **k: seen.append(s), sender=one):
        fire(Client(one), TRACK)
        fire(Client(other), TRACK)
    assert seen == [one]


class Exploding(Sink):
    def emit(self, event, **meta):
        raise ConnectionError("sink down")


def test_sink_that_raises_never_reaches_the_client(caplog):
    middleware = PixelMiddleware(None, sink=Exploding())
    with caplog.at_level(logging.ERROR, logger="pixel_middleware"):
        fire(Client(middleware), TRACK)
    assert middleware.rejections == {"sink_error": 1}
    assert "sink down" in caplog.text


def test_fanout_keeps_delivering_past_a_failing_sink(caplog):
    first, last = MemorySink(), MemorySink()
    middleware = PixelMiddleware(None, sink=[first, Exploding(), last])
    assert isinstance(middleware.sink, FanoutSink)
    with caplog.at_level(logging.ERROR):
        fire(Client(middleware), TRACK)
    assert len(first.events) == len(last.events) == 1


def test_sink_meta_carries_dialect_and_write_key():
    seen = []

    class Recording(Sink):
        def emit(self, event, **meta):
            seen.append(meta)

    fire(Client(PixelMiddleware(None, sink=Recording())), TRACK)
    assert seen == [{"dialect": "compact", "write_key": "secret-key"}]


def test_sink_urls():
    assert isinstance(sink_from_url("memory:"), MemorySink)
    assert isinstance(sink_from_url("log:"), LogSink)
    assert isinstance(PixelMiddleware(None, sink=["memory:", "log:"]).sink, FanoutSink)
    assert isinstance(PixelMiddleware(None).sink, LogSink)
    with pytest.raises(ValueError, match="unknown sink URL scheme 'redis'") as error:
        sink_from_url("redis://user:s3cret@x")
    assert "s3cret" not in str(error.value)  # the rest of a URL may be a credential: never quoted back


def test_log_sink_writes_one_json_line_per_event(caplog):
    middleware = PixelMiddleware(None, sink="log:pixel_middleware.test_events")
    with caplog.at_level(logging.INFO, logger="pixel_middleware.test_events"):
        fire(Client(middleware), TRACK + "&p.n=1")
        fire(Client(middleware), TRACK)
    lines = [r.getMessage() for r in caplog.records if r.name == "pixel_middleware.test_events"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert json.loads(lines[0])["properties"] == {"n": 1}
    assert "secret-key" not in caplog.text


def test_log_sink_is_visible_without_logging_configuration(tmp_path):
    import subprocess
    import sys

    script = (
        "from werkzeug.test import Client\n"
        "from pixel_middleware import PixelMiddleware\n"
        f"Client(PixelMiddleware(None)).get({TRACK!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    (line,) = done.stderr.splitlines()
    assert json.loads(line)["event"] == "Email Opened"


@pytest.mark.parametrize(
    "query, reason",
    [
        pytest.param("wk=k&e=E&uid=u&p.x=" + "a" * 33000, "query_too_long", id="over-32k"),
        pytest.param("wk=k&e=E&uid=u&" + "&".join(f"p.k{i}=1" for i in range(300)), "too_many_parameters", id="params"),
        pytest.param("wk=k&e=E&uid=u&p.x=%zz", "invalid_encoding", id="bad-percent"),
        pytest.param("wk=k&e=E&uid=u&p.x=%E9", "invalid_encoding", id="percent-not-utf8"),
    ],
)
def test_limits(reject, query, reason):
    assert reject("/v1/pixel/track?" + query) == reason


def test_raw_non_utf8_bytes_are_rejected_and_utf8_accepted(client, sink, middleware):
    # PEP 3333: the raw query bytes reach the app decoded as latin-1.
    raw = lambda query: {"QUERY_STRING": query.decode("latin-1")}  # noqa: E731
    fire(client, "/v1/pixel/track", environ_overrides=raw(b"wk=k&e=\xff&uid=u"))
    assert middleware.rejections == {"invalid_encoding": 1}
    fire(client, "/v1/pixel/track", environ_overrides=raw("wk=k&e=Ünïcødé&uid=u".encode()))
    assert sink.events[-1]["event"] == "Ünïcødé"


def test_a_broken_third_party_dialect_is_contained(sink, caplog):
    from pixel_middleware import Dialect
    class Broken(Dialect):
        name = "broken"
        routes = {"/broken": {}}

        def decode(self, params, route):
            raise KeyError("bug")

    middleware = PixelMiddleware(None, sink=sink, dialects=[Broken()])
    with caplog.at_level(logging.ERROR):
        fire(Client(middleware), "/broken?x=1")
    assert middleware.rejections == {"internal_error": 1} and sink.events == []


def test_close_flushes_the_sink():
    class Closing(MemorySink):
        closed = None

        def close(self, timeout=None):
            self.closed = timeout

    sink = Closing()
    PixelMiddleware(None, sink=sink).close(timeout=3)
    assert sink.closed == 3


def test_environ_base_is_what_tests_claim():
    assert ENVIRON["REMOTE_ADDR"] == "203.0.113.7"


def test_third_party_dialect_from_an_entry_point(tmp_path, monkeypatch, sink):
    (tmp_path / "echo_dialect.py").write_text(
        "from pixel_middleware import Dialect\n"
        "from pixel_middleware.core.events import finish\n"
        "class Echo(Dialect):\n"
        "    name = 'echo'\n"
        "    routes = {'/echo/<kind>': {}}\n"
        "    def decode(self, params, route):\n"
        "        return finish({'event': route['kind'], 'userId': params['u']}, 'track', require_identity=True), 'k'\n"
    )
    info = tmp_path / "echo_dialect-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-dialect\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pixel_middleware.pipeline.dialects]\necho = echo_dialect:Echo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    client = Client(PixelMiddleware(None, sink=sink, dialects=["echo", "compact"]))
    fire(client, "/echo/Opened?u=u1")
    fire(client, TRACK)
    assert [(e["event"], e["userId"]) for e in sink.events] == [("Opened", "u1"), ("Email Opened", "u1")]


def test_after_response_records_the_event_when_the_server_closes_the_body():
    from werkzeug.test import EnvironBuilder

    sink = MemorySink()
    app = PixelMiddleware(None, sink=sink, after_response=True)
    environ = EnvironBuilder(path="/v1/pixel/track", query_string="wk=k&e=Opened&uid=u1").get_environ()
    statuses = []
    body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"] and list(body) == [GIF]
    assert sink.events == []  # the GIF is on its way; nothing recorded yet
    body.close()
    body.close()  # servers may close twice: one event
    assert [e["userId"] for e in sink.events] == ["u1"]

    head = EnvironBuilder(path="/v1/pixel/track", method="HEAD", query_string="wk=k&e=Opened&uid=u2").get_environ()
    body = app(head, lambda *args: None)
    getattr(body, "close", lambda: None)()
    rejected = EnvironBuilder(path="/v1/pixel/track", query_string="e=Opened&uid=u3").get_environ()
    body = app(rejected, lambda *args: None)
    assert list(body) == [GIF]
    body.close()
    assert len(sink.events) == 1 and sum(app.rejections.values()) == 1  # counted at close, too


def test_after_response_dates_the_event_by_the_requests_arrival_not_by_the_close():
    """A slow client or a busy worker may close the body long after the request came in."""
    import time
    from werkzeug.test import EnvironBuilder

    from pixel_middleware.core.events import epoch_ms

    sink = MemorySink()
    app = PixelMiddleware(None, sink=sink, after_response=True)
    environ = EnvironBuilder(path="/v1/pixel/track", query_string="wk=k&e=Opened&uid=u1").get_environ()
    arrived = time.time_ns() // 1_000_000
    body = app(environ, lambda *args: None)
    answered = time.time_ns() // 1_000_000
    time.sleep(0.2)
    body.close()
    received = epoch_ms(sink.events[0]["receivedAt"])
    assert arrived <= received <= answered < time.time_ns() // 1_000_000 - 150
