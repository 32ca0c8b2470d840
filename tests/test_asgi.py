"""PixelASGIMiddleware: the WSGI middleware's answers on ASGI, in process and under real uvicorn and granian.

In process, every request of the route matrix goes to both front doors (httpx's ASGITransport for
ASGI, werkzeug's Client for WSGI) and must get the same status, headers, body, event and rejection.
Then real servers on loopback ports serve FastAPI, Starlette and Django apps wrapped as users wrap
them (tests/asgi_apps/), and stop when their test ends.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import httpx
import pytest
from werkzeug.test import Client

from pixel_middleware import (
    MemorySink,
    PixelASGIMiddleware,
    PixelMiddleware,
    Sink,
    build_click_url,
    build_pixel_url,
    event_received,
)
from pixel_middleware.core.gif import GIF
from pixel_middleware.pipeline.steps.dedup import REDIS_TIMEOUT
from tests.asgi_apps import ALLOWED_HOST, SIGNING_KEY, WRITE_KEY
from tests.conftest import ENVIRON
from tests.helpers import Process, free_port, wait_until

CLIENT = (ENVIRON["REMOTE_ADDR"], 50123)
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"
OPTIONS: Dict[str, Any] = {"write_keys": ["k", WRITE_KEY], "signing_key": SIGNING_KEY,
                           "click_allowed_hosts": [ALLOWED_HOST]}
BASE = "http://testserver"
TRACK = "/v1/pixel/track?wk=k&e=Email+Opened&uid=u1&mid=m-1"


async def downstream(scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
    """The wrapped ASGI app: says which path reached it."""
    body = f"downstream {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def wsgi_downstream(environ: Dict[str, Any], start_response: Callable) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"downstream {environ['PATH_INFO']}".encode()]


def comparable(event: Dict[str, Any]) -> Dict[str, Any]:
    """An event less what differs between two requests by nature: arrival time, a generated id."""
    view = {k: v for k, v in event.items() if k not in ("receivedAt", "timestamp")}
    if not view.get("messageId", "").startswith("m-"):
        view.pop("messageId", None)
    if "anonymousId" in view and "userId" not in view and not event.get("anonymousId", "").startswith("a-"):
        view.pop("anonymousId")  # generated for an anonymous open
    return view


async def _requests(app: Any, requests: List[Tuple[str, str, Dict[str, str]]]) -> List[httpx.Response]:
    transport = httpx.ASGITransport(app=app, client=CLIENT)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        return [await client.request(method, url, headers=headers) for method, url, headers in requests]


def asgi_requests(app: Any, requests: List[Tuple[str, str, Dict[str, str]]]) -> List[httpx.Response]:
    return asyncio.run(_requests(app, requests))


async def call(app: Any, scope: Dict[str, Any], messages: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Call ``app`` with ``scope`` as a server would; the messages it sent."""
    sent: List[Dict[str, Any]] = []
    incoming = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> Dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_scope(path: str, query: bytes = b"", method: str = "GET", root_path: str = "",
               headers: Optional[List[Tuple[bytes, bytes]]] = None) -> Dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": root_path, "query_string": query,
            "headers": headers if headers is not None else [(b"host", b"testserver"), (b"user-agent", UA.encode())],
            "client": CLIENT, "server": ("testserver", 80)}


def _matrix() -> List[Any]:
    pixel_signed = build_pixel_url(BASE, "Email Opened", user_id="u2", write_key="k", signing_key=SIGNING_KEY,
                                   message_id="m-signed", properties={"campaign": "spring"})[len(BASE):]
    click_signed = build_click_url(BASE, "https://elsewhere.example/sale", user_id="u3", write_key="k",
                                   signing_key=SIGNING_KEY, message_id="m-click-signed")[len(BASE):]
    click_allowed = build_click_url(BASE, f"https://{ALLOWED_HOST}/x", user_id="u3", write_key="k",
                                    allowed_hosts=[ALLOWED_HOST], message_id="m-click-allowed")[len(BASE):]
    ua = {"User-Agent": UA}
    cases = [
        ("GET", TRACK, ua, "compact-track"),
        ("HEAD", TRACK, ua, "head-records-nothing"),
        ("POST", TRACK, ua, "post-405"),
        ("DELETE", TRACK, ua, "delete-405"),
        ("GET", "/pixel/v1/track?writeKey=k&userId=u1&event=Product+Viewed&messageId=m-rs"
                "&context.screen.width=1920&properties.revenue=29.99", ua, "rudderstack"),
        ("GET", "/v1/pixel/track?data=eyJ3cml0ZUtleSI6ICJrIiwgInVzZXJJZCI6ICJ1MSIsICJldmVudCI6ICJPcGVuZWQiLCAibWVzc2Fn"
                "ZUlkIjogIm0tc2VnIn0", ua, "segment-base64"),
        ("GET", "/v1/k/Pixel?dt=AppEvent&n=Viewed&mpid=u1&mid=m-mp", ua, "mparticle-key-in-path"),
        ("GET", "/v1/pixel/page?wk=k&uid=u1&n=Home&mid=m-page", {**ua, "Referer": "https://mail.example/"}, "page-referrer"),
        ("GET", "/v1/pixel/track?e=Opened&uid=u1", ua, "missing-write-key"),
        ("GET", "/v1/pixel/track?wk=stolen&e=Opened&uid=u1", ua, "invalid-write-key"),
        ("GET", "/v1/pixel/track?wk=k&uid=u1", ua, "missing-event"),
        ("GET", "/v1/pixel/track?wk=k&e=E&uid=u&p.x=%zz", ua, "bad-percent"),
        ("GET", "/v1/pixel/track?wk=k&e=E&uid=u&p.x=" + "a" * 33000, ua, "query-too-long"),
        ("GET", "/v1/pixel/track?wk=k&e=Opened&uid=u1&mid=m-gpc", {**ua, "Sec-GPC": "1"}, "gpc-anonymizes"),
        ("GET", "/v1/pixel/track?wk=k&e=Opened&uid=u1&mid=m-bot",
         {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, "machine"),
        ("GET", pixel_signed, ua, "signed"),
        ("GET", pixel_signed.replace("spring", "autumn"), ua, "signed-tampered"),
        ("GET", click_signed, ua, "click-signed-302"),
        ("GET", click_allowed, ua, "click-allowed-302"),
        ("HEAD", click_allowed, ua, "click-head-records-nothing"),
        ("GET", "/v1/click?wk=k&uid=u3&url=https%3A%2F%2Fevil.example%2F", ua, "click-unsafe-400"),
        ("HEAD", "/v1/click?wk=k&uid=u3&url=https%3A%2F%2Fevil.example%2F", ua, "click-unsafe-head-400"),
        ("POST", click_allowed, ua, "click-post-405"),
        ("GET", "/v1/click?wk=k&uid=u3&url=javascript%3Aalert(1)", ua, "click-javascript-400"),
    ]
    return [pytest.param(method, url, headers, id=name) for method, url, headers, name in cases]


@pytest.mark.parametrize("method, url, headers", _matrix())
def test_answers_as_the_wsgi_middleware_does(method: str, url: str, headers: Dict[str, str], signals: Any) -> None:
    wsgi_sink, asgi_sink = MemorySink(), MemorySink()
    wsgi = PixelMiddleware(wsgi_downstream, sink=wsgi_sink, **OPTIONS)
    asgi = PixelASGIMiddleware(downstream, sink=asgi_sink, **OPTIONS)
    expected = Client(wsgi).open(url, method=method, headers=headers, environ_base=ENVIRON)
    wsgi_signals = [(name, sender, kwargs.get("reason")) for name, sender, kwargs in signals.calls]
    signals.calls.clear()
    (answer,) = asgi_requests(asgi, [(method, url, headers)])
    asgi_signals = [(name, sender, kwargs.get("reason")) for name, sender, kwargs in signals.calls]

    assert answer.status_code == expected.status_code
    assert list(answer.headers.multi_items()) == [(k.lower(), v) for k, v in expected.headers.items()]
    assert answer.content == expected.data
    assert [comparable(e) for e in asgi_sink.events] == [comparable(e) for e in wsgi_sink.events]
    assert asgi.rejections == wsgi.rejections
    assert [(name, reason) for name, _, reason in asgi_signals] == [(name, reason) for name, _, reason in wsgi_signals]
    assert all(sender is asgi for _, sender, _ in asgi_signals)
    if method == "HEAD" or "405" in str(expected.status):
        assert asgi_sink.events == [] and not asgi.rejections


def test_the_matrix_sees_every_kind_of_answer() -> None:
    """The comparison above is only worth the answers it covers: GIFs, 405, 302, 400, events and rejections."""
    sink = MemorySink()
    asgi = PixelASGIMiddleware(downstream, sink=sink, **OPTIONS)
    answers = asgi_requests(asgi, [(p.values[0], p.values[1], p.values[2]) for p in _matrix()])
    assert {a.status_code for a in answers} == {200, 302, 400, 405}
    assert sum(a.content == GIF for a in answers) >= 10
    assert {"missing_write_key", "invalid_write_key", "missing_event", "invalid_encoding", "query_too_long",
            "bad_signature", "unsafe_redirect"} <= set(asgi.rejections)
    by_id = {e["messageId"]: e for e in sink.events}
    assert by_id["m-signed"]["context"]["pixel"]["signed"] is True
    assert by_id["m-gpc"]["context"]["ip"] != ENVIRON["REMOTE_ADDR"]  # Sec-GPC: anonymized
    assert by_id["m-bot"]["context"]["pixel"]["machine"] is True
    assert by_id["m-1"]["context"]["ip"] == ENVIRON["REMOTE_ADDR"] and by_id["m-1"]["context"]["userAgent"] == UA
    assert by_id["m-page"]["context"]["page"]["referrer"] == "https://mail.example/"
    assert [a.headers["location"] for a in answers if a.status_code == 302] == [
        "https://elsewhere.example/sale", f"https://{ALLOWED_HOST}/x", f"https://{ALLOWED_HOST}/x"]


@pytest.mark.parametrize("query, reason", [
    pytest.param(b"wk=k&e=\xff&uid=u", "invalid_encoding", id="raw-not-utf8"),
    pytest.param("wk=k&e=Ünïcødé&uid=u".encode(), None, id="raw-utf8"),
])
def test_raw_query_bytes_are_read_as_wsgi_reads_them(query: bytes, reason: Optional[str]) -> None:
    wsgi_sink, asgi_sink = MemorySink(), MemorySink()
    wsgi = PixelMiddleware(None, sink=wsgi_sink)
    asgi = PixelASGIMiddleware(None, sink=asgi_sink)
    Client(wsgi).get("/v1/pixel/track", environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    sent = asyncio.run(call(asgi, http_scope("/v1/pixel/track", query)))
    assert sent[1]["body"] == GIF
    assert asgi.rejections == wsgi.rejections == ({reason: 1} if reason else {})
    assert [e["event"] for e in asgi_sink.events] == [e["event"] for e in wsgi_sink.events]
    if reason is None:
        assert asgi_sink.events[0]["event"] == "Ünïcødé"


def test_a_non_ascii_path_reaches_the_dialect_as_wsgi_gives_it() -> None:
    """mParticle's key is in the path: PEP 3333 servers hand its UTF-8 bytes over as latin-1 text."""
    seen: Dict[str, List[str]] = {"wsgi": [], "asgi": []}

    class Keys(Sink):
        def __init__(self, door: str) -> None:
            self.door = door

        def emit(self, event: Any, **meta: Any) -> None:
            seen[self.door].append(meta["write_key"])

    Client(PixelMiddleware(None, sink=Keys("wsgi"))).get("/v1/cl%C3%A9/Pixel?dt=AppEvent&n=V&mpid=u1")
    asyncio.run(call(PixelASGIMiddleware(None, sink=Keys("asgi")), http_scope("/v1/clé/Pixel", b"dt=AppEvent&n=V&mpid=u1")))
    assert seen["asgi"] == seen["wsgi"] == ["clé"]


@pytest.mark.parametrize("scope", [
    pytest.param({"type": "http", "method": "GET", "path": "/v1/pixel/track", "query_string": b"wk=k&e=E&uid=u"},
                 id="least-scope-the-spec-allows"),
    pytest.param({**http_scope("/v1/pixel/track", b"wk=k&e=E&uid=u"), "client": None, "server": ("/tmp/s.sock", None)},
                 id="unix-socket"),
    pytest.param(http_scope("/v1/pixel/track", bytes(range(256)), headers=[(b"user-agent", bytes(range(256))),
                                                                           (b"referer", b"\xff\xfe")]),
                 id="every-byte-in-query-and-headers"),
    pytest.param(http_scope("/v1/pixel/track", b"wk=k&e=E&uid=u", headers=[(b"user_agent", b"forged"),
                                                                           (b"user-agent", b"real")]),
                 id="underscore-header-dropped"),
])
def test_odd_requests_get_the_gif_never_a_500(scope: Dict[str, Any]) -> None:
    sink = MemorySink()
    sent = asyncio.run(call(PixelASGIMiddleware(None, sink=sink), scope))
    assert sent[0]["status"] == 200 and sent[1]["body"] == GIF
    if any(name == b"user_agent" for name, _ in scope.get("headers", ())):
        (event,) = sink.events
        assert event["context"]["userAgent"] == "real"  # not "forged,real"


def test_other_paths_and_scopes_reach_the_app_untouched() -> None:
    seen: List[Tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 201, "headers": [(b"x-app", b"yes")]})
            await send({"type": "http.response.body", "body": b"hello"})

    sink = MemorySink()
    middleware = PixelASGIMiddleware(app, sink=sink)

    async def run() -> None:
        for scope in (http_scope("/v1/pixel/trackx", b"wk=k&e=E&uid=u", "POST"), http_scope("/account", b"x=1"),
                      {"type": "websocket", "path": "/v1/pixel/track", "query_string": b"wk=k&e=E&uid=u",
                       "headers": [], "root_path": ""}):
            async def receive() -> Dict[str, Any]:
                return {"type": "http.request", "body": b"payload"}

            async def send(message: Dict[str, Any]) -> None:
                pass

            await middleware(scope, receive, send)
            assert seen[-1] == (scope, receive, send)
            assert seen[-1][0] is scope and seen[-1][1] is receive and seen[-1][2] is send

    asyncio.run(run())
    assert len(seen) == 3 and sink.events == []


def test_without_an_app_other_paths_are_the_wsgi_middlewares_404() -> None:
    expected = Client(PixelMiddleware(None, sink=MemorySink())).get("/")
    (answer,) = asgi_requests(PixelASGIMiddleware(None, sink=MemorySink()), [("GET", "/", {})])
    assert answer.status_code == expected.status_code == 404
    assert answer.content == expected.data
    assert list(answer.headers.multi_items()) == [(k.lower(), v) for k, v in expected.headers.items()]
    sent = asyncio.run(call(PixelASGIMiddleware(None, sink=MemorySink()),
                            {"type": "websocket", "path": "/chat", "headers": []}, [{"type": "websocket.connect"}]))
    assert sent == [{"type": "websocket.close", "code": 1000}]


@pytest.mark.parametrize("path, root_path", [
    pytest.param("/t/v1/pixel/track", "/t", id="path-includes-root-path"),  # the ASGI spec; uvicorn --root-path
    pytest.param("/v1/pixel/track", "/t", id="root-path-stripped-by-a-proxy"),
])
def test_routes_are_matched_under_root_path(path: str, root_path: str) -> None:
    sink = MemorySink()
    middleware = PixelASGIMiddleware(downstream, sink=sink, signing_key=SIGNING_KEY, require_signature=True)
    query = build_pixel_url(BASE, "Opened", user_id="u1", write_key="k", signing_key=SIGNING_KEY).split("?", 1)[1]
    sent = asyncio.run(call(middleware, http_scope(path, query.encode(), root_path=root_path)))
    assert sent[1]["body"] == GIF and [e["event"] for e in sink.events] == ["Opened"], middleware.rejections
    assert sink.events[0]["context"]["pixel"]["signed"] is True  # the signature covers the path under the mount
    sent = asyncio.run(call(middleware, http_scope("/t/hello", root_path="/t")))
    assert sent[1]["body"] == b"downstream /t/hello"


@pytest.mark.parametrize("prefix", ["", "/t"], ids=["mounted", "mounted-with-the-same-prefix"])
def test_starlette_mount(prefix: str) -> None:
    """``Mount("/t", PixelASGIMiddleware(None, ...))`` answers at /t/...: with prefix="" and with prefix="/t"."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    sink = MemorySink()
    pixels = PixelASGIMiddleware(None, sink=sink, prefix=prefix, signing_key=SIGNING_KEY, require_signature=True)
    app = Starlette(routes=[Mount("/t", app=pixels)])
    # The template helpers build base_url + prefix: with the prefix, base_url is the site's root.
    base = BASE + "/t" if not prefix else BASE
    from pixel_middleware.templates import TemplateHelpers
    from pixel_middleware.options import resolve

    helpers = TemplateHelpers(resolve({"base_url": base, "write_key": "k", "signing_key": SIGNING_KEY,
                                       "prefix": prefix}, ("urls", "pipeline")))
    url = helpers.pixel_url("Opened", "u1")
    assert url.startswith(BASE + "/t/v1/pixel/track?")
    click = helpers.click_url("https://elsewhere.example/", "u1")
    pixel, clicked, outside = asgi_requests(app, [("GET", url[len(BASE):], {}), ("GET", click[len(BASE):], {}),
                                                  ("GET", "/v1/pixel/track?wk=k&e=Opened&uid=u1", {})])
    assert pixel.content == GIF and clicked.status_code == 302
    assert [e["event"] for e in sink.events] == ["Opened", "Email Link Clicked"], pixels.rejections
    assert all(e["context"]["pixel"]["signed"] for e in sink.events)
    assert outside.status_code == 404 and outside.content == b"Not Found"  # Starlette's own 404


def test_signals_sender_is_the_middleware_or_the_given_one(signals: Any) -> None:
    own = PixelASGIMiddleware(None, sink=MemorySink())
    given = object()
    other = PixelASGIMiddleware(None, sink=MemorySink(), sender=given)
    asgi_requests(own, [("GET", TRACK, {}), ("GET", "/v1/pixel/track?wk=k&uid=u", {})])
    asgi_requests(other, [("GET", TRACK, {})])
    assert [(name, sender) for name, sender, _ in signals.calls] == [("received", own), ("rejected", own),
                                                                     ("received", given)]
    heard = []
    with event_received.connected_to(lambda sender, **kw: heard.append(sender), sender=own):
        asgi_requests(own, [("GET", TRACK, {})])
        asgi_requests(other, [("GET", TRACK, {})])
    assert heard == [own]


def test_after_response_records_once_the_gif_is_sent() -> None:
    sink = MemorySink()
    middleware = PixelASGIMiddleware(None, sink=sink, after_response=True)
    recorded_when_sent: List[int] = []

    async def run() -> None:
        async def receive() -> Dict[str, Any]:
            return {"type": "http.request"}

        async def send(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                recorded_when_sent.append(len(sink.events))

        await middleware(http_scope("/v1/pixel/track", b"wk=k&e=Opened&uid=u1"), receive, send)

    asyncio.run(run())
    assert recorded_when_sent == [0] and [e["userId"] for e in sink.events] == ["u1"]


class Closing(MemorySink):
    """A sink that says when it was closed, and whether the app's own shutdown had run by then."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: List[str] = []

    def close(self, timeout: Optional[float] = None) -> None:
        self.closed.append("closed")


async def lifespan(app: Any) -> List[str]:
    """Run ``app``'s lifespan as a server does: startup, then shutdown; the messages it answered."""
    incoming: asyncio.Queue = asyncio.Queue()
    answered: List[str] = []

    async def send(message: Dict[str, Any]) -> None:
        answered.append(message["type"])

    await incoming.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, incoming.get, send))
    await asyncio.wait_for(_until(lambda: answered), 5)
    await incoming.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 5)
    return answered


async def _until(condition: Callable[[], Any]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_lifespan_shutdown_closes_the_collector_before_the_app_hears_of_it() -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    sink = Closing()
    order: List[str] = []

    @asynccontextmanager
    async def app_lifespan(app: Any) -> Any:
        order.append("app started")
        yield
        order.append(f"app shut down, sink {'closed' if sink.closed else 'open'}")

    app = Starlette(lifespan=app_lifespan, middleware=[Middleware(PixelASGIMiddleware, sink=sink)])
    answered = asyncio.run(lifespan(app))
    assert answered == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert order == ["app started", "app shut down, sink closed"] and sink.closed == ["closed"]


async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
    """An app that speaks only http, as Django's ASGI handler does."""
    if scope["type"] != "http":
        raise ValueError(f"only http, not {scope['type']}")


async def returns_at_once(scope: Any, receive: Any, send: Any) -> None:
    return None


async def takes_startup_then_raises(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    raise RuntimeError("no lifespan here")


@pytest.mark.parametrize("app", [None, no_lifespan, returns_at_once, takes_startup_then_raises],
                         ids=["no-app", "app-raises", "app-returns", "app-takes-startup-then-raises"])
def test_lifespan_without_the_apps_help(app: Any) -> None:
    sink = Closing()
    answered = asyncio.run(lifespan(PixelASGIMiddleware(app, sink=sink)))
    assert answered == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert sink.closed == ["closed"]


def test_a_failing_app_startup_is_the_servers_to_report() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database down"})
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        asyncio.run(lifespan(PixelASGIMiddleware(failing, sink=MemorySink())))


def test_a_hung_redis_never_delays_another_request_on_the_loop(redis_server: Any) -> None:
    """Redis stopped (SIGSTOP): the pixel waits out the 50 ms timeout in a thread; the loop serves on."""
    sink = MemorySink()
    middleware = PixelASGIMiddleware(downstream, sink=sink, dedup=redis_server.url)
    timings: Dict[str, Any] = {}

    async def run() -> None:
        transport = httpx.ASGITransport(app=middleware, client=CLIENT)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            first = await client.get(TRACK)  # Redis answers: connected, and the message seen
            again = await client.get(TRACK)
            assert first.content == again.content == GIF and middleware.rejections == {"duplicate": 1}
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                loop = asyncio.get_running_loop()
                begin = loop.time()
                pixel = asyncio.ensure_future(client.get(TRACK.replace("m-1", "m-2")))
                await asyncio.sleep(0.005)  # the pixel is in its Redis call now
                other = await client.get("/account")
                timings["other"] = loop.time() - begin
                timings["pixel_done_before_other"] = pixel.done()
                answer = await pixel
                timings["pixel"] = loop.time() - begin
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            assert other.content == b"downstream /account" and answer.content == GIF

    asyncio.run(run())
    middleware.close()
    assert timings["pixel"] >= REDIS_TIMEOUT * 0.9, timings  # Redis really hung: the pixel waited out its timeout
    assert not timings["pixel_done_before_other"], timings
    assert timings["other"] < REDIS_TIMEOUT, timings
    assert middleware.rejections == {"duplicate": 1, "dedup_unavailable": 1}
    assert [e["messageId"] for e in sink.events] == ["m-1", "m-2"]  # the outage let the event pass


# -- real servers -----------------------------------------------------------------------------------

APPS = {
    "fastapi": "tests.asgi_apps.fastapi_app:app",
    "starlette": "tests.asgi_apps.starlette_app:app",
    "django": "tests.asgi_apps.django_app:application",
}
SERVERS = {
    "uvicorn": lambda port, app, *extra: ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                                          "--no-access-log", *extra, app],
    "granian": lambda port, app, *extra: ["-m", "granian", "--interface", "asgi", "--workers", "1",
                                          "--host", "127.0.0.1", "--port", str(port), *extra, app],
}
#: Each framework's own answer for a path nobody routes: still the framework's, not ours.
NOT_FOUND = {
    "fastapi": lambda body, headers: json.loads(body) == {"detail": "Not Found"},
    "starlette": lambda body, headers: body == b"Not Found",
    "django": lambda body, headers: b"<h1>Not Found</h1>" in body and headers["Content-Type"].startswith("text/html"),
}


def fetch(port: int, path: str, method: str = "GET") -> Tuple[int, Any, bytes]:
    """One request, redirects not followed; status, headers, body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"User-Agent": UA, "Host": "localhost"})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def recorded(events: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []


@pytest.fixture
def serve(start: Callable[..., Process], tmp_path: Path) -> Callable[..., Tuple[Process, Path]]:
    """Start ``server`` with ``app`` on a free port (stopped after the test); the process and its events file."""

    def run(server: str, app: str, *extra: str, batch: int = 1) -> Tuple[Process, Path]:
        port = free_port()
        events = tmp_path / f"{server}-events.jsonl"
        process = start(SERVERS[server](port, APPS.get(app, app), *extra), port,
                        {"PIXEL_TEST_EVENTS": str(events), "PIXEL_TEST_BATCH": str(batch)})
        return process, events

    return run


@pytest.mark.parametrize("app", list(APPS))
@pytest.mark.parametrize("server", list(SERVERS))
def test_real_server(serve: Callable[..., Tuple[Process, Path]], server: str, app: str) -> None:
    process, events = serve(server, app)
    port = process.port
    base = "http://localhost"
    pixel = build_pixel_url(base, "Email Opened", user_id="u1", write_key=WRITE_KEY, signing_key=SIGNING_KEY,
                            message_id="m-open", properties={"campaign": "spring"})[len(base):]
    status, headers, body = fetch(port, pixel)
    assert (status, body, headers["Content-Type"], headers["Cache-Control"]) == (
        200, GIF, "image/gif", "no-store, no-cache, must-revalidate")
    status, headers, body = fetch(port, pixel.replace("m-open", "m-head"), "HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "43"
    assert fetch(port, pixel.replace("m-open", "m-post"), "POST")[:2][0] == 405
    assert fetch(port, pixel.replace("spring", "autumn").replace("m-open", "m-forged"))[2] == GIF
    click = build_click_url(base, "https://elsewhere.example/sale", user_id="u1", write_key=WRITE_KEY,
                            signing_key=SIGNING_KEY, message_id="m-click")[len(base):]
    status, headers, _ = fetch(port, click)
    assert status == 302 and headers["Location"] == "https://elsewhere.example/sale"
    status, _, body = fetch(port, f"/v1/click?wk={WRITE_KEY}&uid=u1&url=https%3A%2F%2Fevil.example%2F")
    assert status == 400 and b"evil" not in body
    # The framework's own pages: its route, and its own 404 for a path nobody routes.
    status, _, body = fetch(port, "/hello")
    assert status == 200 and json.loads(body) == {"framework": app}
    status, headers, body = fetch(port, "/v1/pixel/trackers")
    assert status == 404 and NOT_FOUND[app](body, headers), body
    wait_until(lambda: len(recorded(events)) >= 2, 10)
    by_id = {e["messageId"]: e for e in recorded(events)}
    assert sorted(by_id) == ["m-click", "m-open"], process.output()
    assert by_id["m-open"]["context"]["pixel"]["signed"] is True and by_id["m-open"]["context"]["ip"] == "127.0.0.1"
    assert by_id["m-open"]["context"]["userAgent"] == UA
    assert by_id["m-click"]["properties"]["link_url"] == "https://elsewhere.example/sale"
    assert WRITE_KEY not in process.output() and SIGNING_KEY not in process.output()


def test_uvicorn_root_path(serve: Callable[..., Tuple[Process, Path]]) -> None:
    """Behind a proxy that strips /t, uvicorn --root-path /t: the routes and the app's pages answer under it."""
    process, events = serve("uvicorn", "fastapi", "--root-path", "/t")
    pixel = build_pixel_url("http://localhost", "Opened", user_id="u1", write_key=WRITE_KEY,
                            signing_key=SIGNING_KEY, message_id="m-root")[len("http://localhost"):]
    assert fetch(process.port, pixel)[2] == GIF
    assert json.loads(fetch(process.port, "/hello")[2]) == {"framework": "fastapi"}
    assert wait_until(lambda: [e["messageId"] for e in recorded(events)], 10) == ["m-root"]
    assert recorded(events)[0]["context"]["pixel"]["signed"] is True


@pytest.mark.parametrize("server", list(SERVERS))
def test_sigterm_flushes_the_sink(serve: Callable[..., Tuple[Process, Path]], server: str) -> None:
    """Lines the sink still holds when the server is stopped are written by the lifespan shutdown."""
    process, events = serve(server, "django" if server == "granian" else "fastapi", batch=10_000)
    answered: List[str] = []

    def fire() -> None:
        mid = f"{server}-{len(answered)}"
        status, _, body = fetch(process.port, f"/v1/pixel/track?wk={WRITE_KEY}&e=Opened&uid=u&mid={mid}")
        assert status == 200 and body == GIF
        answered.append(mid)

    for _ in range(40):
        fire()
    # The test apps' sink holds 10,000 lines for an hour: all 40 are still held.
    assert recorded(events) == []
    process.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises SIGTERM once it has shut down cleanly ("Application shutdown complete").
    assert process.proc.wait(timeout=20) in (0, -signal.SIGTERM), process.output()
    assert sorted(e["messageId"] for e in recorded(events)) == sorted(answered), process.output()
