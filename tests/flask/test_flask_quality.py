"""The Flask settings for machine opens, deduplication and privacy reach the collector."""
from __future__ import annotations

import pytest

from flask_pixel import Pixel
from tests.flask.conftest import WRITE_KEY

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
URL = f"/v1/pixel/track?wk={WRITE_KEY}&e=Email%20Opened&uid=u1&mid=m1"


def get(app, url=URL, **headers):
    response = app.test_client().get(url, headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 200 and response.mimetype == "image/gif"


def test_defaults_keep_machines_flagged_and_everything_else(make_app, pixel_sink):
    app = make_app()
    get(app, **{"User-Agent": GOOGLEBOT})
    get(app, **{"User-Agent": GOOGLEBOT})
    assert len(pixel_sink.events) == 2
    assert pixel_sink.events[0]["context"]["pixel"] == {"agent": "bot", "machine": True}
    assert pixel_sink.events[0]["context"]["ip"] == "203.0.113.9"


@pytest.mark.parametrize("config, headers, reason", [
    pytest.param({"PIXEL_MACHINE_EVENTS": "drop"}, {"User-Agent": GOOGLEBOT}, "machine", id="machine-events"),
    pytest.param({"PIXEL_PRIVACY_SIGNALS": "drop"}, {"Sec-GPC": "1"}, "opted_out", id="privacy-signals"),
    pytest.param({"PIXEL_PRIVACY_SIGNALS": "drop", "PIXEL_DNT": True}, {"DNT": "1"}, "opted_out", id="dnt"),
])
def test_settings_that_reject(make_app, pixel_sink, config, headers, reason):
    app = make_app(**config)
    get(app, **headers)
    assert pixel_sink.events == []
    assert Pixel.state(app).collector.rejections == {reason: 1}


def test_dedup_setting(make_app, pixel_sink):
    app = make_app(PIXEL_DEDUP=3600)
    get(app)
    get(app)
    assert len(pixel_sink.events) == 1
    assert Pixel.state(app).collector.rejections == {"duplicate": 1}


@pytest.mark.parametrize("mode, expected", [("anonymize", "203.0.113.0"), ("drop", None), ("full", "203.0.113.9")])
def test_ip_setting(make_app, pixel_sink, mode, expected):
    get(make_app(PIXEL_IP=mode))
    assert pixel_sink.events[0]["context"].get("ip") == expected


def test_init_app_options_work_too(pixel_sink):
    from flask import Flask

    app = Flask(__name__)
    app.config.update(PIXEL_SINK=pixel_sink, PIXEL_WRITE_KEY=WRITE_KEY)
    Pixel().init_app(app, ip="anonymize", machine_events="drop")
    get(app)
    get(app, **{"User-Agent": GOOGLEBOT})
    assert len(pixel_sink.events) == 1 and pixel_sink.events[0]["context"]["ip"] == "203.0.113.0"
