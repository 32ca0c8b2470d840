"""The on-disk spool: where a delivering sink keeps what it could not deliver yet.

A delivering sink (:class:`~pixel_middleware.sinks.kafka.KafkaSink`,
:class:`~pixel_middleware.sinks.http.HttpSink`) holds a bounded queue in
memory; what cannot be delivered in time is appended here and replayed, oldest
file first, once delivery works again and at the next start. Memory stays
bounded however long an outage lasts; the disk is bounded by ``max_bytes``.

Guarantees, and how they are kept:

* Durable per batch: each :meth:`Spool.append` writes its records, flushes and
  ``fsync``\\ s before returning. A record is one JSON line; a line torn by a
  crash mid-write is skipped, logged and counted on replay, never guessed at.
* Bounded: what would take the directory over ``max_bytes`` is not written;
  it is counted in ``stats["overflowed"]`` and logged at ERROR, never dropped
  in silence.
* Safe with several processes on one directory (gunicorn ``-w 4``): each
  process writes its own files, named ``<time_ns>-<pid>-<seq>.spool``, and
  holds an exclusive ``flock`` on the file it is writing. A file is claimed
  for replay by taking its ``flock`` without blocking and then renaming it
  (``rename`` is atomic, so exactly one claimant wins); the lock is held until
  the replay ends. A claim whose process died (even by SIGKILL) loses its
  lock with the process, so its file is claimed again by the next one:
  nothing is lost and no file is replayed twice at the same time.
* Ordered: files are replayed in the order of their names (creation time),
  records in a file in the order written.

POSIX only (``fcntl.flock``).
"""
from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import threading
import time
from typing import IO, Dict, List, Optional, Sequence

_log = logging.getLogger("pixel_middleware.spool")

#: ``<stem>.spool`` while written or waiting, ``<stem>.claim-<pid>`` while replayed.
_NAME = re.compile(r"\A(\d{20}-\d+-\d+)\.(?:spool|claim-\d+)\Z")


class Claim:
    """One spool file taken for replay: read its records, then :meth:`done` or :meth:`release`.

    While a claim is held, no other process or thread can claim the file.
    """

    def __init__(self, spool: "Spool", path: str, file: IO[bytes]) -> None:
        self._spool = spool
        self.path = path
        self._file = file
        self._count = 0

    def records(self) -> List[bytes]:
        """The file's complete records (JSON lines without their newline), in order."""
        self._file.seek(0)
        data = self._file.read()
        lines = data.split(b"\n")
        if lines[-1]:
            # A write cut short by a crash: the record was never acknowledged as spooled.
            with self._spool._lock:
                self._spool.stats["torn"] += 1
            _log.error("spool file %s ends with a torn record of %d bytes; skipped", self.path, len(lines[-1]))
        records = [line for line in lines[:-1] if line]
        self._count = len(records)
        return records

    def done(self) -> None:
        """Everything in the file was delivered: remove it."""
        try:
            os.unlink(self.path)
        finally:
            self._file.close()
        with self._spool._lock:
            self._spool.stats["replayed"] += self._count

    def release(self) -> None:
        """Delivery failed: keep the file (whole) for a later replay, by this process or another."""
        self._file.close()


class Spool:
    """Append-only spool files in one directory, shared safely between processes.

    :param directory: created (mode 0700) if missing. Spool files may hold
        what a sink needs to deliver an event, such as a Segment write key,
        so keep the directory private.
    :param max_bytes: the most the directory's spool files may hold together.
    :param file_bytes: a file is closed and a new one begun past this size, so
        that replay can start on sealed files while the outage goes on.
    """

    def __init__(self, directory: str, *, max_bytes: int = 1 << 30, file_bytes: int = 4 << 20) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.max_bytes = max_bytes
        self.file_bytes = file_bytes
        #: ``spooled``: records written; ``overflowed``: records refused by the
        #: disk cap or a write error; ``replayed``: records read back from
        #: claimed files that were delivered; ``torn``: torn records skipped
        #: (a crash in the middle of a write).
        self.stats: Dict[str, int] = {"spooled": 0, "overflowed": 0, "replayed": 0, "torn": 0}
        self._lock = threading.Lock()
        self._file: Optional[IO[bytes]] = None
        self._path: Optional[str] = None
        self._size = 0
        self._pid = os.getpid()
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"<Spool {self.directory!r}>"

    # -- writing ---------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> int:
        """Write ``records`` (each one line, no newline inside) durably; returns how many were written.

        Records that would exceed ``max_bytes``, or that an I/O error of any
        kind keeps from the disk, are not written: they are counted in
        ``stats["overflowed"]`` and logged. It never raises.
        """
        if not records:
            return 0
        with self._lock:
            self._check_fork()
            data = bytearray()
            written = 0
            reason = f"the spool is full (max_bytes={self.max_bytes})"
            try:
                room = self.max_bytes - self.used_bytes()
            except OSError as error:  # the directory cannot be listed: nothing is known to fit
                room, reason = 0, f"the spool directory cannot be read ({error})"
            for record in records:
                if len(data) + len(record) + 1 > room:
                    break  # and nothing after it either, so that order is kept
                data += record
                data += b"\n"
                written += 1
            if written:
                try:
                    file = self._writer()
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                except OSError as error:
                    reason = f"writing failed ({error})"
                    try:
                        self._seal_locked()
                    except OSError:
                        self._file, self._path = None, None
                    written = 0
                else:
                    self._size += len(data)
                    self.stats["spooled"] += written
                    if self._size >= self.file_bytes:
                        self._seal_locked()
            lost = len(records) - written
            if lost:
                self.stats["overflowed"] += lost
                _log.error(
                    "spool %s: %s; %d events not spooled and lost, %d since start",
                    self.directory,
                    reason,
                    lost,
                    self.stats["overflowed"],
                )
            return written

    def _writer(self) -> IO[bytes]:
        if self._file is None:
            stem = f"{time.time_ns():020d}-{self._pid}-{next(self._seq)}"
            path = os.path.join(self.directory, stem + ".spool")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._file, self._path, self._size = os.fdopen(fd, "ab"), path, 0
        return self._file

    def seal(self) -> None:
        """Close the file being written, so that it can be replayed."""
        with self._lock:
            self._check_fork()
            self._seal_locked()

    def _seal_locked(self) -> None:
        if self._file is not None:
            file, self._file, self._path = self._file, None, None
            file.close()  # releases the flock

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            # The parent's open file is the parent's: forget it (closing our
            # copy of the descriptor does not release the parent's lock).
            if self._file is not None:
                self._file.close()
            self._file, self._path, self._pid = None, None, pid

    # -- reading ---------------------------------------------------------

    def _names(self) -> List[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = [(m.group(1), name) for name in names if (m := _NAME.match(name))]
        return [name for _, name in sorted(found)]

    def used_bytes(self) -> int:
        """Bytes held by the directory's spool files, every process's together."""
        total = 0
        for name in self._names():
            try:
                total += os.stat(os.path.join(self.directory, name)).st_size
            except FileNotFoundError:
                pass
        return total

    def oldest_seconds(self) -> float:
        """Age of the oldest spool file (its name holds its creation time), 0 when there is none."""
        names = self._names()
        if not names:
            return 0.0
        return max(0.0, time.time() - int(names[0][:20]) / 1e9)

    def pending(self) -> int:
        """How many spool files are in the directory (including ones being written)."""
        return len(self._names())

    def claim(self) -> Optional[Claim]:
        """The oldest file no one is writing or replaying, claimed; ``None`` if there is none.

        This process's own open file is never claimed: call :meth:`seal` first.
        """
        own = self._path
        for name in self._names():
            path = os.path.join(self.directory, name)
            if path == own:
                continue
            try:
                file = open(path, "rb")
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                file.close()  # being written or replayed by someone alive
                continue
            claimed = os.path.join(self.directory, f"{name.partition('.')[0]}.claim-{os.getpid()}")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                file.close()  # someone else claimed it between our open and our lock
                continue
            return Claim(self, claimed, file)
        return None
