"""PixelMiddleware: tracking-pixel endpoints in front of any WSGI app.

Use it when an existing app (Flask, Django, anything WSGI) should answer
RudderStack, Segment, mParticle or compact pixel URLs on its own host. Every
other path goes to the wrapped app untouched; the pixel routes cost the rest
of the app one dict lookup and a suffix check per request.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from .pipeline.collector import Collector


class PixelMiddleware:
    """Answer pixel routes with a transparent GIF and deliver their events.

    ::

        from pixel_middleware import PixelMiddleware, LogSink
        app.wsgi_app = PixelMiddleware(app.wsgi_app, sink=LogSink())

    :param app: the WSGI app to wrap; ``None`` answers 404 off the pixel routes.
    :param options: the :class:`~pixel_middleware.Collector`'s, from the one
        options table (:mod:`pixel_middleware.options`); the signals'
        ``sender`` is this middleware unless given.

    GET records the event; HEAD gets the same headers and records nothing
    (link checkers and prefetchers use it); other methods get 405. Every
    GET gets the GIF, whether or not its event was accepted.
    """

    def __init__(self, app: Optional[Callable[..., Iterable[bytes]]], **options: Any) -> None:
        self.app = app if app is not None else _not_found
        self.collector = Collector(**{**options, "sender": options.get("sender") or self})
        self._match = self.collector.match
        self._respond = self.collector.respond

    @property
    def sink(self) -> Any:
        return self.collector.sink

    @property
    def rejections(self) -> Any:
        """Rejected requests by reason since start (a :class:`collections.Counter`)."""
        return self.collector.rejections

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = self._match(environ.get("PATH_INFO", ""))
        if match is None:
            return self.app(environ, start_response)
        return self._respond(environ, match, start_response)

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close the sink: call it at shutdown so no event is left behind."""
        self.collector.close(timeout)


def _not_found(environ: dict, start_response: Callable) -> Iterable[bytes]:
    body = b"Not Found\n"
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
