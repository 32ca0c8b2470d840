"""`serve` on real granian: SIGTERM or Ctrl-C mid-stream loses nothing that was answered."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Set

import pytest
from sinkhelpers import Endpoint, wait_until

from tests.helpers import Process, children, free_port


def pixel(port: int, mid: str) -> bool:
    """Whether the collector answered the pixel with its GIF."""
    url = f"http://127.0.0.1:{port}/v1/pixel/track?wk=k&e=Opened&uid=u-{mid}&mid={mid}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status == 200 and answer.read().startswith(b"GIF89a")
    except (OSError, urllib.error.URLError):
        return False  # refused or reset while stopping: not answered, not promised


@pytest.mark.parametrize("stop", ["SIGTERM", "Ctrl-C"])
def test_a_stop_mid_stream_then_restart_delivers_every_answered_pixel(endpoint: Endpoint, tmp_path: Any, stop: str) -> None:
    """2,000 pixels through `serve --workers 2` to a slow HttpSink; stopped after about half; restart.

    Ctrl-C sends SIGINT to the whole process group: the master and each worker.
    """
    spool = tmp_path / "spool"
    sink = f"{endpoint.url}#batch_size=20&linger=0.05&retries=0&timeout=5&retry_backoff=0.2&retry_backoff_max=0.5&spool_dir={spool}"
    endpoint.delay = 0.5  # deliberately slow: events pile up in the workers' queues

    def serve(port: int) -> Process:  # the sink from the environment, as an operator would set it
        argv = [sys.executable, "-m", "pixel_middleware", "serve", "--workers", "2", "--port", str(port),
                "--shutdown-timeout", "2", "--no-metrics"]
        return Process(argv, port, env={"PIXEL_SINK": sink})

    port = free_port()
    first = serve(port)
    answered: Set[str] = set()
    lock = threading.Lock()
    stopped = threading.Event()
    signalled_at = [0.0]

    def send(mid: str) -> None:
        if pixel(port, mid):
            with lock:
                answered.add(mid)
                if len(answered) == 1000:
                    if stop == "SIGTERM":
                        first.proc.send_signal(signal.SIGTERM)
                    else:
                        for pid in [first.proc.pid, *children(first.proc.pid)]:
                            os.kill(pid, signal.SIGINT)
                    signalled_at[0] = time.monotonic()
                    stopped.set()

    try:
        first.wait_ready()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, [f"m{i:04d}" for i in range(2000)]))
        assert stopped.is_set()
        assert first.proc.wait(60) == 0, first.output()
        took = time.monotonic() - signalled_at[0]
    finally:
        first.stop()
    output = first.output()
    assert "Traceback" not in output, output
    # A worker that missed its stop signal answers until granian kills it, 22 s on (--shutdown-timeout + 20),
    # and its events go with it. (granian's own "Killing worker ... refused to gracefully stop" line is no
    # proof: its check races the thread that reaps the worker, and may follow a worker that stopped.)
    assert took < 15, (took, output)
    assert 1000 <= len(answered) < 2000, "SIGTERM came after every pixel was sent"
    delivered_before = {e["messageId"] for e in endpoint.events(200)}
    assert delivered_before < answered, "the test needs events left in memory at SIGTERM"
    assert "spooled for the next start" in output

    endpoint.delay = 0.0
    port = free_port()
    second = serve(port)
    try:
        second.wait_ready()
        assert wait_until(lambda: {e["messageId"] for e in endpoint.events(200)} >= answered, 30), (
            len(answered - {e["messageId"] for e in endpoint.events(200)}), second.output())
    finally:
        second.stop()
    delivered: List[str] = [e["messageId"] for e in endpoint.events(200)]
    assert set(delivered) >= answered  # at least once: a batch in flight at SIGTERM may come twice


def test_sigterm_under_load_with_a_file_sink_then_restart_keeps_every_answered_pixel(tmp_path: Any) -> None:
    """2,000 pixels from 8 clients through `serve --workers 2` to a file; SIGTERM after about half; restart."""
    events = tmp_path / "events.jsonl"

    def serve(port: int) -> Process:
        return Process([sys.executable, "-m", "pixel_middleware", "serve", "--workers", "2", "--port", str(port),
                        "--sink", f"file:{events}"], port)

    port = free_port()
    first = serve(port)
    answered: Set[str] = set()
    lock = threading.Lock()

    def send(mid: str) -> None:
        if pixel(port, mid):
            with lock:
                answered.add(mid)
                if len(answered) == 1000:
                    first.proc.send_signal(signal.SIGTERM)

    try:
        first.wait_ready()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, [f"f{i:04d}" for i in range(2000)]))
        assert first.proc.wait(60) == 0, first.output()
    finally:
        first.stop()
    assert 1000 <= len(answered) < 2000, "SIGTERM came after every pixel was sent"
    port = free_port()
    second = serve(port)  # the next start appends to the same file
    try:
        second.wait_ready()
        assert pixel(port, "after-restart")
    finally:
        second.stop()
    written = [json.loads(line)["messageId"] for line in events.read_text().splitlines()]
    assert set(written) >= answered | {"after-restart"}
    assert len(written) == len(set(written))  # every line whole, none twice


_SLEEPING_MAIN_THREAD = textwrap.dedent("""
    import signal, sys, threading, time
    from pixel_middleware.server.worker import wake_main_thread_on_stop
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    if sys.argv[1] == "relay":
        wake_main_thread_on_stop()
    other = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    other.start()
    print("ready", flush=True)
    sys.stdin.readline()
    signal.pthread_kill(other.ident, signal.SIGTERM)  # the kernel's choice when the main thread has one pending
    stop.wait()  # as granian's worker waits: on a lock, no timeout
    print("stopped", flush=True)
""")


@pytest.mark.parametrize("relay", [True, False])
def test_a_stop_signal_run_by_another_thread_still_wakes_the_workers_main_thread(relay: bool) -> None:
    """What made 1 Ctrl-C in 3 leave a worker answering until killed; without the relay the main thread sleeps on."""
    with subprocess.Popen([sys.executable, "-c", _SLEEPING_MAIN_THREAD, "relay" if relay else "bare"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline() == "ready\n"
            child.stdin.write("go\n")
            child.stdin.flush()
            if relay:
                assert child.wait(10) == 0
                assert child.stdout.read() == "stopped\n"
            else:
                with pytest.raises(subprocess.TimeoutExpired):
                    child.wait(1.5)
        finally:
            child.kill()
