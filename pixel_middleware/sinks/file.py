"""FileSink: one JSON line per event, appended to a file.

For a collector whose events a log shipper (Vector, Fluent Bit, Filebeat)
or a batch job picks up from disk, without :mod:`logging`'s cost per record.
By default each event is one ``write`` to a file opened with ``O_APPEND``:
when the GIF is answered the line is in the kernel's page cache, so a killed
worker loses nothing it answered for (a machine crash can lose what the
kernel had not yet written out). Several processes (``serve``'s workers,
gunicorn's) may append to the same file: on a local file system each
appended line lands whole.

Held lines (``batch``): the sink may hold up to ``batch`` lines and write
them in one ``write``, as ``serve``'s workers do (16 lines): under load one
system call then carries many lines, and a worker costs several
microseconds less per event. No line waits longer than ``linger`` (5 ms):
the sink's own thread writes what it holds then, and an event that finds
the first held line that old writes them with its own. They are written at
:meth:`FileSink.close` too, which ``serve`` calls on SIGTERM and SIGINT;
only a worker killed outright (SIGKILL, the out-of-memory killer) loses the
lines it held, at most ``linger``'s worth, as a network sink loses the
events in its queue.

Rotation: the file is reopened when it has been moved or deleted (checked at
most once a second), so ``logrotate`` without ``copytruncate`` works, as
with :class:`logging.handlers.WatchedFileHandler`.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qsl

from ..core.events import Event
from ..core.holding import Holder
from .base import Sink, encode_event

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
#: Longest a held line waits for the lines after it, by default.
LINGER_SECONDS = 0.005
_log = logging.getLogger("pixel_middleware")
#: Every FileSink of the process, so that a forked child (gunicorn --preload) starts from its own state.
_open_sinks: "weakref.WeakSet[FileSink]" = weakref.WeakSet()


class FileSink(Sink):
    """Append each event as one compact JSON line to ``path`` (created with mode 0600).

    Mode 0600 because events carry personal data (ids, IP addresses).

    :param batch: lines held before one ``write`` carries them all (1: each
        line is written at once).
    :param linger: the longest, in seconds, that a held line waits for the
        lines after it before the sink's thread writes it (see the module's
        docs).
    """

    def __init__(self, path: str, *, batch: int = 1, linger: float = LINGER_SECONDS) -> None:
        self.path = os.path.abspath(path)
        self._held: Holder[bytes] = Holder(self._write_held, batch, linger, name=f"pixel-file-sink {self.path}")
        self._lock = threading.Lock()
        self._fd = os.open(self.path, _FLAGS, 0o600)
        self._retired = -1  # the descriptor before the last reopen, closed at the next one
        self._checked = time.monotonic()
        self._lost = 0  # held lines a write failed for: counted as dead-lettered
        _open_sinks.add(self)

    @property
    def batch(self) -> int:
        """Lines held for one ``write`` (``serve``'s workers raise it to 16)."""
        return self._held.size

    @batch.setter
    def batch(self, size: int) -> None:
        self._held.size = size

    @property
    def linger(self) -> float:
        return self._held.linger

    def _forked(self) -> None:
        """In a child process just forked: the held lines and the writer thread are the parent's."""
        self._held = self._held.forked()
        self._lock = threading.Lock()

    def emit(self, event: Event, **meta: Any) -> None:
        """Write the event's line (or hold it); an event with no valid JSON form raises here, writing nothing."""
        data = encode_event(event) + b"\n"
        if self._held.size == 1:
            self._write(data)
        else:
            self._held.add(data)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Write the held lines now."""
        self._held.flush()
        return True

    def _write_held(self, held: List[bytes]) -> None:
        # Held lines belong to requests already answered: a failure to write them is
        # logged and counted (dead-lettered), never raised at a later request.
        try:
            self._write(b"".join(held))
        except OSError as error:
            with self._lock:  # two request threads may fail at once
                self._lost += len(held)
            _log.error("file sink %s could not write %d held events: %s", self.path, len(held), error)

    def _write(self, data: bytes) -> None:
        if time.monotonic() - self._checked >= 1.0:
            self._reopen_if_moved()
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk or a signal: finish the lines rather than tear one
            view = memoryview(data)
            while written < len(data):
                written += os.write(self._fd, view[written:])

    def health(self) -> List[Dict[str, Any]]:
        [figures] = super().health()
        figures["dead_lettered"] = self._lost
        figures["queue_depth"] = len(self._held)
        return [figures]

    def _reopen_if_moved(self) -> None:
        with self._lock:
            self._checked = time.monotonic()
            try:
                current = os.stat(self.path)
                opened = os.fstat(self._fd)
                moved = (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino)
            except FileNotFoundError:
                moved = True
            if moved:
                fd = os.open(self.path, _FLAGS, 0o600)
                # Another request thread may be writing through the old descriptor this
                # very moment: close it a check later, never while its number could be reused.
                if self._retired >= 0:
                    os.close(self._retired)
                self._retired, self._fd = self._fd, fd

    def close(self, timeout: Optional[float] = None) -> None:
        """Write the held lines and close the file; lines written are the kernel's to keep."""
        self._held.close(timeout)
        with self._lock:
            for fd in (self._fd, self._retired):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._retired = -1

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    def __repr__(self) -> str:
        return f"<FileSink {self.path}>"

    @classmethod
    def from_url(cls, url: str) -> "FileSink":
        """``file:/var/log/pixels.jsonl`` or ``file:///var/log/pixels.jsonl`` (``file:events.jsonl`` is relative).

        Options go in the fragment, as for the other sinks:
        ``file:/var/log/pixels.jsonl#batch=16&linger=0.005``. An unknown
        option, or a value that does not convert (a blank one included), is
        an error naming it rather than part of the file's name.
        """
        path, _, fragment = url.partition(":")[2].partition("#")
        if path.startswith("//"):
            path = path[2:]
            if not path.startswith("/"):
                raise ValueError(f"file sink URL {url!r}: a host is not allowed, use file:///path")
        if not path:
            raise ValueError("file sink URL needs a path: file:/var/log/pixels.jsonl")
        options: Dict[str, Any] = {}
        for name, value in parse_qsl(fragment, keep_blank_values=True):
            convert = _URL_OPTIONS.get(name)
            if convert is None:
                raise ValueError(f"file sink URL option {name!r} is unknown: the options are batch and linger")
            try:
                options[name] = convert(value)
            except ValueError:
                raise ValueError(f"file sink URL option {name}={value!r} is not valid") from None
        return cls(path, **options)


_URL_OPTIONS = {"batch": int, "linger": float}


def _after_fork_in_child() -> None:
    for sink in list(_open_sinks):
        sink._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
