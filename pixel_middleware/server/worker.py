"""What one ``serve`` worker process runs: its own collector, built in the worker, and its close at stop.

Each worker builds its collector after the fork, since sinks hold threads
and sockets that a fork does not carry over. granian's worker processes
leave without running :mod:`atexit` handlers, so the close is registered
with :class:`multiprocessing.util.Finalize`, which the worker's own process
bootstrap runs once the server in it has stopped: events in memory are
delivered, or spooled for the next start, never dropped.
"""
from __future__ import annotations

import multiprocessing.util
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, List, Optional

from ..middleware import PixelMiddleware
from ..sinks.file import FileSink
from .batches import Batches
from .config import SERVE_OPTIONS, masked

#: Exit status of a worker whose collector could not be built: the supervisor stops with it, no respawn loop.
BOOT_ERROR = 3
#: Lines a worker's file sink holds for one ``write`` (each at most the sink's linger, 5 ms).
HELD_LINES = 16


def collector_options(settings: Dict[str, Any]) -> Dict[str, Any]:
    """The collector's options among serve's settings: every pipeline option that has a flag."""
    return {o.name: settings[o.name] for o in SERVE_OPTIONS if o.scope == "pipeline"}


class WorkerApp:
    """One worker's collector and the WSGI app in front of it (werkzeug's ProxyFix with ``--proxies``).

    Pixels are answered first and their events recorded in batches
    (:mod:`pixel_middleware.server.batches`): granian writes a list body at
    once, while an iterable whose ``close()`` records the event
    (``after_response``) costs it more than recording inline, and recording
    16 events back to back costs less than recording each between two of
    granian's requests (measured in ``benchmarks/bench_http.py``'s notes).
    File sinks hold up to :data:`HELD_LINES` lines for one ``write``, a
    system call less for most events (see :mod:`pixel_middleware.sinks.file`).
    """

    def __init__(self, settings: Dict[str, Any]) -> None:
        self.middleware = PixelMiddleware(None, **collector_options(settings))
        for sink in _file_sinks(self.middleware.sink):
            sink.batch = max(sink.batch, HELD_LINES)
        self.batches = Batches(self.middleware)
        self.public: Callable = self.batches
        if settings.get("proxies"):
            from werkzeug.middleware.proxy_fix import ProxyFix

            n = settings["proxies"]
            self.public = ProxyFix(self.batches, x_for=n, x_proto=n, x_host=n)
        self.reporter: Any = None
        if settings.get("ops_port"):
            from .ops import StatusReporter

            self.reporter = StatusReporter(self.middleware.collector, os.path.join(settings["state_dir"], "status"),
                                           recent=100 if settings.get("debug_page") else 0)

    def start(self) -> None:
        """Start what runs beside the requests in this process (after the fork)."""
        if self.reporter is not None:
            self.reporter.start()

    def close(self, timeout: Optional[float] = None) -> None:
        """Record the held pixels, stop the status reporter, then deliver or spool what the collector holds."""
        self.batches.close(timeout)
        if self.reporter is not None:
            self.reporter.stop()
        self.middleware.close(timeout)


def _file_sinks(sink: Any) -> List[FileSink]:
    """The file sinks in ``sink``, a fan-out's included."""
    if isinstance(sink, FileSink):
        return [sink]
    return [found for inner in getattr(sink, "sinks", ()) for found in _file_sinks(inner)]


def loader(settings: Dict[str, Any], boot_failed: Any) -> Callable[[], Callable]:
    """The function granian calls in each new worker for its WSGI app.

    A collector that cannot be built (a bad sink URL) prints one masked line,
    sets ``boot_failed`` for the supervisor and ends the worker with
    :data:`BOOT_ERROR`: sink errors quote their URL, credentials and all.
    """

    def load() -> Callable:
        try:
            app = WorkerApp(settings)
        except Exception as error:
            print(f"pixel-middleware serve: cannot start: {type(error).__name__}: {masked(str(error), settings)}",
                  file=sys.stderr, flush=True)
            boot_failed.set()
            os._exit(BOOT_ERROR)
        app.start()
        wake_main_thread_on_stop()
        # Registered in multiprocessing's own table, which keeps it until the process bootstrap runs it.
        multiprocessing.util.Finalize(None, app.close, args=(settings["shutdown_timeout"],), exitpriority=100)
        return app.public

    return load


def wake_main_thread_on_stop() -> None:
    """Make a stop signal reach this process's main thread, whichever thread the kernel gave it to.

    Called in each worker, and in serve's main process before granian starts.
    granian's worker runs its Python stop handler in the main thread, which
    sleeps on a lock without a timeout and wakes only for a signal delivered
    to it. When two arrive together (Ctrl-C's SIGINT to the whole process
    group, then granian's SIGTERM to each worker; or systemd's SIGTERM to the
    group, then granian's), Linux hands the second to another thread, the
    main thread sleeps on, and the worker answers pixels until it is killed,
    its events with it (seen in 1 stop in 3 here). CPython writes every
    signal's number to the wakeup fd from whichever thread ran it; a thread
    reading that fd signals the main thread directly, with a signal whose
    handler does nothing, so that it wakes and runs the real one.
    """
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.signal(signal.SIGURG, lambda signum, frame: None)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    main = threading.main_thread().ident
    stops = {signal.SIGINT, signal.SIGTERM}

    def relay() -> None:
        while True:
            if stops.intersection(os.read(read, 64)):
                signal.pthread_kill(main, signal.SIGURG)

    threading.Thread(target=relay, daemon=True, name="pixel-stop-relay").start()
