"""The click route: records the click and redirects, and is never an open redirect."""
from __future__ import annotations

import http.client
import threading
from urllib.parse import quote

import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

from pixel_middleware import PixelMiddleware, build_click_url
from tests.conftest import ENVIRON, downstream_app
from tests.helpers import free_port

KEY = "click-signing-key"
BASE = "http://pixels.example"
TARGET = "https://shop.example/sale?utm_source=email&x=1"


@pytest.fixture
def middleware(sink):
    return PixelMiddleware(downstream_app, sink=sink, signing_key=KEY, click_allowed_hosts=["good.example", "*.trusted.example"])


def click(client, target, **kwargs):
    return client.get(f"/v1/click?wk=wk1&uid=u1&url={quote(target, safe='')}", environ_base=ENVIRON, **kwargs)


def test_signed_click_records_and_redirects(client, sink, signals):
    url = build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY, properties={"campaign_id": 7})
    response = client.get(url, environ_base=ENVIRON)
    assert response.status_code == 302
    assert response.headers["Location"] == TARGET and response.headers["Cache-Control"] == "no-store"
    (event,) = sink.events
    assert event["type"] == "track" and event["event"] == "Email Link Clicked" and event["userId"] == "u1"
    assert event["properties"] == {"campaign_id": 7, "link_url": TARGET}
    assert event["context"]["pixel"]["signed"] is True
    assert signals.of("received")[0]["event"] is event


def test_event_name_can_be_chosen(client, sink):
    client.get(build_click_url(BASE, TARGET, "CTA Clicked", user_id="u1", write_key="wk1", signing_key=KEY))
    assert sink.events[0]["event"] == "CTA Clicked"


def test_head_redirects_and_records_nothing(client, sink):
    response = client.head(build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY))
    assert response.status_code == 302 and response.headers["Location"] == TARGET
    assert sink.events == []


def test_other_methods_get_405(client, sink):
    response = client.post(build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY))
    assert response.status_code == 405 and sink.events == []


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("https://good.example/page", id="exact-host"),
        pytest.param("http://GOOD.example/", id="host-case"),
        pytest.param("https://mail.trusted.example/x", id="subdomain"),
        pytest.param("https://a.b.trusted.example:8443/x?y=1#z", id="deep-subdomain-port"),
    ],
)
def test_allowed_hosts_redirect_unsigned(client, sink, target):
    response = click(client, target)
    assert response.status_code == 302 and response.headers["Location"] == target
    assert sink.events[0]["properties"]["link_url"] == target
    assert sink.events[0]["context"]["pixel"]["signed"] is False


MALICIOUS = [
    pytest.param("https://evil.example/", id="host-not-allowed"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("JavaScript:alert(document.cookie)//https://good.example/", id="javascript-mixed-case"),
    pytest.param("data:text/html,<script>alert(1)</script>", id="data"),
    pytest.param("vbscript:msgbox(1)", id="vbscript"),
    pytest.param("//evil.example/", id="scheme-relative"),
    pytest.param("/\\evil.example/", id="slash-backslash"),
    pytest.param("https:\\\\evil.example/", id="backslashes"),
    pytest.param("https://good.example\\@evil.example/", id="backslash-userinfo"),
    pytest.param("https://good.example@evil.example/", id="userinfo"),
    pytest.param("https://good.example:pw@evil.example/", id="userinfo-password"),
    pytest.param("https://evil.example#@good.example/", id="fragment-at"),
    pytest.param("https://evil.example?@good.example/", id="query-at"),
    pytest.param("https://good.example.evil.example/", id="allowed-host-as-label"),
    pytest.param("https://trusted.example/", id="wildcard-is-subdomains-only"),
    pytest.param("https://eviltrusted.example/", id="wildcard-suffix-without-dot"),
    pytest.param("https://good.example/\r\nSet-Cookie: x=1", id="crlf"),
    pytest.param("https://good.example/\nx", id="lf"),
    pytest.param("https://good.example/\x00", id="nul"),
    pytest.param("https://good.example/\t", id="tab"),
    pytest.param(" https://good.example/", id="leading-space"),
    pytest.param("https://good.exam\u0440le/", id="homoglyph"),
    pytest.param("https:/good.example/", id="one-slash"),
    pytest.param("https:good.example/", id="no-slashes"),
    pytest.param("ftp://good.example/", id="ftp"),
    pytest.param("https://", id="no-host"),
    pytest.param("https://good.example:99999/", id="bad-port"),
    pytest.param("good.example/page", id="relative"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("target", MALICIOUS)
def test_open_redirect_tricks_get_400_without_location(client, sink, middleware, target, caplog):
    response = click(client, target)
    assert response.status_code == 400
    assert "Location" not in response.headers
    body = response.get_data(as_text=True)
    assert "href" not in body and "good.example" not in body and "evil" not in body
    assert sink.events == [] and middleware.rejections == {"unsafe_redirect": 1}
    assert "wk1" not in caplog.text


def test_missing_target_is_unsafe(client, middleware):
    response = client.get("/v1/click?wk=wk1&uid=u1")
    assert response.status_code == 400 and middleware.rejections == {"unsafe_redirect": 1}


@pytest.mark.parametrize("target", ["https://evil.example/", "javascript:alert(1)"])
def test_a_bad_signature_does_not_open_the_redirect(client, middleware, target):
    signed = build_click_url(BASE, "https://evil.example/", user_id="u1", write_key="wk1", signing_key="another-key")
    response = client.get(signed.replace(quote("https://evil.example/", safe=""), quote(target, safe="")))
    assert response.status_code == 400 and "Location" not in response.headers
    assert middleware.rejections == {"unsafe_redirect": 1}


def test_signed_target_is_tamper_proof(client, middleware):
    url = build_click_url(BASE, "https://partner.example/", user_id="u1", write_key="wk1", signing_key=KEY)
    response = client.get(url.replace("partner.example", "evil.example"))
    assert response.status_code == 400 and middleware.rejections == {"unsafe_redirect": 1}


@pytest.mark.parametrize(
    "query, reason",
    [
        pytest.param("wk=bad&uid=u1", "invalid_write_key", id="write-key"),
        pytest.param("uid=u1", "missing_write_key", id="no-write-key"),
        pytest.param("wk=wk1&uid=u1&sig=AAAA.BBBB", "bad_signature", id="bad-signature"),
    ],
)
def test_a_rejected_click_to_a_safe_target_still_redirects(sink, query, reason):
    middleware = PixelMiddleware(None, sink=sink, write_keys=["wk1"], signing_key=KEY, click_allowed_hosts=["good.example"])
    response = Client(middleware).get(f"/v1/click?{query}&url=https%3A%2F%2Fgood.example%2F")
    assert response.status_code == 302 and response.headers["Location"] == "https://good.example/"
    assert sink.events == [] and middleware.rejections == {reason: 1}


def test_expired_signature_still_redirects_but_records_nothing(sink, monkeypatch):
    import time

    real_time = time.time
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: real_time() - 3600)
        url = build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY)
    middleware = PixelMiddleware(None, sink=sink, signing_key=KEY, signature_max_age=60)
    response = Client(middleware).get(url)
    assert response.status_code == 302 and sink.events == [] and middleware.rejections == {"signature_expired": 1}


def test_no_key_and_no_allowed_hosts_follows_nothing(sink):
    middleware = PixelMiddleware(None, sink=sink)
    response = Client(middleware).get(build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY))
    assert response.status_code == 400 and sink.events == []


def test_click_route_under_prefix_and_in_hit(sink):
    seen = []
    middleware = PixelMiddleware(None, sink=sink, signing_key=KEY, prefix="/t")
    middleware.collector._steps += (lambda event, hit: seen.append(hit.match.route.values.get("click")),)
    response = Client(middleware).get(build_click_url(BASE + "/t", TARGET, user_id="u1", write_key="wk1", signing_key=KEY))
    assert response.status_code == 302 and len(sink.events) == 1 and seen == ["1"]


@pytest.mark.parametrize("target", ["javascript:alert(1)", "//evil.example/", "https://a@b.example/"])
def test_build_click_url_refuses_targets_the_route_would_not_follow(target):
    with pytest.raises(ValueError):
        build_click_url(BASE, target, write_key="wk1", signing_key=KEY)


def test_an_unsigned_click_url_to_a_host_not_allowed_is_refused_at_build_time():
    """Without a key or the host allowed, every click would answer 400: the mistake shows where it is made."""
    for allowed in (None, [], ["other.example", "*.good.example"]):
        with pytest.raises(ValueError) as refused:
            build_click_url(BASE, "https://good.example/sale", user_id="u1", write_key="wk1", allowed_hosts=allowed)
        message = str(refused.value)
        for name in ("signing_key", "PIXEL_SIGNING_KEY", "SECRET_KEY", "click_allowed_hosts", "PIXEL_CLICK_ALLOWED_HOSTS"):
            assert name in message
        assert "wk1" not in message


@pytest.mark.parametrize("target, allowed", [
    pytest.param("https://good.example/sale", ["good.example"], id="exact"),
    pytest.param("https://www.good.example/sale", ["*.good.example"], id="subdomain"),
    pytest.param("https://GOOD.example./sale", "good.example", id="case-and-trailing-dot-one-string"),
])
def test_an_unsigned_click_url_to_an_allowed_host_is_built_and_followed(sink, target, allowed):
    url = build_click_url(BASE, target, user_id="u1", write_key="wk1", allowed_hosts=allowed)
    assert "sig=" not in url
    response = Client(PixelMiddleware(None, sink=sink, click_allowed_hosts=allowed)).get(url)
    assert response.status_code == 302 and response.headers["Location"] == target and len(sink.events) == 1


def test_a_signed_click_url_needs_no_allowed_host():
    assert "&sig=" in build_click_url(BASE, "https://anywhere.example/", user_id="u1", write_key="wk1", signing_key=KEY)


@pytest.fixture
def server(middleware):
    port = free_port()
    httpd = make_server("127.0.0.1", port, middleware, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield port
    httpd.shutdown()
    thread.join(10)


def fetch(port, path, method="GET"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_real_server_redirects_a_signed_click(server, sink):
    url = build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY)
    status, headers, _ = fetch(server, url[len(BASE) :])
    assert status == 302 and headers["Location"] == TARGET and headers["Cache-Control"] == "no-store"
    assert sink.events[0]["properties"]["link_url"] == TARGET


@pytest.mark.parametrize("target", ["https://evil.example/", "https://good.example/\r\nSet-Cookie: a=b", "//evil.example"])
def test_real_server_refuses_open_redirects(server, sink, target):
    status, headers, body = fetch(server, f"/v1/click?wk=wk1&uid=u1&url={quote(target, safe='')}")
    assert status == 400 and "Location" not in headers and "Set-Cookie" not in headers
    assert b"href" not in body and sink.events == []


# Proofpoint's URL Defense and Microsoft's Safe Links fetch through ordinary HTTP clients; a user agent that
# crawlerdetect knows stands for them here (tests/test_agents.py cites the real strings).
@pytest.mark.parametrize(
    "user_agent, agent, machine",
    [
        pytest.param("python-requests/2.31.0", "link_scanner", True, id="scanner-on-the-click-route"),
        pytest.param("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/120.0.0.0 Safari/537.36", "browser", False, id="a-person"),
    ],
)
def test_click_route_names_link_scanners(client, sink, user_agent, agent, machine):
    url = build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY)
    response = client.get(url, environ_base=ENVIRON, headers={"User-Agent": user_agent})
    assert response.status_code == 302 and response.headers["Location"] == TARGET
    (event,) = sink.events
    assert event["context"]["pixel"] == {"signed": True, "agent": agent, "machine": machine}


def test_the_same_fetcher_on_a_pixel_route_is_a_bot(client, sink):
    client.get("/v1/pixel/track?wk=wk1&e=Open&uid=u1", environ_base=ENVIRON, headers={"User-Agent": "python-requests/2.31.0"})
    assert sink.events[0]["context"]["pixel"]["agent"] == "bot"


def test_machine_events_drop_keeps_the_redirect_for_a_scanner(sink):
    middleware = PixelMiddleware(None, sink=sink, signing_key=KEY, machine_events="drop")
    url = build_click_url(BASE, TARGET, user_id="u1", write_key="wk1", signing_key=KEY)
    response = Client(middleware).get(url, environ_base=ENVIRON, headers={"User-Agent": "python-requests/2.31.0"})
    assert response.status_code == 302 and response.headers["Location"] == TARGET
    assert sink.events == [] and middleware.rejections == {"machine": 1}
