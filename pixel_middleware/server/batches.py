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

import threading
import time
from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple

from ..core.events import now
from ..core.gif import GIF, GIF_HEADERS
from ..middleware import PixelMiddleware

#: Requests recorded together.
SIZE = 16
#: Longest a request waits, in seconds, for its batch to fill before it is recorded anyway.
LINGER = 0.005

_Held = Tuple[Mapping[str, Any], Any, str]


class Batches:
    """The WSGI app of a ``serve`` worker: ``middleware``'s answers, its pixels' events recorded in batches."""

    def __init__(self, middleware: PixelMiddleware, size: int = SIZE, linger: float = LINGER) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        if not linger > 0:
            raise ValueError(f"linger must be above 0 seconds, not {linger}")
        self.middleware = middleware
        self.size = size
        self.linger = linger
        self._match = middleware.collector.match
        self._collect = middleware.collector.collect
        self._held: List[_Held] = []
        self._held_since = 0.0
        self._lock = threading.Lock()
        self._holding = threading.Event()  # set when a first request is held: the timer thread's cue
        self._stopping = threading.Event()
        self._timer: Optional[threading.Thread] = None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = self._match(environ.get("PATH_INFO", ""))
        if match is None or match.route.click or environ.get("REQUEST_METHOD", "GET") != "GET":
            return self.middleware(environ, start_response)
        held = (environ, match, now())
        with self._lock:
            batch = self._held
            batch.append(held)
            if len(batch) < self.size:
                if len(batch) == 1:
                    self._held_since = time.monotonic()
                    if self._timer is None:  # started here, in the worker that records
                        self._timer = threading.Thread(target=self._record_lingering, daemon=True,
                                                       name="pixel-batches")
                        self._timer.start()
                    self._holding.set()
                batch = None
            else:
                self._held = []
        if batch is not None:
            self._record(batch)
        start_response("200 OK", GIF_HEADERS[:])
        return [GIF]

    def _record(self, batch: List[_Held]) -> None:
        collect = self._collect
        for environ, match, received_at in batch:
            collect(environ, match, received_at)  # never raises: a rejection is counted and logged

    def _take(self, older_than: float) -> List[_Held]:
        """The held requests if the first was held at or before ``older_than`` (``time.monotonic()``)."""
        with self._lock:
            if not self._held or self._held_since > older_than:
                return []
            batch, self._held = self._held, []
        return batch

    def _record_lingering(self) -> None:
        """The timer thread: record a batch that has waited :attr:`linger` without filling."""
        while True:
            self._holding.wait()
            self._holding.clear()  # before the wait: a batch begun from here on sets the cue again
            while True:
                if self._stopping.is_set():
                    return  # close() records what is held
                with self._lock:
                    due = self._held_since + self.linger if self._held else None
                if due is None:
                    break
                if self._stopping.wait(max(0.0, due - time.monotonic())):
                    return  # close() records what is held
                self._record(self._take(time.monotonic() - self.linger))

    def flush(self) -> None:
        """Record what is held now."""
        self._record(self._take(float("inf")))

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the timer thread and record what is held (the collector's sink is closed after, by the caller)."""
        self._stopping.set()
        self._holding.set()
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout)
        self.flush()
