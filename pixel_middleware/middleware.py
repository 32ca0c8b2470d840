"""PixelMiddleware: tracking-pixel endpoints in front of any WSGI app.

Use it when an existing app (Flask, Django, anything WSGI) should answer
RudderStack, Segment, mParticle or compact pixel URLs on its own host. Every
other path goes to the wrapped app untouched; the pixel routes cost the rest
of the app one dict lookup and a suffix check per request.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Collection, Iterable, Optional, Union

from .collector import Collector, WriteKeys
from .signing import Key
from .dialects import DialectSpec
from .sinks import SinkSpec


class PixelMiddleware:
    """Answer pixel routes with a transparent GIF and deliver their events.

    ::

        from pixel_middleware import PixelMiddleware, LogSink
        app.wsgi_app = PixelMiddleware(app.wsgi_app, sink=LogSink())

    :param app: the WSGI app to wrap; ``None`` answers 404 off the pixel routes.
    :param sink: a sink, a sink URL or a list of either (fanned out).
        Default: :class:`~pixel_middleware.LogSink`.
    :param dialects: which dialects to answer (names or objects); default all.
    :param write_keys: accepted write keys (a collection, or a callable
        taking a key and returning whether it is accepted); ``None`` accepts
        any key, though a request must still carry one.
    :param prefix: mount the vendor routes under this path.
    :param sender: the sender of the signals (default: this middleware).
    :param signing_key: verify signed URLs (``sig``) with this key;
        ``signing_key_fallbacks`` are older keys still accepted,
        ``require_signature`` rejects unsigned URLs, ``signature_max_age``
        (seconds) rejects old ones.
    :param click_allowed_hosts: hosts ``/v1/click`` redirects to without a
        valid signature (``*.example.com`` for subdomains).
    :param machine_events: ``"keep"`` (default) records machine fetches
        flagged ``context.pixel.machine``; ``"drop"`` rejects them.
    :param dedup: ``None`` (default), seconds, or a ``redis://`` URL: one
        event per message within the window.
    :param ip: ``"full"`` (default), ``"anonymize"`` or ``"drop"``.
    :param privacy_signals: ``"anonymize"`` (default), ``"drop"`` or
        ``"ignore"`` a request with ``Sec-GPC: 1``.
    :param dnt: treat ``DNT: 1`` like ``Sec-GPC: 1`` (default ``False``).
    :param metrics: count events, rejections and sink health for Prometheus
        (the ``metrics`` extra); serve them with :func:`~pixel_middleware.metrics_app`.
    :param after_response: record each pixel's event when the server closes
        the response, after the GIF is written, rather than before answering
        (see :class:`~pixel_middleware.Collector`; ``serve`` does this).

    GET records the event; HEAD gets the same headers and records nothing
    (link checkers and prefetchers use it); other methods get 405. Every
    GET gets the GIF, whether or not its event was accepted.
    """

    def __init__(
        self,
        app: Optional[Callable[..., Iterable[bytes]]],
        *,
        sink: SinkSpec = None,
        dialects: Optional[Iterable[DialectSpec]] = None,
        write_keys: WriteKeys = None,
        prefix: str = "",
        sender: Any = None,
        signing_key: Optional[Key] = None,
        signing_key_fallbacks: Union[Key, Iterable[Key]] = (),
        require_signature: bool = False,
        signature_max_age: Union[float, timedelta, None] = None,
        click_allowed_hosts: Optional[Collection[str]] = None,
        machine_events: str = "keep",
        dedup: Union[None, float, str] = None,
        ip: str = "full",
        privacy_signals: str = "anonymize",
        dnt: bool = False,
        metrics: bool = False,
        after_response: bool = False,
    ) -> None:
        self.app = app if app is not None else _not_found
        self.collector = Collector(
            sink=sink,
            dialects=dialects,
            write_keys=write_keys,
            prefix=prefix,
            sender=sender or self,
            signing_key=signing_key,
            signing_key_fallbacks=signing_key_fallbacks,
            require_signature=require_signature,
            signature_max_age=signature_max_age,
            click_allowed_hosts=click_allowed_hosts,
            machine_events=machine_events,
            dedup=dedup,
            ip=ip,
            privacy_signals=privacy_signals,
            dnt=dnt,
            metrics=metrics,
            after_response=after_response,
        )
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
