"""The on-disk spool and the background worker, on their own."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from typing import Any, List

import pytest

from pixel_middleware.sinks.spool import Spool
from pixel_middleware.sinks.worker import BackgroundWorker


def replay_all(spool: Spool) -> List[bytes]:
    spool.seal()
    records: List[bytes] = []
    while (claim := spool.claim()) is not None:
        records += claim.records()
        claim.done()
    return records


def test_order_is_kept_across_batches_and_files(tmp_path: Any) -> None:
    spool = Spool(str(tmp_path), file_bytes=200)  # a new file every few batches
    sent = [f'{{"n":{i}}}'.encode() for i in range(300)]
    for start in range(0, 300, 7):
        assert spool.append(sent[start : start + 7]) == len(sent[start : start + 7])
    assert spool.pending() > 5
    assert replay_all(spool) == sent
    assert spool.pending() == 0
    assert spool.stats["spooled"] == spool.stats["replayed"] == 300


def test_cap_exceeded_is_counted_and_logged(tmp_path: Any, caplog: Any) -> None:
    spool = Spool(str(tmp_path), max_bytes=100)
    record = b"x" * 29  # 30 bytes with its newline: three fit
    with caplog.at_level(logging.ERROR, logger="pixel_middleware.spool"):
        assert spool.append([record] * 5) == 3
        assert spool.append([record]) == 0
    assert spool.stats["overflowed"] == 3 and spool.stats["spooled"] == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "max_bytes=100" in errors[0] and "2 events not spooled" in errors[0]
    assert "3 since start" in errors[1]
    assert spool.used_bytes() == 90
    assert replay_all(spool) == [record] * 3
    assert spool.append([record]) == 1  # room again once replayed
    spool.seal()


def test_torn_record_is_skipped_and_counted(tmp_path: Any) -> None:
    spool = Spool(str(tmp_path))
    spool.append([b'{"a":1}', b'{"a":2}'])
    spool.seal()
    (name,) = os.listdir(tmp_path)
    with open(tmp_path / name, "ab") as file:
        file.write(b'{"a":3')  # as if killed in the middle of a write
    assert replay_all(spool) == [b'{"a":1}', b'{"a":2}']
    assert spool.stats["torn"] == 1


def test_a_file_being_written_is_not_claimed_until_its_writer_dies(tmp_path: Any) -> None:
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pixel_middleware.sinks.spool import Spool\n"
            "spool = Spool(sys.argv[1])\n"
            "spool.append([b'{\"from\":\"writer\"}'])\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        spool = Spool(str(tmp_path))
        claim = spool.claim()
        if claim is not None:
            claim.release()
        assert claim is None, "claimed a file its live writer holds"
        writer.send_signal(signal.SIGKILL)
        writer.wait(5)
        assert replay_all(spool) == [b'{"from":"writer"}']  # the dead writer's lock went with it
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(5)
        if writer.stdout is not None:
            writer.stdout.close()


TWO_PROCESSES = textwrap.dedent(
    """
    import json, sys, time
    from pixel_middleware.sinks.spool import Spool

    directory, name, out = sys.argv[1:4]
    spool = Spool(directory, file_bytes=2000)
    for start in range(0, 2000, 10):
        spool.append([json.dumps({"p": name, "n": n}).encode() for n in range(start, start + 10)])
        if start % 200 == 0:
            spool.seal()
    spool.seal()
    time.sleep(0.2)  # let the other process finish writing too, then both replay at once
    with open(out, "w") as file:
        while (claim := spool.claim()) is not None:
            for record in claim.records():
                file.write(record.decode() + "\\n")
            claim.done()
    """
)


def test_two_processes_on_one_directory_neither_corrupt_nor_double_replay(tmp_path: Any) -> None:
    directory = tmp_path / "spool"
    outs = [tmp_path / "a.out", tmp_path / "b.out"]
    procs = [
        subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, str(directory), name, str(out)])
        for name, out in zip("ab", outs)
    ]
    for proc in procs:
        assert proc.wait(30) == 0
    seen = Counter()
    for out in outs:
        order = {"a": [], "b": []}
        for line in out.read_text().splitlines():
            record = json.loads(line)  # a corrupt line would not parse
            seen[(record["p"], record["n"])] += 1
            order[record["p"]].append(record["n"])
        # Each replayer claims oldest first, so what it read of each writer is in order.
        assert all(numbers == sorted(numbers) for numbers in order.values())
    assert len(seen) == 4000 and set(seen.values()) == {1}, "lost or replayed twice"
    assert os.listdir(directory) == []


def test_worker_survives_a_failing_batch_and_flushes(caplog: Any) -> None:
    handled: List[List[int]] = []

    def handler(batch: List[int]) -> None:
        if 13 in batch:
            raise RuntimeError("boom")
        if batch:
            handled.append(batch)

    worker = BackgroundWorker(handler, batch_size=5, linger=0.01, name="pixel-middleware-test")
    try:
        with caplog.at_level(logging.ERROR, logger="pixel_middleware"):
            for i in range(20):
                assert worker.submit(i)
            assert worker.flush(5)
        assert any("handling a batch" in r.getMessage() for r in caplog.records)
        assert sum(len(b) for b in handled) >= 15 and max(len(b) for b in handled) <= 5
        assert worker.submit(99) and worker.flush(5)
        assert handled[-1] == [99]  # the loop lived on
    finally:
        assert worker.stop(5)


def test_worker_queue_is_bounded_and_flush_times_out() -> None:
    release = threading.Event()
    worker = BackgroundWorker(lambda batch: release.wait(5), queue_size=3, batch_size=1, name="pixel-middleware-test")
    try:
        assert worker.submit(0)
        time.sleep(0.1)  # taken by the thread, which now waits
        assert all(worker.submit(i) for i in (1, 2, 3))
        assert not worker.submit(4), "a full queue must refuse, not block"
        started = time.monotonic()
        assert not worker.flush(0.2)
        assert time.monotonic() - started < 1
        release.set()
        assert worker.flush(5)
    finally:
        release.set()
        assert worker.stop(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_worker_restarts_in_a_forked_child(tmp_path: Any) -> None:
    out = tmp_path / "child.out"
    handled: List[Any] = []
    worker = BackgroundWorker(lambda batch: handled.extend(batch), name="pixel-middleware-test")
    try:
        worker.submit("parent")
        assert worker.flush(5)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                worker.submit("child")
                worker.flush(5)
                out.write_text(json.dumps(handled))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert json.loads(out.read_text()) == ["parent", "child"]
        assert handled == ["parent"]
    finally:
        assert worker.stop(5)
