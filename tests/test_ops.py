"""The ops app's pieces: explain's isolation, readiness verdicts, the debug page's CSP and form."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from typing import Any

from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, build_pixel_url, event_rejected
from pixel_middleware.server.explain import explain
from pixel_middleware.server.ops import StatusReporter, ops_app, read_statuses, readiness


def test_explain_logs_and_signals_nothing_and_leaves_the_logger_alone(caplog: Any) -> None:
    logger = logging.getLogger("pixel_middleware")
    level = logger.level
    seen = []
    with caplog.at_level(logging.INFO, logger="pixel_middleware"), event_rejected.connected_to(
        lambda sender, **kw: seen.append(kw)
    ):
        event, reason = explain(build_pixel_url("http://x", "Opened", user_id="u", write_key="bad"), write_keys=["k"])
    assert (event, reason) == (None, "invalid_write_key: the write key is not accepted")
    assert caplog.records == [] and seen == [] and logger.level == level


def test_explain_announces_no_accepted_event_to_receivers_of_any_sender() -> None:
    from pixel_middleware import event_received
    seen = []
    with event_received.connected_to(lambda sender, **kw: seen.append(kw)):  # README's @event_received.connect
        event, reason = explain(build_pixel_url("http://x", "Opened", user_id="u", write_key="k"))
    assert reason is None and event["event"] == "Opened"
    assert seen == []  # an app counting opens would count a URL someone only pasted to look at


def test_explain_uses_the_collectors_own_settings_but_never_dedup() -> None:
    from pixel_middleware.server.config import SERVE_OPTIONS
    from pixel_middleware.server.supervisor import _explainer

    settings = {o.name: o.default for o in SERVE_OPTIONS}
    settings.update(signing_key="sign-key", require_signature=True, dedup="60", write_keys=["k"])
    unsigned = build_pixel_url("http://x", "Opened", user_id="u", write_key="k", message_id="m1")
    assert _explainer(settings)(unsigned) == (None, "missing_signature: unsigned URLs are not accepted")
    signed = build_pixel_url("http://x", "Opened", user_id="u", write_key="k", message_id="m1", signing_key="sign-key")
    for _ in range(2):  # with dedup, the second would be a duplicate
        event, reason = _explainer(settings)(signed)
        assert reason is None and event["context"]["pixel"]["signed"] is True


def test_explain_refuses_a_click_the_click_route_would_not_follow() -> None:
    from pixel_middleware import build_click_url
    options = {"write_keys": ["k"], "click_allowed_hosts": ["shop.test"]}
    for target, followed in (("https://evil.test/", False), ("https://shop.test/a", True)):
        # Signed with a key this collector does not hold: only the allowed host may be followed.
        url = build_click_url("http://x.test", target, user_id="u", write_key="k", signing_key="another-collector")
        sink = MemorySink()
        live = Client(PixelMiddleware(None, sink=sink, **options)).get(url.partition("x.test")[2])
        assert live.status_code == (302 if followed else 400)
        event, reason = explain(url, **options)
        assert (event is not None) == followed == bool(sink.events), (target, reason)
        if not followed:
            assert reason == "unsafe_redirect: the click target is neither signed nor allowed"


def test_a_stopped_worker_is_not_counted_live(tmp_path: Any) -> None:
    app = PixelMiddleware(None, sink=MemorySink())
    reporter = StatusReporter(app.collector, str(tmp_path), interval=60)
    assert readiness(read_statuses(str(tmp_path)), 30) == (False, {"ready": False, "reason": "no worker has reported yet"})
    reporter.start()
    ready, body = readiness(read_statuses(str(tmp_path)), 30)
    assert ready and body["workers"] == 1 and body["sinks"] == ["memory"]
    reporter.stop()
    ready, body = readiness(read_statuses(str(tmp_path)), 30)
    assert not ready and body["reason"].startswith("no live worker")


def test_debug_page_allows_exactly_its_own_style_and_script_and_posts_the_pasted_url(tmp_path: Any) -> None:
    client = Client(ops_app(str(tmp_path), debug_page=True, explain=lambda url: explain(url)))
    page = client.get("/")
    policy = page.headers["Content-Security-Policy"]
    for tag, directive in (("style", "style-src"), ("script", "script-src")):
        (code,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page.get_data(as_text=True), re.S)
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}';" in policy
    assert "unsafe" not in policy and "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert '<form method="post" action="/explain">' in page.get_data(as_text=True)
    answer = client.post("/explain", data={"url": "http://x/v1/pixel/track?wk=k&e=Pasted&uid=u"})
    assert answer.status_code == 200 and "&quot;Pasted&quot;" in answer.get_data(as_text=True)
    assert client.post("/explain", data={"url": "x" * 200_000}).status_code == 413
    assert client.get("/nowhere").status_code == 404 and client.delete("/healthz").status_code == 405
    assert Client(ops_app(str(tmp_path))).get("/").status_code == 404  # the page is opt-in
    assert json.loads(client.get("/readyz").get_data())["ready"] is False


def test_debug_page_answers_only_an_address_or_localhost(tmp_path: Any) -> None:
    """DNS rebinding: a page on rebind.example pointed at 127.0.0.1 sends its own name as the host."""
    client = Client(ops_app(str(tmp_path), debug_page=True, explain=lambda url: explain(url)))
    for host in ("127.0.0.1:9100", "localhost:9100", "[::1]:9100", "10.1.2.3", "pods.localhost"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("rebind.example:9100", "rebind.example", "127.0.0.1.nip.io", "[::1", ""):
        answer = client.get("/", headers={"Host": host})
        assert answer.status_code == 403 and "<table" not in answer.get_data(as_text=True), host
        assert client.post("/explain", data={"url": "http://x/v1/pixel/track?wk=k&e=E&uid=u"},
                           headers={"Host": host}).status_code == 403, host
    # Every ops path: /metrics and /readyz name sinks and counts a rebinding page could read too.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path, headers={"Host": "rebind.example"}).status_code == 403, path
    assert client.get("/healthz", headers={"Host": "10.0.0.7:9100"}).status_code == 200  # a probe's pod IP
    # A scraper that uses the service's name is let in by name (--ops-allowed-host), and no other name.
    named = Client(ops_app(str(tmp_path), allowed_hosts=["*.svc.cluster.local", "collector"]))
    for host, status in (("pixels.ns.svc.cluster.local:9100", 200), ("collector", 200), ("rebind.example", 403)):
        assert named.get("/healthz", headers={"Host": host}).status_code == status, host


def test_explain_answers_post_only(tmp_path: Any) -> None:
    client = Client(ops_app(str(tmp_path), debug_page=True, explain=lambda url: explain(url)))
    url = "http://x/v1/pixel/track?wk=k&e=E&uid=u"
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        answer = client.open("/explain", method=method, query_string={"url": url})
        assert answer.status_code == 405 and answer.headers["Allow"] == "POST", method
    assert client.post("/explain", data={"url": url}).status_code == 200


def test_debug_page_orders_events_by_arrival_when_closes_come_in_another_order(tmp_path: Any) -> None:
    """With after_response, two requests' bodies may be closed (and recorded) in either order."""
    import time
    from werkzeug.test import EnvironBuilder

    app = PixelMiddleware(None, sink=MemorySink(), after_response=True)
    reporter = StatusReporter(app.collector, str(tmp_path), interval=60, recent=10)
    reporter.start()
    try:
        bodies = []
        for name in ("First", "Second"):
            environ = EnvironBuilder(path="/v1/pixel/track", query_string=f"wk=k&e={name}&uid=u").get_environ()
            bodies.append(app(environ, lambda *args: None))
            time.sleep(0.02)
        bodies[1].close()
        time.sleep(0.02)
        bodies[0].close()
        reporter.write()
    finally:
        reporter.stop()
    page = Client(ops_app(str(tmp_path), debug_page=True)).get("/").get_data(as_text=True)
    assert page.index("<b>Second</b>") < page.index("<b>First</b>"), "newest arrival first"


def test_debug_page_dates_a_rejection_by_its_arrival_too(tmp_path: Any) -> None:
    """A rejection recorded after a later request's event still shows below it: both dated by arrival."""
    import time
    from werkzeug.test import EnvironBuilder

    app = PixelMiddleware(None, sink=MemorySink(), after_response=True, write_keys=["k"])
    reporter = StatusReporter(app.collector, str(tmp_path), interval=60, recent=10)
    reporter.start()
    try:
        bodies = []
        for query in ("wk=wrong&e=Refused&uid=u", "wk=k&e=Second&uid=u"):  # the first key is refused
            environ = EnvironBuilder(path="/v1/pixel/track", query_string=query).get_environ()
            bodies.append(app(environ, lambda *args: None))
            time.sleep(0.02)
        bodies[1].close()
        time.sleep(0.02)
        bodies[0].close()  # the rejection is recorded last
        reporter.write()
    finally:
        reporter.stop()
    page = Client(ops_app(str(tmp_path), debug_page=True)).get("/").get_data(as_text=True)
    assert page.index("<b>Second</b>") < page.index("<b>invalid_write_key</b>"), "newest arrival first"
    assert "received_at" not in page


def test_event_rejected_carries_the_arrival_time() -> None:
    import time

    from werkzeug.test import EnvironBuilder

    from pixel_middleware import event_rejected
    from pixel_middleware.core.events import format_epoch_ms

    app = PixelMiddleware(None, sink=MemorySink(), after_response=True, write_keys=["k"])
    heard = []
    receiver = lambda sender, **kw: heard.append(kw)  # noqa: E731
    event_rejected.connect(receiver, sender=app, weak=False)
    try:
        before = format_epoch_ms(int(time.time() * 1000))
        body = app(EnvironBuilder(path="/v1/pixel/track", query_string="wk=no&e=E&uid=u").get_environ(), lambda *a: None)
        body.close()
        after = format_epoch_ms(int(time.time() * 1000) + 1)
    finally:
        event_rejected.disconnect(receiver, sender=app)
    [payload] = heard
    assert payload["reason"] == "invalid_write_key" and before <= payload["received_at"] <= after


def test_debug_page_refreshes_only_its_rows_so_the_decode_box_keeps_what_is_typed(tmp_path: Any) -> None:
    """No meta refresh (it reloaded the whole page, wiping the box): the script replaces the rows from /rows."""
    app = PixelMiddleware(None, sink=MemorySink())
    reporter = StatusReporter(app.collector, str(tmp_path), interval=60, recent=10)
    reporter.start()
    try:
        client = Client(ops_app(str(tmp_path), debug_page=True, explain=lambda url: explain(url)))
        before = client.get("/").get_data(as_text=True)
        Client(app).get("/v1/pixel/track?wk=k&e=Later&uid=u")
        reporter.write()
        rows = client.get("/rows")
    finally:
        reporter.stop()
    assert 'http-equiv="refresh"' not in before
    assert before.index("<form") < before.index('<tbody id="rows">') and "<form" not in rows.get_data(as_text=True)
    script = re.search(r"<script>(.*?)</script>", before, re.S).group(1)
    assert 'fetch("/rows"' in script and 'getElementById("rows").innerHTML' in script and "2000" in script
    assert rows.status_code == 200 and rows.mimetype == "text/html" and "<b>Later</b>" in rows.get_data(as_text=True)
    assert "Later" not in before
    assert rows.headers["Content-Security-Policy"] and rows.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/rows", headers={"Host": "rebind.example"}).status_code == 403
    assert Client(ops_app(str(tmp_path))).get("/rows").status_code == 404  # opt-in, as the page


def test_debug_page_shows_the_fields_a_person_scans_for_then_the_json(tmp_path: Any) -> None:
    app = PixelMiddleware(None, sink=MemorySink(), write_keys=["k"])
    reporter = StatusReporter(app.collector, str(tmp_path), interval=60, recent=10)
    reporter.start()
    try:
        bot = {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
        Client(app).get("/pixel/v1/page?writeKey=k&anonymousId=a-<7>&name=Home", headers=bot)
        time.sleep(0.01)  # the page orders by arrival, to the millisecond: two in one would tie
        Client(app).get("/v1/pixel/track?wk=nope&e=E&uid=u")
        reporter.write()
    finally:
        reporter.stop()
    page = Client(ops_app(str(tmp_path), debug_page=True)).get("/").get_data(as_text=True)
    assert ("<th>time (UTC)</th><th>dialect</th><th>type</th><th>event or name</th><th>user</th><th>agent</th>"
            "<th>event</th>") in page
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r'<tr class="(?:event|rejected)">(.*?)</tr>', page)]
    rejected, event = cells  # newest first
    assert event[1:6] == ["rudderstack", "page", "<b>Home</b>", "a-&lt;7&gt;", '<span class="machine">bot (machine)</span>']
    assert event[6].startswith("<code>{") and "&quot;anonymousId&quot;: &quot;a-&lt;7&gt;&quot;" in event[6]
    assert rejected[1:6] == ["compact", "rejected", "<b>invalid_write_key</b>", "-", "-"]
    assert "nope" not in page
