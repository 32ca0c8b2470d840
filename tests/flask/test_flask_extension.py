"""Pixel as a Flask extension: registration, app factories, several apps, config and options."""
from __future__ import annotations

import gc
from typing import Any, Callable, List, Optional

import pytest
from flask import Flask

from conftest import WRITE_KEY, recording
from flask_pixel import Pixel, PixelState
from pixel_middleware import LogSink, MemorySink, event_received
from pixel_middleware.sinks import SCHEMES, Sink


def create_app(pixel: Pixel, **config: Any) -> Flask:
    """An app factory, as Flask's tutorial writes one."""
    app = Flask(__name__)
    app.config.update(config)
    pixel.init_app(app)
    return app


def test_direct_style(pixel_sink: MemorySink) -> None:
    app = Flask(__name__)
    app.config.update(PIXEL_SINK=pixel_sink, PIXEL_WRITE_KEY=WRITE_KEY)
    pixel = Pixel(app)
    state = app.extensions["pixel"]
    assert isinstance(state, PixelState) and state.extension is pixel and state.collector.sink is pixel_sink
    assert not hasattr(pixel, "app")
    assert Pixel.state(app) is state
    for name in ("pixel_url", "pixel_tag", "amp_pixel"):
        assert name in app.jinja_env.globals


def test_factory_style_serves_several_apps_from_one_extension() -> None:
    pixel = Pixel()
    sinks = [MemorySink(), MemorySink()]
    apps = [create_app(pixel, PIXEL_SINK=sink, PIXEL_WRITE_KEY=f"key-{i}") for i, sink in enumerate(sinks)]
    received: List[Any] = []
    with recording(event_received, sender=apps[0]) as first, recording(event_received, sender=apps[1]) as second:
        for i, app in enumerate(apps):
            client = app.test_client()
            client.get(f"/v1/pixel/track?wk=key-{i}&e=Opened&uid=app{i}")
            client.get(f"/v1/pixel/track?wk=key-{1 - i}&e=Opened&uid=other")  # the other app's key
        received = first + second
    assert [[e["userId"] for e in sink.events] for sink in sinks] == [["app0"], ["app1"]]
    assert [sender for sender, _ in first] == [apps[0]] and [sender for sender, _ in second] == [apps[1]]
    assert len(received) == 2
    for i, app in enumerate(apps):
        assert app.extensions["pixel"].collector.rejections == {"invalid_write_key": 1}
        with app.app_context():
            assert Pixel.state() is app.extensions["pixel"]


def test_a_second_registration_on_the_same_app_is_refused(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already registered"):
        Pixel(app)
    with pytest.raises(RuntimeError, match="already registered"):
        app.extensions["pixel"].extension.init_app(app)


def test_state_of_an_app_without_the_extension() -> None:
    with pytest.raises(RuntimeError, match="no Pixel extension"):
        Pixel.state(Flask(__name__))


def test_defaults() -> None:
    app = Flask(__name__)
    Pixel(app)
    state = app.extensions["pixel"]
    assert isinstance(state.collector.sink, LogSink)
    assert state.url_dialect.name == "compact" and state.prefix == ""
    assert state.settings == {
        "sink": None,  # the collector's default: a LogSink
        "write_keys": None,
        "write_key": None,
        "url_dialect": state.url_dialect,
        "base_url": None,
        "dialects": None,
        "prefix": "",
        "cache_buster": True,
        "user_resolver": None,
        "user_traits": None,
        "signing_key": None,
        "signing_key_fallbacks": None,
        "require_signature": False,
        "signature_max_age": None,
        "click_allowed_hosts": None,
        "machine_events": "keep",
        "dedup": None,
        "ip": "full",
        "privacy_signals": "anonymize",
        "dnt": False,
        "metrics": False,
        "sender": None,
        "after_response": False,
    }
    assert state.signing_key is None  # no SECRET_KEY either
    # With no PIXEL_WRITE_KEY and no PIXEL_WRITE_KEYS, any key is accepted.
    app.test_client().get("/v1/pixel/track?wk=anything&e=E&uid=u1")
    assert not state.collector.rejections


def test_constructor_options_override_config_and_init_app_options_override_both() -> None:
    config_sink, option_sink, init_sink = MemorySink(), MemorySink(), MemorySink()
    pixel = Pixel(sink=option_sink, write_key="from-option", base_url="https://option.example")
    app = create_app(
        pixel, PIXEL_SINK=config_sink, PIXEL_WRITE_KEY="from-config", PIXEL_BASE_URL="https://config.example",
        PIXEL_CACHE_BUSTER=False,
    )
    state = app.extensions["pixel"]
    assert state.collector.sink is option_sink
    with app.app_context():
        assert state.pixel_url("E") == "https://option.example/v1/pixel/track?wk=from-option&e=E"
    other = Flask(__name__)
    other.config.update(PIXEL_SINK=config_sink)
    pixel.init_app(other, sink=init_sink, prefix="/px")
    assert other.extensions["pixel"].collector.sink is init_sink
    assert other.extensions["pixel"].settings["write_key"] == "from-option"
    assert other.extensions["pixel"].collector.routes[0].rule.startswith("/px/")


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="writekey"):
        Pixel(writekey="x")


def test_sink_url_and_fan_out_from_config(pixel_sink: MemorySink) -> None:
    app = Flask(__name__)
    app.config.update(PIXEL_SINK=["memory:", pixel_sink], PIXEL_WRITE_KEY=WRITE_KEY)
    Pixel(app)
    app.test_client().get(f"/v1/pixel/track?wk={WRITE_KEY}&e=E&uid=u1")
    fanout = app.extensions["pixel"].collector.sink
    assert [len(sink.events) for sink in fanout.sinks] == [1, 1]


@pytest.mark.parametrize(
    "write_keys, accepted, refused",
    [
        pytest.param(None, [WRITE_KEY], ["other"], id="default-is-the-apps-own-key"),
        pytest.param("other, test-key", [WRITE_KEY, "other"], ["third"], id="comma-separated"),
        pytest.param([WRITE_KEY, "b"], [WRITE_KEY, "b"], ["c"], id="list"),
        pytest.param(lambda key: key.startswith("test"), [WRITE_KEY, "test-2"], ["x"], id="callable"),
    ],
)
def test_accepted_write_keys(make_app: Callable[..., Flask], write_keys: Any, accepted: List[str], refused: List[str]) -> None:
    app = make_app(PIXEL_WRITE_KEYS=write_keys)
    client = app.test_client()
    for key in accepted + refused:
        client.get(f"/v1/pixel/track?wk={key}&e=E&uid=u1")
    assert app.extensions["pixel"].collector.rejections == {"invalid_write_key": len(refused)}


def test_a_write_key_the_routes_would_refuse_is_a_configuration_error(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="PIXEL_WRITE_KEY is not among PIXEL_WRITE_KEYS"):
        make_app(PIXEL_WRITE_KEYS=["a", "b"])


def test_enabled_dialects(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_DIALECTS=["rudderstack"], PIXEL_URL_DIALECT="rudderstack")
    client = app.test_client()
    assert client.get(f"/pixel/v1/track?writeKey={WRITE_KEY}&event=E&anonymousId=a").status_code == 200
    assert client.get(f"/v1/pixel/track?wk={WRITE_KEY}&e=E").status_code == 404
    assert len(pixel_sink.events) == 1
    with pytest.raises(ValueError, match="PIXEL_URL_DIALECT 'compact' is not enabled in PIXEL_DIALECTS"):
        make_app(PIXEL_DIALECTS=["rudderstack"])


def test_bad_prefix_names_the_setting(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="PIXEL_PREFIX"):
        make_app(PIXEL_PREFIX="t")


class ClosingSink(Sink):
    closed: List[Optional[float]] = []

    def emit(self, event: Any, **meta: Any) -> None:
        pass

    def close(self, timeout: Optional[float] = None) -> None:
        ClosingSink.closed.append(timeout)


def test_a_sink_built_from_a_url_is_closed_with_its_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "closing", f"{__name__}:ClosingSink")
    ClosingSink.closed = []
    app = Flask(__name__)
    app.config["PIXEL_SINK"] = "closing:"
    Pixel(app)
    assert isinstance(app.extensions["pixel"].collector.sink, ClosingSink)
    given = ClosingSink()
    other = Flask(__name__)
    Pixel(other, sink=given)
    del app, other
    gc.collect()
    assert ClosingSink.closed == [10]  # the URL-built sink; the one passed in is its owner's to close


def test_pixel_metrics_counts_the_apps_events():
    from prometheus_client.parser import text_string_to_metric_families
    from werkzeug.test import Client

    from pixel_middleware import metrics_app
    def opened() -> float:
        text = Client(metrics_app()).get("/metrics").get_data(as_text=True)
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "pixel_events_total" and s.labels == {"dialect": "compact", "type": "track"})

    app = Flask(__name__)
    app.config.update(PIXEL_WRITE_KEY="k", PIXEL_SINK="memory:", PIXEL_METRICS=True)
    Pixel(app)
    before = opened()
    assert app.test_client().get("/v1/pixel/track?wk=k&e=Opened&uid=u1").status_code == 200
    assert opened() == before + 1
