"""BackgroundWorker: the thread that takes delivery off the request thread.

Modelled on sentry-python's ``BackgroundWorker``: a bounded queue fed with
``put_nowait`` (so that the request thread never waits), a daemon thread
started lazily under a lock, a fork check by pid (gunicorn forks workers
after the app, and with it a sink, may have been built: the child gets its
own thread and an empty queue, the parent keeps what it had queued), every
job wrapped so that one failure is logged and the loop lives on, and
``flush(timeout)`` as a timed wait for the queue to drain.

Two differences from sentry's: items are handed to the handler in batches
(by count and by wait time), because both Kafka and HTTP deliver better in
batches; and where sentry drops an item when the queue is full,
:meth:`BackgroundWorker.submit` says so, and the caller spools it.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable, List, Optional

_log = logging.getLogger("pixel_middleware")
_STOP = object()


class BackgroundWorker:
    """Runs ``handler(batch)`` on a daemon thread for items submitted from any thread.

    :param handler: called with a list of up to ``batch_size`` items, on the
        worker thread; also with an empty list every ``tick`` seconds when no
        item comes, so that the owner can do periodic work (retry a replay).
        What it raises is logged; the loop goes on.
    :param queue_size: most items waiting; :meth:`submit` refuses more.
    :param batch_size: most items per handler call.
    :param linger: longest wait, in seconds, for a batch to fill once its
        first item is there.
    :param tick: the idle interval between empty handler calls.
    """

    def __init__(
        self,
        handler: Callable[[List[Any]], None],
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        linger: float = 0.05,
        tick: float = 0.5,
        name: str = "pixel-middleware-worker",
    ) -> None:
        self.handler = handler
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.linger = linger
        self.tick = tick
        self.name = name
        self._queue: "queue.Queue[Any]" = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._thread_for_pid: Optional[int] = None

    @property
    def is_alive(self) -> bool:
        if self._thread_for_pid != os.getpid():
            return False
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread if it is not running in this process (safe to call often)."""
        with self._lock:
            if self.is_alive:
                return
            if self._thread_for_pid is not None and self._thread_for_pid != os.getpid():
                # Forked: the parent's queued items are the parent's to deliver,
                # and its queue's locks may have been held at the fork.
                self._queue = queue.Queue(self.queue_size)
            self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
            self._thread.start()
            self._thread_for_pid = os.getpid()

    def submit(self, item: Any) -> bool:
        """Queue ``item`` without waiting; ``False`` if the queue is full."""
        if self._thread_for_pid != os.getpid() or self._thread is None:
            self.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def drain(self) -> List[Any]:
        """Take every waiting item off the queue (marked done), for the caller to keep elsewhere."""
        items: List[Any] = []
        stop = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            if item is _STOP:
                stop = True
            else:
                items.append(item)
        if stop:
            self._queue.put_nowait(_STOP)  # a stop asked for still ends the thread
        return items

    @property
    def depth(self) -> int:
        """Items submitted and not yet handled (queued or in the batch being handled)."""
        return self._queue.unfinished_tasks

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every submitted item has been handled; ``False`` if ``timeout`` ran out first."""
        if not self.is_alive:
            return self._queue.unfinished_tasks == 0
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                done.wait(remaining)
        return True

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Ask the thread to end after the current batch and wait for it; ``False`` if it did not end in time."""
        with self._lock:
            if not self.is_alive:
                return True
            thread = self._thread
            self._queue.put(_STOP)  # the caller drained the queue first; a stop always fits
        assert thread is not None
        thread.join(timeout)
        if thread.is_alive():
            return False
        with self._lock:
            if self._thread is thread:
                self._thread = None  # a later submit starts a new one
        return True

    def _target(self) -> None:
        get = self._queue.get
        while True:
            try:
                batch = [get(timeout=self.tick)]
            except queue.Empty:
                self._run([])
                continue
            deadline = time.monotonic() + self.linger
            while _STOP not in batch and len(batch) < self.batch_size:
                taken = self._take(self.batch_size - len(batch))
                if taken:
                    batch += taken
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(get(timeout=remaining))
                except queue.Empty:
                    break
            stopping = _STOP in batch
            done = len(batch)
            if stopping:
                # Items queued behind a stop are left for close() to drain.
                self._put_back(batch[batch.index(_STOP) + 1 :])
                done -= len(batch) - batch.index(_STOP) - 1
                batch = batch[: batch.index(_STOP)]
            try:
                if batch or not stopping:
                    self._run(batch)
            finally:
                self._done(done)
            if stopping:
                return

    # Bulk versions of get_nowait() and task_done() on the Queue's own lock and
    # counters (the attributes queue.Queue documents for subclasses): per item,
    # those calls cost more than the delivery itself.

    def _take(self, limit: int) -> List[Any]:
        q = self._queue
        with q.mutex:
            items = [q.queue.popleft() for _ in range(min(limit, len(q.queue)))]
            if items:
                q.not_full.notify(len(items))
        return items

    def _put_back(self, items: List[Any]) -> None:
        if items:
            q = self._queue
            with q.mutex:
                q.queue.extendleft(reversed(items))

    def _done(self, count: int) -> None:
        q = self._queue
        with q.all_tasks_done:
            q.unfinished_tasks -= count
            if q.unfinished_tasks <= 0:
                q.all_tasks_done.notify_all()

    def _run(self, batch: List[Any]) -> None:
        try:
            self.handler(batch)
        except Exception:
            _log.exception("%s: handling a batch of %d failed", self.name, len(batch))
