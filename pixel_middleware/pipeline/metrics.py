"""Prometheus metrics for a collector, correct across gunicorn workers (the ``metrics`` extra).

Turn them on with ``PixelMiddleware(app, metrics=True)`` (``PIXEL_METRICS``
in Flask; ``serve`` has them on) and mount :func:`metrics_app` where your
scraper looks, or use ``serve --ops-port``, which answers ``/metrics``.

=========================================  ===================================================
``pixel_events_total{dialect,type}``        events accepted and handed to the sink
``pixel_rejections_total{reason}``          requests refused, by reason (``invalid_write_key``,
                                            ``bad_signature``, ``machine``, ``duplicate``...),
                                            plus ``sink_error`` (events a sink would not take)
                                            and ``dedup_unavailable`` (Redis outages; events
                                            passed)
``pixel_sink_delivered_total{sink}``        events the destination confirmed
``pixel_sink_failed_batches_total{sink}``   delivery attempts that failed (then spooled)
``pixel_sink_dead_lettered_total{sink}``    events the destination refused for good
``pixel_sink_queue_depth{sink}``            events waiting in memory, summed over workers
``pixel_sink_spool_bytes{sink}``            bytes spooled on disk for later delivery
``pixel_sink_oldest_spooled_seconds{sink}``  age of the oldest spooled event
=========================================  ===================================================

What to alert on: ``pixel_sink_oldest_spooled_seconds`` growing (a
destination has been down that long; the spool's disk cap is next),
``pixel_sink_dead_lettered_total`` increasing at all (events the
destination refuses: read the dead-letter file), a reason of
``pixel_rejections_total`` rising against ``pixel_events_total`` (a
broken template, a rotated key, an attack), and ``/readyz`` answering 503.
Sink labels are names without credentials (:attr:`Sink.name`).

Across processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (``serve`` sets a
fresh one per start) prometheus_client's multiprocess mode adds up what
every worker wrote; call :func:`mark_process_dead` from the server's hook
for a worker that ended (gunicorn's ``child_exit``). Queue depth is summed
over live workers; spool size and age take the largest figure of a live
worker, since workers writing to one spool directory each see all of it.

prometheus_client keeps one file per process and type, so a collector whose
workers are restarted (a crash, ``--max-requests``, a deploy's HUP) would
collect files without end, and every scrape would read them all.
:func:`mark_process_dead` folds a dead worker's counters into one
``*_archive.db`` file per type and removes the worker's, under a lock that
:func:`metrics_app` holds while it reads, so that no scrape sees a count
twice or not at all: counters stay monotonic, and the directory holds the
live workers' files and one archive.

Cost: the request path only adds one to a count in a table of its own
thread, which no other thread writes, so it takes no lock; a thread per
process adds the tables up and moves the totals into prometheus_client's
values every second, and again before each scrape this process answers and
at close, so a scrape may be up to a second behind the other workers.
Writing prometheus_client's multiprocess values on every request would cost
more than the 2 us a request may spend on metrics, and a lock around one
shared table cost about 1 us more per request than the tables do.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import threading
import weakref
from collections import Counter
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

_INTERVAL = 1.0
_instruments: Optional[Dict[str, Any]] = None
_instruments_lock = threading.Lock()
_live: "weakref.WeakSet[Metrics]" = weakref.WeakSet()


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise RuntimeError('metrics need prometheus_client: pip install "pixel-middleware[metrics]"') from None
    return prometheus_client


def _get_instruments() -> Dict[str, Any]:
    """The metric objects, made once per process: two collectors in one process share them."""
    global _instruments
    with _instruments_lock:
        if _instruments is None:
            p = _prometheus()
            _instruments = {
                "events": p.Counter("pixel_events", "Events accepted and handed to the sink", ["dialect", "type"]),
                "rejections": p.Counter("pixel_rejections", "Requests refused, by reason", ["reason"]),
                "delivered": p.Counter("pixel_sink_delivered", "Events the destination confirmed", ["sink"]),
                "failed_batches": p.Counter("pixel_sink_failed_batches", "Delivery attempts that failed", ["sink"]),
                "dead_lettered": p.Counter("pixel_sink_dead_lettered", "Events refused for good", ["sink"]),
                "queue_depth": p.Gauge("pixel_sink_queue_depth", "Events waiting in memory", ["sink"],
                                       multiprocess_mode="livesum"),
                "spool_bytes": p.Gauge("pixel_sink_spool_bytes", "Bytes spooled for later delivery", ["sink"],
                                       multiprocess_mode="livemax"),
                "oldest_spooled_seconds": p.Gauge("pixel_sink_oldest_spooled_seconds",
                                                  "Age of the oldest spooled event", ["sink"],
                                                  multiprocess_mode="livemax"),
            }
        return _instruments


class Metrics:
    """One collector's counts, moved into prometheus_client by a thread of its own.

    :param rejections: the collector's cumulative ``Counter`` of rejections
        by reason, and ``lock`` the lock it is updated under.
    :param health: returns the sink's :meth:`~pixel_middleware.Sink.health`.
    """

    def __init__(self, rejections: Counter, lock: threading.Lock, health: Callable[[], Iterable[Dict[str, Any]]]) -> None:
        self._instruments = _get_instruments()
        self._rejections = rejections
        self._rejections_lock = lock
        self._health = health
        self._reset_events()
        self._flush_lock = threading.Lock()
        self._seen: Dict[Tuple[str, ...], float] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        _live.add(self)

    def event(self, dialect: str, type_: str) -> None:
        """Count one accepted event (the request path: one increment in this thread's own table)."""
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._new_table()
        key = (dialect, type_)
        counts[key] = counts.get(key, 0) + 1

    def _reset_events(self) -> None:
        self._local = threading.local()
        #: Each request thread's table, which only that thread writes, with the thread.
        self._tables: List[Tuple[threading.Thread, Dict[Tuple[str, str], int]]] = []
        #: What threads that have ended counted: their tables are final, and folded in here.
        self._retired: Counter[Tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def _new_table(self) -> Dict[Tuple[str, str], int]:
        counts: Dict[Tuple[str, str], int] = {}
        self._local.counts = counts
        with self._lock:
            self._tables.append((threading.current_thread(), counts))
        if self._thread is None:
            self._start()
        return counts

    def _event_totals(self) -> Counter[Tuple[str, str]]:
        """Events counted since start, over every thread's table.

        Each table is copied in one call, which no other thread can
        interleave. A server that starts a thread per request (werkzeug's)
        would grow the list of tables without end: a table whose thread has
        ended is final, so it is folded into one and dropped.
        """
        with self._lock:
            totals = Counter(self._retired)
            live = []
            for thread, counts in self._tables:
                table = dict(counts)
                totals.update(table)
                if thread.is_alive():
                    live.append((thread, counts))
                else:
                    self._retired.update(table)
            self._tables = live
        return totals

    def _forked(self) -> None:
        # The parent's counts are the parent's to report, and its thread did not come along.
        # The child inherits the collector's rejection Counter and the sink's cumulative
        # figures: it starts counting from them, or it would report the parent's again.
        # (Only one thread runs here, so the Counter is read without its lock; the sink's
        # figures are taken as the parent last reported them, since the sink's lock may
        # be held by a thread that did not come along.)
        seen = {key: total for key, total in self._seen.items() if key[0] != "events"}
        seen.update((("rejections", reason), total) for reason, total in dict(self._rejections).items())
        self._seen, self._thread = seen, None
        self._reset_events()
        self._flush_lock = threading.Lock()

    def _start(self) -> None:
        with self._flush_lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="pixel-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(_INTERVAL):
            self.flush()

    def flush(self) -> None:
        """Move what was counted since the last flush into prometheus_client; read the sinks' health."""
        with self._flush_lock:
            events = self._event_totals()
            with self._rejections_lock:
                rejections = dict(self._rejections)
            instruments = self._instruments
            for (dialect, type_), total in events.items():
                self._advance(("events", dialect, type_), total, instruments["events"].labels(dialect, type_))
            for reason, total in rejections.items():
                self._advance(("rejections", reason), total, instruments["rejections"].labels(reason))
            try:
                entries = list(self._health())
            except Exception:  # a sink's health must never stop the counts
                entries = []
            for entry in entries:
                sink = entry["sink"]
                for name in ("delivered", "failed_batches", "dead_lettered"):
                    self._advance((name, sink), entry[name], instruments[name].labels(sink))
                for name in ("queue_depth", "spool_bytes", "oldest_spooled_seconds"):
                    instruments[name].labels(sink).set(entry[name])

    def _advance(self, key: Tuple[str, ...], total: float, counter: Any) -> None:
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
            self._seen[key] = total

    def close(self) -> None:
        """A last flush, and the thread stops."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        _live.discard(self)


def _after_fork() -> None:
    for metrics in list(_live):
        metrics._forked()


os.register_at_fork(after_in_child=_after_fork)


#: The file types whose values add up across processes, and so can be folded into one.
_ADDITIVE = ("counter", "histogram", "summary")


@contextlib.contextmanager
def _directory_lock(path: str, exclusive: bool) -> Iterator[None]:
    """A lock on the multiprocess directory, shared by readers, exclusive for folding a dead worker in."""
    with open(os.path.join(path, ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mark_process_dead(pid: int) -> None:
    """A worker ended: drop its live gauges and fold its counters into the archive (see the module's docstring)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    with _directory_lock(path, exclusive=True):
        multiprocess.mark_process_dead(pid, path)
        for kind in _ADDITIVE:
            dead = os.path.join(path, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = MmapedDict(os.path.join(path, f"{kind}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(dead):
                    total, _ = archive.read_value(key)
                    archive.write_value(key, total + value, timestamp)
            finally:
                archive.close()
            os.unlink(dead)


def metrics_app() -> Callable:
    """A WSGI app answering with the metrics in Prometheus' text format, for mounting where scrapers look.

    Adds up every worker's figures when ``PROMETHEUS_MULTIPROC_DIR`` is set
    (prometheus_client's multiprocess mode), else this process's registry.
    """
    p = _prometheus()
    _get_instruments()

    def app(environ: Dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        for metrics in list(_live):
            metrics.flush()
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            return p.make_wsgi_app(p.REGISTRY)(environ, start_response)
        registry = p.CollectorRegistry()
        registry.register(_SizedFiles(path))
        with _directory_lock(path, exclusive=False):  # the whole answer is made in this call
            return p.make_wsgi_app(registry)(environ, start_response)

    return app


class _SizedFiles:
    """prometheus_client's multiprocess collector, over the files that are past their creation.

    A worker creates its file empty and sizes it a moment later
    (``MmapedDict``); read in between, prometheus_client raises on the empty
    header and ``/metrics`` answered 500 (seen once in a run of the serve
    tests, as a respawned worker counted its first event). An empty file
    holds no value yet, so leaving it out changes no figure.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterable[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for name in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(name) > 0:
                    files.append(name)
            except FileNotFoundError:
                pass  # a live gauge's file, removed as its worker ended: prometheus_client skips those too
        return MultiProcessCollector.merge(files, accumulate=True)
