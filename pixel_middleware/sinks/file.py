"""FileSink: one JSON line per event, appended to a file.

For a collector whose events a log shipper (Vector, Fluent Bit, Filebeat)
or a batch job picks up from disk, without :mod:`logging`'s cost per record.
Each event is one ``write`` to a file opened with ``O_APPEND``: when the
GIF is answered the line is in the kernel's page cache, so a killed worker
loses nothing it answered for (a machine crash can lose what the kernel had
not yet written out). With ``after_response``, as ``serve`` runs, the line is
written just after the GIF: a worker killed in between loses that one event.
Several processes (gunicorn workers) may append to the same file: on a local
file system each appended line lands whole.

Rotation: the file is reopened when it has been moved or deleted (checked at
most once a second), so ``logrotate`` without ``copytruncate`` works, as
with :class:`logging.handlers.WatchedFileHandler`.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Optional

from ..events import Event
from .base import Sink, encode_event

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


class FileSink(Sink):
    """Append each event as one compact JSON line to ``path`` (created with mode 0600).

    Mode 0600 because events carry personal data (ids, IP addresses).
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, _FLAGS, 0o600)
        self._retired = -1  # the descriptor before the last reopen, closed at the next one
        self._checked = time.monotonic()

    def emit(self, event: Event, **meta: Any) -> None:
        """Write the event's line; an event with no valid JSON form raises here, writing nothing."""
        data = encode_event(event) + b"\n"
        if time.monotonic() - self._checked >= 1.0:
            self._reopen_if_moved()
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk or a signal: finish the line rather than tear it
            view = memoryview(data)
            while written < len(data):
                written += os.write(self._fd, view[written:])

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
        """Close the file; lines already written are the kernel's to keep."""
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
        """``file:/var/log/pixels.jsonl`` or ``file:///var/log/pixels.jsonl`` (``file:events.jsonl`` is relative)."""
        path = url.partition(":")[2]
        if path.startswith("//"):
            path = path[2:]
            if not path.startswith("/"):
                raise ValueError(f"file sink URL {url!r}: a host is not allowed, use file:///path")
        if not path:
            raise ValueError("file sink URL needs a path: file:/var/log/pixels.jsonl")
        return cls(path)
