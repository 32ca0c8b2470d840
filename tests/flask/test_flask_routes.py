"""The pixel routes a Flask app gets from ``Pixel``: the middleware's answers, signals and sink."""
from __future__ import annotations

from typing import Any, Callable

import pytest
from flask import Flask, url_for
from werkzeug.test import Client

from conftest import WRITE_KEY, recording
from pixel_middleware import MemorySink, PixelMiddleware, event_received, event_rejected
BROWSER = {"REMOTE_ADDR": "203.0.113.9", "HTTP_USER_AGENT": "Mozilla/5.0 test"}

URLS = [
    pytest.param(f"/v1/pixel/track?wk={WRITE_KEY}&e=Email+Opened&uid=u1&p.campaign_id=7", id="compact-track"),
    pytest.param(f"/v1/pixel/page?wk={WRITE_KEY}&e=Home&aid=a1", id="compact-page"),
    pytest.param(
        f"/pixel/v1/track?writeKey={WRITE_KEY}&event=Signed+Up&anonymousId=a2&properties.plan=pro",
        id="rudderstack-track",
    ),
    pytest.param(f"/pixel/v1/page?writeKey={WRITE_KEY}&anonymousId=a3&name=Pricing", id="rudderstack-page"),
    pytest.param(f"/v1/pixel/track?writeKey={WRITE_KEY}&event=Clicked&userId=u4", id="segment-flat"),
    pytest.param(f"/v1/{WRITE_KEY}/Pixel?dt=AppEvent&n=Viewed&et=Navigation&das=d1", id="mparticle"),
    pytest.param("/v1/pixel/track?e=No+Key&uid=u5", id="no-write-key"),
    pytest.param("/v1/pixel/track?wk=wrong&e=X&uid=u6", id="wrong-write-key"),
    pytest.param(f"/v1/pixel/track?wk={WRITE_KEY}&e=%ZZ", id="bad-percent"),
    pytest.param(f"/v1/pixel/track?wk={WRITE_KEY}&uid=u7", id="track-without-event"),
]


def _same_events(flask_events: list, middleware_events: list) -> None:
    volatile = ("receivedAt", "messageId", "timestamp", "anonymousId")
    strip = lambda events: [{k: v for k, v in e.items() if k not in volatile} for e in events]  # noqa: E731
    assert strip(flask_events) == strip(middleware_events)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "OPTIONS", "PROPFIND"])
def test_answers_exactly_like_the_middleware(app: Flask, pixel_sink: MemorySink, url: str, method: str) -> None:
    reference_sink = MemorySink()
    reference = Client(PixelMiddleware(None, sink=reference_sink, write_keys=[WRITE_KEY]))
    ours = app.test_client().open(url, method=method, environ_base=BROWSER)
    theirs = reference.open(url, method=method, environ_base=BROWSER)
    assert ours.status == theirs.status
    assert list(ours.headers) == list(theirs.headers)
    assert ours.get_data() == theirs.get_data()
    _same_events(pixel_sink.events, reference_sink.events)
    assert app.extensions["pixel"].collector.rejections == reference.application.rejections


def test_get_records_one_event_with_the_request_context(app: Flask, pixel_sink: MemorySink) -> None:
    response = app.test_client().get(
        f"/v1/pixel/track?wk={WRITE_KEY}&e=Email+Opened&uid=u1&p.campaign_id=7", environ_base=BROWSER
    )
    assert response.status_code == 200 and response.mimetype == "image/gif"
    (event,) = pixel_sink.events
    assert event["type"] == "track" and event["event"] == "Email Opened" and event["userId"] == "u1"
    assert event["properties"] == {"campaign_id": 7}
    assert event["context"] == {
        "ip": "203.0.113.9", "userAgent": "Mozilla/5.0 test", "pixel": {"agent": "browser", "machine": False}
    }
    assert WRITE_KEY not in repr(event)


def test_head_records_nothing(app: Flask, pixel_sink: MemorySink) -> None:
    with recording(event_received) as received:
        response = app.test_client().head(f"/v1/pixel/track?wk={WRITE_KEY}&e=X&uid=u1")
    assert response.status_code == 200 and response.headers["Content-Length"] == "43"
    assert response.get_data() == b""
    assert pixel_sink.events == [] and received == []


def test_signals_are_sent_with_the_flask_app_as_sender(app: Flask, pixel_sink: MemorySink) -> None:
    client = app.test_client()
    with recording(event_received, sender=app) as received, recording(event_rejected, sender=app) as rejected:
        client.get(f"/v1/pixel/track?wk={WRITE_KEY}&e=Opened&uid=u1")
        client.get("/v1/pixel/track?wk=wrong&e=Opened&uid=u1")
    ((sender, kwargs),) = received
    assert sender is app  # the app itself, never the current_app proxy
    assert kwargs == {"event": pixel_sink.events[0], "dialect": "compact"}
    ((sender, kwargs),) = rejected
    assert sender is app
    assert kwargs["reason"] == "invalid_write_key" and kwargs["dialect"] == "compact"
    assert "wrong" not in kwargs["detail"]


def test_connect_via_the_app_as_in_the_issue(app: Flask) -> None:
    opened = []

    @event_received.connect_via(app)
    def on_open(sender: Any, event: dict, **extra: Any) -> None:
        opened.append((sender, event["event"], extra["dialect"]))

    try:
        app.test_client().get(f"/v1/pixel/track?wk={WRITE_KEY}&e=Email+Opened&uid=u1")
    finally:
        event_received.disconnect(on_open, sender=app)
    assert opened == [(app, "Email Opened", "compact")]


@pytest.mark.parametrize(
    "url, reason",
    [
        pytest.param("/v1/pixel/track?event=X&userId=u1", "missing_write_key", id="no-key"),
        pytest.param("/v1/pixel/track?wk=nope&e=X&uid=u1", "invalid_write_key", id="wrong-key"),
        pytest.param(f"/v1/pixel/track?wk={WRITE_KEY}&uid=u1", "missing_event", id="no-event"),
        pytest.param(f"/v1/pixel/track?wk={WRITE_KEY}&e=%FF", "invalid_encoding", id="not-utf8"),
        pytest.param(f"/v1/pixel/group?wk={WRITE_KEY}&uid=u1", "missing_group_id", id="group-without-id"),
        pytest.param(f"/v1/pixel/track?wk={WRITE_KEY}&e=X&p.a=1&p.a.b=2", "conflicting_parameters", id="conflict"),
        pytest.param("/v1/pixel/track?" + "x=1&" * 300, "too_many_parameters", id="too-many"),
    ],
)
def test_bad_input_gets_the_gif_and_a_rejection(app: Flask, pixel_sink: MemorySink, url: str, reason: str) -> None:
    with recording(event_rejected, sender=app) as rejected:
        response = app.test_client().get(url)
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert len(response.get_data()) == 43
    assert pixel_sink.events == []
    assert app.extensions["pixel"].collector.rejections == {reason: 1}
    assert [kwargs["reason"] for _, kwargs in rejected] == [reason]


def test_a_failing_receiver_does_not_reach_the_client(app: Flask, pixel_sink: MemorySink, caplog: Any) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    with event_received.connected_to(broken, sender=app):
        response = app.test_client().get(f"/v1/pixel/track?wk={WRITE_KEY}&e=X&uid=u1")
    assert response.status_code == 200
    assert len(pixel_sink.events) == 1
    assert "receiver bug" in caplog.text


def test_the_mparticle_rule_variable_reaches_the_decoder(app: Flask, pixel_sink: MemorySink) -> None:
    app.test_client().get(f"/v1/{WRITE_KEY}/Pixel?dt=AppEvent&n=Viewed&ui_t=customerid&ui_v=c1")
    app.test_client().get("/v1/not-the-key/Pixel?dt=AppEvent&n=Viewed&ui_t=customerid&ui_v=c2")
    (event,) = pixel_sink.events
    assert event["event"] == "Viewed" and event["userId"] == "c1"
    assert app.extensions["pixel"].collector.rejections == {"invalid_write_key": 1}


def test_url_for_reaches_the_routes(app: Flask) -> None:
    with app.test_request_context("/"):
        assert url_for("pixel.v1_pixel_track") == "/v1/pixel/track"
        assert url_for("pixel.pixel_v1_page") == "/pixel/v1/page"
        assert url_for("pixel.v1_api_key_Pixel", api_key="k1") == "/v1/k1/Pixel"
    assert "pixel" in app.blueprints


def test_the_rest_of_the_app_is_untouched(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    app.add_url_rule("/hello", "hello", lambda: "hello")
    client = app.test_client()
    assert client.get("/hello").get_data() == b"hello"
    assert client.get("/v1/pixel/nothing").status_code == 404
    assert client.get("/v1/pixel/track/").status_code == 404
