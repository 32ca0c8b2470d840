"""PixelASGIMiddleware: the pixel routes in front of any ASGI app (FastAPI, Starlette, Django's ASGI handler).

Use it where the app is served by an ASGI server (uvicorn, granian's
``--interface asgi``, hypercorn): ``app.add_middleware(PixelASGIMiddleware,
sink=...)`` in FastAPI and Starlette, or around ``get_asgi_application()`` in
Django's ``asgi.py``. It is a plain ASGI 3 callable, not Starlette's
``BaseHTTPMiddleware``: no framework is needed, and nothing of the wrapped
app's requests (streaming bodies, websockets, background tasks) is changed.

It is a thin adapter over the same :class:`~pixel_middleware.Collector` as
:class:`~pixel_middleware.PixelMiddleware`: a pixel request's scope becomes
the WSGI environ the collector reads (PEP 3333's rules: the query string
as latin-1 text, the path as the UTF-8 bytes read as latin-1), and the
collector's own WSGI answer is sent as ASGI messages. So the GIF, the
headers, the click route's 302/400, the 405, the rejection reasons and the
signals are those of the WSGI middleware, byte for byte.

Not for: a WSGI app (use :class:`~pixel_middleware.PixelMiddleware`, which
costs less), or a server without the ASGI lifespan protocol (Daphne): there,
call :meth:`PixelASGIMiddleware.close` at shutdown yourself, or events the
sink still holds are lost.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Tuple

from .core.gif import GIF_HEADERS
from .pipeline.collector import Collector, Match

__all__ = ["PixelASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger("pixel_middleware")

#: Threads answering pixel requests off the loop when a step waits on the network (Redis dedup).
#: Each waits at most the step's own timeout (50 ms for Redis), so a few serve a busy worker.
THREADS = 8

_GIF_HEADERS = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in GIF_HEADERS]


class PixelASGIMiddleware:
    """Answer pixel routes with a transparent GIF and deliver their events, in front of an ASGI app.

    ::

        from fastapi import FastAPI
        from pixel_middleware import PixelASGIMiddleware

        app = FastAPI()
        app.add_middleware(PixelASGIMiddleware, sink="log:", write_keys=["my-write-key"])

    :param app: the ASGI app to wrap; ``None`` answers 404 off the pixel routes.
    :param options: the :class:`~pixel_middleware.Collector`'s, from the one
        options table (:mod:`pixel_middleware.options`), as
        :class:`~pixel_middleware.PixelMiddleware` takes them; the signals'
        ``sender`` is this middleware unless given.

    What the caller may rely on:

    - Every request that is not on a pixel route, and every scope that is not
      ``http`` (websockets, lifespan), reaches ``app`` with its own scope,
      ``receive`` and ``send``: FastAPI's JSON 404 stays FastAPI's.
    - Routes are matched on the path under ``root_path`` (a Starlette
      ``Mount``, uvicorn's ``--root-path``), as WSGI matches ``PATH_INFO``
      under ``SCRIPT_NAME``. Mounted at ``/t`` with ``prefix="/t"`` too,
      the routes answer at ``/t/v1/...``: the URLs the template helpers
      build from ``base_url`` and ``prefix``.
    - On ``lifespan.shutdown`` the collector is closed (the sink flushed or
      spooled, in a thread, so the loop keeps serving) before ``app`` hears
      of it. An app without a lifespan handler (Django, a bare function)
      still starts: the middleware answers the lifespan messages itself.
    - Nothing on the loop waits on the network. Decoding and the steps are
      CPU work of a few microseconds and a sink's ``emit`` is a queue put,
      so they run on the loop; with Redis dedup, whose call may wait up to
      its 50 ms timeout, each pixel GET is answered in a thread of this
      middleware's own (:data:`THREADS`), and other requests on the loop
      are not delayed by a slow or hung Redis. Signal receivers run where
      the pipeline runs: keep them quick.
    """

    def __init__(self, app: Optional[ASGIApp], **options: Any) -> None:
        self.app: ASGIApp = app if app is not None else _not_found
        self.collector = Collector(**{**options, "sender": options.get("sender") or self})
        self._match = self.collector.match
        self._respond = self.collector.respond
        # Only a Redis URL makes a step wait on the network; seconds are an in-memory window.
        self._executor: Optional[ThreadPoolExecutor] = None
        if isinstance(self.collector.settings["dedup"], str):
            self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="pixel-middleware")

    @property
    def sink(self) -> Any:
        return self.collector.sink

    @property
    def rejections(self) -> Any:
        """Rejected requests by reason since start (a :class:`collections.Counter`)."""
        return self.collector.rejections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if not path.isascii():  # PEP 3333: the path's UTF-8 bytes, read as latin-1, as WSGI matches them
                path, root = _wsgi_text(path), _wsgi_text(root)
            under = path
            if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
                under = path[len(root) :]  # else a server (or proxy) that took root_path off already
            match = self._match(under)
            if match is None and under is not path:  # a prefix that repeats the mount: the full path
                match = self._match(path)
                root, under = "", path
            if match is not None:
                await self._answer(scope, root, under, match, send)
                return
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, root: str, path: str, match: Match, send: Send) -> None:
        environ = _environ(scope, root, path)
        executor = self._executor
        if executor is None or environ["REQUEST_METHOD"] != "GET":
            status, headers, body, close = self._call(environ, match)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            if close is not None:
                close()  # after_response: the event once the GIF is on its way
            return
        loop = asyncio.get_running_loop()
        status, headers, body, close = await loop.run_in_executor(executor, self._call, environ, match)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if close is not None:
            await loop.run_in_executor(executor, close)

    def _call(self, environ: Dict[str, Any], match: Match) -> Tuple[int, List[Tuple[bytes, bytes]], bytes, Any]:
        """The collector's WSGI answer as ASGI wants it: the one answering path of every front door."""
        started: List[Any] = []

        def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> None:
            started.append(status)
            started.append(headers)

        result = self._respond(environ, match, start_response)
        body = b"".join(result)
        status, headers = started
        if headers == GIF_HEADERS:
            encoded = _GIF_HEADERS[:]  # a copy: an outer middleware may add to the list it is sent (CORS)
        else:
            encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        return int(status[:3]), encoded, body, getattr(result, "close", None)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Close the collector on shutdown; answer the protocol ourselves for an app that does not speak it."""
        started = answered = shut = False

        async def app_receive() -> Message:
            nonlocal started, shut
            message = await receive()
            if message["type"] == "lifespan.startup":
                started = True
            elif message["type"] == "lifespan.shutdown":
                shut = True
                await self._aclose()  # before the app hears of it, as the server has stopped taking requests
            return message

        async def app_send(message: Message) -> None:
            nonlocal answered
            if message["type"].startswith("lifespan.startup."):
                answered = True
            await send(message)

        if self.app is not _not_found:
            try:
                await self.app(scope, app_receive, app_send)
            except Exception as error:
                if answered:
                    raise  # the app speaks lifespan and failed in it: the server's to report
                # Django's handler raises on any scope but http; uvicorn would then skip
                # lifespan altogether, and the sink would never be closed.
                _log.debug("the wrapped app does not handle lifespan (%s); the pixel middleware answers it",
                           type(error).__name__)
            if shut:
                return
        # The app does not speak lifespan (or stopped before shutdown): the rest is ours to answer.
        if started and not answered:
            await send({"type": "lifespan.startup.complete"})
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close the sink, after the pixel requests still in threads: lifespan shutdown calls it."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.collector.close(timeout)


def _environ(scope: Scope, root: str, path: str) -> Dict[str, Any]:
    """The WSGI environ of an ASGI ``http`` scope, as PEP 3333 servers build it, for the collector."""
    server = scope.get("server") or ("localhost", 80)
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]) if server[1] is not None else "0",
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "wsgi.url_scheme": scope.get("scheme", "http"),
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue  # X_Forwarded_For would read as X-Forwarded-For: dropped, as gunicorn and nginx drop it
        value = raw_value.decode("latin-1")
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _wsgi_text(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """``app=None`` off the pixel routes: the WSGI middleware's 404; websockets are refused."""
    if scope["type"] == "http":
        body = b"Not Found\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})
