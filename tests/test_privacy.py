"""Privacy controls: ip modes, Global Privacy Control (and DNT), and ProxyFix in front."""
from __future__ import annotations

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware
from pixel_middleware.pipeline.steps.privacy import anonymize_ip
from tests.conftest import downstream_app, fire

URL = "/v1/pixel/track?wk=k&e=Email%20Opened&uid=u1"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"


@pytest.mark.parametrize("address, expected", [
    pytest.param("203.0.113.7", "203.0.113.0", id="ipv4"),
    pytest.param("10.0.0.255", "10.0.0.0", id="ipv4-last-octet"),
    pytest.param("2001:db8:1234:5678:9abc::1", "2001:db8:1234::", id="ipv6-keeps-48"),
    pytest.param("2001:DB8:1234:ffff::", "2001:db8:1234::", id="ipv6-upper-case"),
    pytest.param("::1", "::", id="ipv6-loopback"),
    pytest.param("::ffff:203.0.113.7", "203.0.113.0", id="ipv4-mapped-as-ipv4"),
    pytest.param("fe80::1%eth0", "fe80::", id="scoped-ipv6-loses-its-scope"),
    pytest.param("not-an-address", None, id="garbage-is-dropped"),
    pytest.param("", None, id="empty"),
])
def test_anonymize_ip(address, expected):
    assert anonymize_ip(address) == expected


def collect(sink: MemorySink, headers=None, address="203.0.113.7", **options):
    middleware = PixelMiddleware(downstream_app, sink=sink, **options)
    fire(Client(middleware), URL, headers={"User-Agent": BROWSER, **(headers or {})},
         environ_base={"REMOTE_ADDR": address})
    return middleware


@pytest.mark.parametrize("options, headers, address, ip, user_agent, gpc", [
    pytest.param({}, {}, "203.0.113.7", "203.0.113.7", BROWSER, None, id="default-keeps-all"),
    pytest.param({"ip": "anonymize"}, {}, "203.0.113.7", "203.0.113.0", BROWSER, None, id="anonymize-v4"),
    pytest.param({"ip": "anonymize"}, {}, "2001:db8:1:2::3", "2001:db8:1::", BROWSER, None, id="anonymize-v6"),
    pytest.param({"ip": "drop"}, {}, "203.0.113.7", None, BROWSER, None, id="drop"),
    pytest.param({}, {"Sec-GPC": "1"}, "203.0.113.7", "203.0.113.0", None, True, id="gpc-anonymizes"),
    pytest.param({"ip": "drop"}, {"Sec-GPC": "1"}, "203.0.113.7", None, None, True, id="gpc-with-ip-drop"),
    pytest.param({}, {"Sec-GPC": "0"}, "203.0.113.7", "203.0.113.7", BROWSER, None, id="gpc-0-is-no-signal"),
    pytest.param({"privacy_signals": "ignore"}, {"Sec-GPC": "1"}, "203.0.113.7", "203.0.113.7", BROWSER, None,
                 id="gpc-ignored"),
    pytest.param({}, {"DNT": "1"}, "203.0.113.7", "203.0.113.7", BROWSER, None, id="dnt-off-by-default"),
    pytest.param({"dnt": True}, {"DNT": "1"}, "203.0.113.7", "203.0.113.0", None, True, id="dnt-honoured"),
])
def test_ip_modes_and_privacy_signals(sink, options, headers, address, ip, user_agent, gpc):
    collect(sink, headers, address, **options)
    (event,) = sink.events
    context = event["context"]
    assert context.get("ip") == ip
    assert context.get("userAgent") == user_agent
    assert context["pixel"].get("gpc") == gpc
    assert context["pixel"]["agent"] == "browser"  # classified from the request before the user agent went


def test_a_url_supplied_user_agent_goes_too_under_gpc(sink):
    middleware = PixelMiddleware(downstream_app, sink=sink)
    fire(Client(middleware), URL + "&c.userAgent=Supplied", headers={"Sec-GPC": "1"})
    assert "userAgent" not in sink.events[0]["context"]


@pytest.mark.parametrize("options, headers", [
    pytest.param({"privacy_signals": "drop"}, {"Sec-GPC": "1"}, id="gpc"),
    pytest.param({"privacy_signals": "drop", "dnt": True}, {"DNT": "1"}, id="dnt"),
])
def test_drop_rejects_opted_out_requests_with_the_gif(sink, signals, options, headers):
    middleware = collect(sink, headers, **options)
    assert sink.events == []
    assert middleware.rejections == {"opted_out": 1}
    assert [kwargs["reason"] for kwargs in signals.of("rejected")] == ["opted_out"]


@pytest.mark.parametrize("options, message", [
    pytest.param({"ip": "mask"}, "ip must be", id="ip"),
    pytest.param({"privacy_signals": "honour"}, "privacy_signals must be", id="signals"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        PixelMiddleware(None, **options)


def test_behind_proxyfix_the_client_address_is_recorded(sink):
    app = ProxyFix(PixelMiddleware(downstream_app, sink=sink), x_for=1)
    fire(Client(app), URL, headers={"X-Forwarded-For": "198.51.100.23"}, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert sink.events[0]["context"]["ip"] == "198.51.100.23"


def test_proxyfix_trusts_only_the_hops_it_is_told(sink):
    """A client's own X-Forwarded-For entry, left of the proxy's, is not believed with x_for=1."""
    app = ProxyFix(PixelMiddleware(downstream_app, sink=sink), x_for=1)
    fire(Client(app), URL, headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.23"}, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert sink.events[0]["context"]["ip"] == "198.51.100.23"


def test_without_proxyfix_x_forwarded_for_is_never_believed(sink):
    collect(sink, {"X-Forwarded-For": "198.51.100.23", "X-Real-IP": "198.51.100.24", "Forwarded": "for=198.51.100.25"},
            address="10.0.0.2")
    assert sink.events[0]["context"]["ip"] == "10.0.0.2"
