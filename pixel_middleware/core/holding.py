"""Items held to be handed over together: up to ``size`` of them, none longer than ``linger`` seconds.

One class for the two places that hold: ``serve``'s workers hold answered
pixels to record them 16 at a time (:mod:`pixel_middleware.server.batches`),
and a file sink holds lines to write them with one ``write``
(:mod:`pixel_middleware.sinks.file`). Both must hand an item over within its
linger even when no item follows it, and hand everything over at close, so
a thread of the holder's own, started at the first item, waits for the
oldest item's time.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, List, Optional, TypeVar

T = TypeVar("T")


class Holder(Generic[T]):
    """Hands ``release`` the held items when ``size`` are held, when the first has waited ``linger`` seconds, and at :meth:`close`.

    ``release`` runs in the thread that added the last item of a full
    batch, or in the holder's own thread; it should not raise.
    """

    def __init__(self, release: Callable[[List[T]], None], size: int, linger: float, name: str) -> None:
        if size < 1:
            raise ValueError(f"batch size must be at least 1, not {size}")
        if not linger > 0:
            raise ValueError(f"linger must be above 0 seconds, not {linger}")
        self.size = size
        self.linger = linger
        self._release = release
        self._name = name
        self._held: List[T] = []
        self._since = 0.0  # time.monotonic() when the first held item came
        self._lock = threading.Lock()
        self._holding = threading.Event()  # set when a first item is held: the thread's cue
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def forked(self) -> "Holder[T]":
        """An empty holder like this one, for a forked child: the held items and the thread are the parent's."""
        return Holder(self._release, self.size, self.linger, self._name)

    def __len__(self) -> int:
        return len(self._held)

    def add(self, item: T) -> None:
        """Hold ``item``; hand the batch over now if it is full, or if its first item has waited ``linger``.

        The second case covers a thread that is late (a busy interpreter):
        no item waits for it past its time when another item comes.
        """
        moment = time.monotonic()
        with self._lock:
            held = self._held
            if not held:
                self._since = moment
            held.append(item)
            if len(held) < self.size and moment - self._since < self.linger:
                if len(held) == 1:
                    if self._thread is None:  # started here, in the process that holds
                        self._thread = threading.Thread(target=self._wait_and_release, daemon=True, name=self._name)
                        self._thread.start()
                    self._holding.set()
                return
            self._held = []
        self._release(held)

    def _take(self, older_than: float) -> List[T]:
        """The held items if the first came at or before ``older_than`` (``time.monotonic()``)."""
        with self._lock:
            if not self._held or self._since > older_than:
                return []
            held, self._held = self._held, []
        return held

    def _wait_and_release(self) -> None:
        """The holder's thread: hand over a batch whose first item has waited ``linger`` without the batch filling."""
        while not self._stopping.is_set():
            self._holding.wait()
            self._holding.clear()  # before looking: a batch begun from here on sets the cue again
            with self._lock:
                due = self._since + self.linger if self._held else None
            # Nothing held: the batch filled before this thread looked. It rests a linger then, rather
            # than wake for every batch that fills (a GIL hand-over each); a batch begun meanwhile is
            # not due before the rest ends, and an item added past its batch's time hands it over.
            wait = self.linger if due is None else max(0.0, due - time.monotonic())
            if self._stopping.wait(wait):
                return  # close() hands over what is held
            held = self._take(time.monotonic() - self.linger)
            if held:
                self._release(held)

    def flush(self) -> None:
        """Hand over what is held now."""
        held = self._take(float("inf"))
        if held:
            self._release(held)

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the thread (waiting at most ``timeout`` seconds) and hand over what is held."""
        self._stopping.set()
        self._holding.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.flush()
