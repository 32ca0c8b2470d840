"""DeliveringSink: the at-least-once machinery that KafkaSink and HttpSink share.

A subclass says how to deliver one batch (:meth:`DeliveringSink._deliver`);
everything else is here, once:

* ``emit`` puts ``(event, dialect, write_key)`` on a
  :class:`~pixel_middleware.sinks.worker.BackgroundWorker`'s bounded queue and
  returns. Only when that queue is full (the worker cannot even keep up with
  spooling) does the request thread write the event to the spool itself: the
  request then pays one disk write, and nothing is dropped.
* The worker delivers batches. What a batch could not deliver goes to the
  :class:`~pixel_middleware.sinks.spool.Spool` and the sink turns *down*:
  from then on new batches are spooled too, so that they are delivered after
  the older ones, and the spool is replayed, oldest file first, after an
  exponential backoff with jitter. When a replay empties the spool, the sink
  is up again and delivers directly.
* Spool files left by an earlier process (or a dead sibling worker) are
  replayed at start and then every ``rescan`` seconds.
* :meth:`close` (also run at interpreter exit) delivers what it can within
  its timeout and spools the rest, including a batch still in flight.

Delivery guarantee: at-least-once for every event ``emit`` accepted, as long
as the process ends through ``close()`` or a normal interpreter exit, or the
events had already been spooled (each spool write is fsync'd). Events still in
memory when the process is killed (SIGKILL, OOM, power loss) are lost: at
most ``queue_size`` plus one batch. Events the spool's disk cap refuses are
lost too, each one counted and logged. Duplicates come from a delivery that
succeeded but was not confirmed in time (timeout, broker or endpoint dying
after accepting), from replaying a spool file of which part had been
delivered, and from ``close`` spooling a batch that was still in flight.
Duplicates carry the same ``messageId``.
"""
from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import logging
import os
import random
import tempfile
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..core.events import Event
from .base import Sink, encode_event
from .spool import Spool
from .worker import BackgroundWorker

_log = logging.getLogger("pixel_middleware")

#: What the queue and the spool hold: the event, its dialect, its write key.
Item = Tuple[Event, Optional[str], Optional[str]]


#: Options every delivering sink takes, and how to read them from a URL's text.
OPTIONS: Dict[str, Callable[[str], Any]] = {
    "spool_dir": str,
    "spool_max_bytes": int,
    "queue_size": int,
    "batch_size": int,
    "linger": float,
    "retry_backoff": float,
    "retry_backoff_max": float,
    "rescan": float,
    "exit_timeout": float,
    "dead_letter": str,
}


def split_options(
    params: Iterable[Tuple[str, str]], extra: Mapping[str, Callable[[str], Any]]
) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Split URL parameters into sink options (converted) and the rest, in order.

    ``extra`` names the sink's own options beside :data:`OPTIONS`. A value
    that does not convert raises ``ValueError`` naming the option.
    """
    known = {**OPTIONS, **extra}
    options: Dict[str, Any] = {}
    rest: Dict[str, str] = {}
    for name, value in params:
        convert = known.get(name)
        if convert is None:
            rest[name] = value
            continue
        try:
            options[name] = convert(value)
        except ValueError:
            raise ValueError(f"sink URL option {name}={value!r} is not valid") from None
    return options, rest


def as_bool(value: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, for URL options."""
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(value)


def default_spool_dir(kind: str, destination: str) -> str:
    """A per-user, per-destination directory under the system temp dir.

    Per destination so that events spooled for one broker are never replayed
    to another. Set ``spool_dir`` in production: temp dirs may be wiped at boot.
    Refused if another user owns the directory, since the spool may hold write keys.
    """
    digest = hashlib.sha256(destination.encode()).hexdigest()[:12]
    parent = os.path.join(tempfile.gettempdir(), f"pixel-middleware-{os.getuid()}")
    os.makedirs(parent, mode=0o700, exist_ok=True)
    if os.stat(parent).st_uid != os.getuid():
        # A shared temp dir: someone else made it first, and could read the spool.
        raise PermissionError(f"{parent} belongs to another user: pass spool_dir=... to the sink")
    return os.path.join(parent, f"{kind}-{digest}")


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": between half and all of ``base * 2**attempt``, at most ``cap``.

    Jitter keeps many collectors that failed together from retrying together.
    """
    delay = min(cap, base * (2 ** min(attempt, 32)))
    return delay / 2 + random.uniform(0, delay / 2)


class DeliveringSink(Sink):
    """Base class for sinks that deliver over the network at least once.

    Options every delivering sink takes (keyword-only):

    :param spool_dir: where undeliverable events are spooled; default a
        per-destination directory under the system temp dir. Several
        processes may share one.
    :param spool_max_bytes: disk cap of the spool directory (default 1 GiB);
        what would exceed it is counted in ``stats["overflowed"]`` and logged.
    :param queue_size: most events waiting in memory (default 10,000).
    :param batch_size: most events per delivery (default 500).
    :param linger: longest wait, in seconds, for a batch to fill (default 0.05).
    :param retry_backoff: first wait, in seconds, before replaying the spool
        after a failure; doubles on each failure, with jitter (default 1).
    :param retry_backoff_max: longest such wait (default 60).
    :param rescan: seconds between looks for spool files left by other
        processes while all is well (default 30).
    :param exit_timeout: how long interpreter exit may spend delivering
        before it spools the rest (default 5); ``None`` registers no exit hook.
    :param dead_letter: the file (JSON lines) where events the destination
        refuses for good are written with the reason, never to be retried;
        default ``dead-letter.jsonl`` in the spool directory.
    """

    #: Whether the spool must keep the write key (HttpSink in segment format).
    keeps_write_key = False
    kind = "sink"

    def __init__(
        self,
        destination: str,
        *,
        spool_dir: Optional[str] = None,
        spool_max_bytes: int = 1 << 30,
        queue_size: int = 10_000,
        batch_size: int = 500,
        linger: float = 0.05,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 60.0,
        rescan: float = 30.0,
        exit_timeout: Optional[float] = 5.0,
        dead_letter: Optional[str] = None,
    ) -> None:
        self.spool = Spool(spool_dir or default_spool_dir(self.kind, destination), max_bytes=int(spool_max_bytes))
        self.dead_letter = dead_letter or os.path.join(self.spool.directory, "dead-letter.jsonl")
        self.retry_backoff = float(retry_backoff)
        self.retry_backoff_max = float(retry_backoff_max)
        self.rescan = float(rescan)
        #: ``delivered``: events confirmed by the destination (replays included);
        #: ``failed_batches``: delivery attempts that failed; ``spooled_by_request``:
        #: events the request thread spooled because the queue was full.
        #: ``dead_lettered``: events refused for good and written to ``dead_letter``
        #: (the destination's refusals, and events with no valid JSON form);
        #: ``unreadable``: spool records that were not a record, skipped on replay.
        self.stats: Dict[str, int] = {
            "delivered": 0,
            "failed_batches": 0,
            "spooled_by_request": 0,
            "dead_lettered": 0,
            "unreadable": 0,
        }
        self._worker = BackgroundWorker(
            self._handle,
            queue_size=int(queue_size),
            batch_size=int(batch_size),
            linger=float(linger),
            tick=min(0.5, float(retry_backoff)),
            name=f"pixel-middleware-{self.kind}",
        )
        self._lock = threading.Lock()
        self._down = False
        self._down_since: Optional[float] = None
        self._failures = 0
        self._next_replay = 0.0  # replay leftovers from earlier processes at once
        self._not_before = 0.0  # a destination's own "retry after" (HTTP Retry-After)
        self._inflight: Optional[List[Item]] = None
        self._closing = False
        self._closed = False
        self._wakeup = threading.Event()  # set by close(): cut retry waits short
        if exit_timeout is not None:
            atexit.register(_close_at_exit, weakref.ref(self), float(exit_timeout))
        if self.spool.pending():
            self._worker.start()

    # -- what subclasses provide -------------------------------------------

    def _deliver(self, items: Sequence[Item]) -> List[Item]:
        """Deliver ``items``; return those that failed and should be retried later.

        Runs on the worker thread only. Items that must not be retried (an
        endpoint refusing them for good) are dealt with here and not returned.
        Encode events with :meth:`_encoded`, so that one event with no valid
        JSON form is dead-lettered alone and the rest go on.
        """
        raise NotImplementedError

    def _encoded(self, items: Sequence[Item]) -> List[Tuple[Item, bytes]]:
        """Each item with its event's JSON bytes; items that cannot be encoded are dead-lettered alone."""
        encoded: List[Tuple[Item, bytes]] = []
        for item in items:
            try:
                encoded.append((item, encode_event(item[0])))
            except (ValueError, TypeError) as error:  # UnicodeEncodeError is a ValueError
                self._dead_letter([item], reason="unserialisable", error=type(error).__name__)
        return encoded

    def _sleep(self, seconds: float) -> bool:
        """Wait between retries on the worker thread; ``False`` if the sink is closing meanwhile."""
        return not self._wakeup.wait(seconds) and not self._closing

    def _probe(self) -> bool:
        """Whether the destination looks reachable, checked cheaply before a replay while down.

        Saves sending a whole spool file into an outage and waiting for it to fail.
        """
        return True

    def _release(self, timeout: Optional[float]) -> None:
        """Free network resources at close."""

    # -- the request thread ------------------------------------------------

    def emit(self, event: Event, **meta: Any) -> None:
        """Queue the event for delivery; returns at once (spools it when the queue is full)."""
        item = (event, meta.get("dialect"), meta.get("write_key") if self.keeps_write_key else None)
        if self._closing:
            self._spool_items([item])  # for the next start: closing must not lose it
            return
        if not self._worker.submit(item):
            self._spool_items([item])
            with self._lock:
                self.stats["spooled_by_request"] += 1
                self._next_replay = 0.0  # replay it as soon as the worker catches up

    def health(self) -> List[Dict[str, Any]]:
        """See :meth:`Sink.health`; the spool figures cover every process sharing the directory."""
        with self._lock:
            counts = dict(self.stats)
            down_since = self._down_since
        spool = self.spool
        return [{
            "sink": self.name,
            "delivered": counts["delivered"],
            "failed_batches": counts["failed_batches"],
            "dead_lettered": counts["dead_lettered"],
            "queue_depth": self._worker.depth,
            "spool_bytes": spool.used_bytes(),
            "spool_max_bytes": spool.max_bytes,
            "oldest_spooled_seconds": spool.oldest_seconds(),
            "down_since": down_since,
        }]

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every event emitted so far is delivered or spooled.

        Replaying the spool goes on in the background; ``flush`` does not wait for it.
        """
        return self._worker.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Deliver what is queued within ``timeout`` seconds, spool the rest, release resources.

        A batch still in flight when time runs out is spooled as well (it may
        then arrive twice). Events emitted after ``close`` are spooled for the
        next start.
        """
        if self._closed:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self._worker.flush(timeout)
        with self._lock:
            self._closing = True
            self._wakeup.set()
            leftover = self._worker.drain()
            if self._inflight:
                leftover = self._inflight + leftover
                self._inflight = None
        self._spool_items(leftover)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._worker.stop(min(1.0, remaining) if remaining is not None else 1.0)
        self._spool_items(self._worker.drain())  # emitted while we were closing
        self._closed = True
        self.spool.seal()
        try:
            self._release(remaining)
        except Exception:
            _log.exception("%r: releasing the connection failed", self)
        if leftover:
            _log.warning("%r closed with %d events spooled for the next start", self, len(leftover))

    # -- the worker thread -------------------------------------------------

    def _handle(self, batch: List[Item]) -> None:
        with self._lock:
            if self._closing:
                self._spool_items(batch)
                return
            down = self._down
            if batch and not down:
                self._inflight = batch
        if batch:
            if down:
                self._spool_items(batch)
            else:
                try:
                    failed = self._deliver_counted(batch)
                except Exception:
                    # Not the destination's answer but a fault here: keep the batch
                    # for a replay, where a second fault dead-letters it (see _replay).
                    _log.exception("%r: delivering a batch of %d raised; spooled", self, len(batch))
                    failed = batch
                self._settle(batch, failed)
        if time.monotonic() >= self._next_replay:
            try:
                self._replay()
            except Exception as error:  # the spool's own I/O (listing, claiming) failed
                self._failed(f"replaying the spool failed ({type(error).__name__}: {error})")

    def _deliver_counted(self, items: Sequence[Item]) -> List[Item]:
        """:meth:`_deliver`, counting in ``stats["delivered"]`` what was neither failed nor dead-lettered."""
        refused = self.stats["dead_lettered"]
        failed = self._deliver(items)
        with self._lock:
            refused = self.stats["dead_lettered"] - refused
            self.stats["delivered"] += len(items) - len(failed) - refused
        return failed

    def _settle(self, batch: List[Item], failed: List[Item]) -> None:
        with self._lock:
            taken = self._inflight is None  # close() spooled it already
            self._inflight = None
        if failed:
            if not taken:
                self._spool_items(failed)
            self._failed(f"{len(failed)} of {len(batch)} events not delivered; spooled")

    def _failed(self, what: str) -> None:
        with self._lock:
            if not self._down:
                self._down_since = time.time()
            self._down = True
            self._failures += 1
            self.stats["failed_batches"] += 1
            delay = backoff_delay(self._failures - 1, self.retry_backoff, self.retry_backoff_max)
            delay = max(delay, self._not_before - time.monotonic())
            self._next_replay = time.monotonic() + delay
        _log.warning("%r: %s; next try in %.1f s", self, what, delay)

    def _replay(self) -> None:
        """Replay spool files, oldest first, until none is left or one fails."""
        if self._down and not self._probe():
            self._failed("the destination is still unreachable")
            return
        spills = self.stats["spooled_by_request"]
        self.spool.seal()
        while not self._closing:
            claim = self.spool.claim()
            if claim is None:
                break
            try:
                items = [item for item in map(self._decode, claim.records()) if item is not None]
            except OSError as error:
                claim.release()
                self._failed(f"reading {claim.path} failed ({error})")
                return
            try:
                failed = self._deliver_counted(items) if items else []
            except Exception as error:
                # Raised a second time for the same events (they were spooled after the
                # first): a fault that will not pass. Dead-letter them, never loop on them.
                _log.exception("%r: replaying %s raised; its %d events dead-lettered", self, claim.path, len(items))
                self._dead_letter(items, reason="delivery raised", error=type(error).__name__)
                failed = []
            if failed:
                claim.release()
                self._failed(f"replaying {claim.path} failed ({len(failed)} of {len(items)} events)")
                return
            claim.done()
        with self._lock:
            if self._down and not self._closing:
                _log.warning("%r: delivery works again; the spool is replayed", self)
            self._down = False
            self._down_since = None
            self._failures = 0
            # A request thread that spilled meanwhile wants its event replayed soon, not after `rescan`.
            again = self.stats["spooled_by_request"] != spills
            self._next_replay = 0.0 if again else time.monotonic() + self.rescan

    def _dead_letter(self, items: Sequence[Item], **reason: Any) -> None:
        """Write refused events, with why, to the dead-letter file; never retried.

        The write key is left out: the file is for people to read.
        """
        line = {"at": time.time(), **reason, "events": [event for event, _, _ in items]}
        try:
            text = json.dumps(line, separators=(",", ":"), default=repr, allow_nan=False)
        except ValueError:  # NaN or infinity: keep what a person can read
            text = json.dumps({**line, "events": [repr(event) for event, _, _ in items]}, separators=(",", ":"))
        data = (text + "\n").encode()
        try:
            fd = os.open(self.dead_letter, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as file:
                fcntl.flock(fd, fcntl.LOCK_EX)  # one whole line per writer, across processes
                file.write(data)
                file.flush()
                os.fsync(fd)
        except OSError:
            _log.exception("%r: writing %d events to the dead-letter file %s failed", self, len(items), self.dead_letter)
        with self._lock:
            self.stats["dead_lettered"] += len(items)
        # Not the response body: an endpoint may echo what it was sent, credentials included.
        why = {k: v for k, v in reason.items() if k != "response"}
        _log.error("%r: %d events refused for good, written to %s: %s", self, len(items), self.dead_letter, why)

    # -- spool records -----------------------------------------------------

    def _spool_items(self, items: Sequence[Item]) -> None:
        records = []
        for item in items:
            try:
                records.append(json.dumps(item, separators=(",", ":"), allow_nan=False).encode())
            except (ValueError, TypeError) as error:
                self._dead_letter([item], reason="unserialisable", error=type(error).__name__)
        if records:
            self.spool.append(records)

    def _decode(self, record: bytes) -> Optional[Item]:
        """A spool record back as an item; ``None`` (counted, logged) for anything that is not one."""
        try:
            item = json.loads(record)
        except ValueError:
            item = None
        if (
            type(item) is list
            and len(item) == 3
            and type(item[0]) is dict
            and all(part is None or type(part) is str for part in item[1:])
        ):
            return item[0], item[1], item[2]
        with self._lock:
            self.stats["unreadable"] += 1
        # Its length only: a record may hold a write key.
        _log.error("%r: a spool record of %d bytes is not a record; skipped", self, len(record))
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spool.directory}>"


def _close_at_exit(ref: "weakref.ReferenceType[DeliveringSink]", timeout: float) -> None:
    sink = ref()
    if sink is not None and not sink._closed:
        sink.close(timeout)
