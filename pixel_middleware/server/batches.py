"""A ``serve`` worker answers a pixel first and records its event in a batch, with the next ones.

Why: the pipeline costs about 20 µs a request in a loop but 45 to 55 µs
inside a busy granian worker, where granian's and the kernel's work between
two requests leaves the CPU caches cold for it; run back to back, the same
calls cost what they cost in a loop (measured in ``benchmarks/bench_http.py``
and its notes in the README). So a pixel's GIF is answered at once, and its
request is held; every :data:`SIZE` held requests are recorded together, by
the request thread that filled the batch, through the collector's one
:meth:`~pixel_middleware.pipeline.collector.Collector.collect`, each with
the time it arrived as ``receivedAt``.

A request is held at most :data:`LINGER` seconds: a thread of the worker's
own records what is held by then when no request follows. :meth:`close`
records whatever is held, before the collector's sink is closed, so a stop
loses nothing that was answered. Only GET on a pixel route is held; a
click's answer depends on its verdict, and HEAD, other methods and other
paths are answered as the middleware answers them.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple

from ..core.events import now
from ..core.gif import GIF, GIF_HEADERS
from ..core.holding import Holder
from ..middleware import PixelMiddleware

#: Requests recorded together.
SIZE = 16
#: Longest a request waits, in seconds, for its batch to fill before it is recorded anyway.
LINGER = 0.005

_Held = Tuple[Mapping[str, Any], Any, str]


class Batches:
    """The WSGI app of a ``serve`` worker: ``middleware``'s answers, its pixels' events recorded in batches."""

    def __init__(self, middleware: PixelMiddleware, size: int = SIZE, linger: float = LINGER) -> None:
        self.middleware = middleware
        self._match = middleware.collector.match
        self._collect = middleware.collector.collect
        self._holder: Holder[_Held] = Holder(self._record, size, linger, name="pixel-batches")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = self._match(environ.get("PATH_INFO", ""))
        if match is None or match.route.click or environ.get("REQUEST_METHOD", "GET") != "GET":
            return self.middleware(environ, start_response)
        self._holder.add((environ, match, now()))
        start_response("200 OK", GIF_HEADERS[:])
        return [GIF]

    def _record(self, batch: List[_Held]) -> None:
        collect = self._collect
        for environ, match, received_at in batch:
            collect(environ, match, received_at)  # never raises: a rejection is counted and logged

    def flush(self) -> None:
        """Record what is held now."""
        self._holder.flush()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the timer thread and record what is held (the collector's sink is closed after, by the caller)."""
        self._holder.close(timeout)
