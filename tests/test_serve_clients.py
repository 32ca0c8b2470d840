"""`serve` facing the internet: slow and idle clients, oversized requests, HTTPS and the drain at stop (issue 19)."""
from __future__ import annotations

import http.client
import json
import resource
import signal
import socket
import ssl
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from pixel_middleware.core.gif import GIF
from tests.helpers import ROOT, Process, free_port, wait_until

WRITE_KEY = "SECRET-WK-4242"
PIXEL = f"/v1/pixel/track?wk={WRITE_KEY}&e=Opened&uid=u1"


def serve(start: Any, *flags: str, env: Any = None) -> Tuple[Process, int]:
    port = free_port()
    process = start(["-m", "pixel_middleware", "serve", "--port", str(port), *flags], port, env=env)
    return process, port


def timed_pixel(port: int, mid: str) -> float:
    """Seconds for one pixel on a new connection, as an email client fetches it; fails unless it is the GIF."""
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"{PIXEL}&mid={mid}")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == GIF
    finally:
        connection.close()
    return time.perf_counter() - began


class SlowLoris:
    """``count`` connections each sending one byte of a request's headers a second, reconnecting when cut off."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.sent = self.reconnects = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        request = f"GET {PIXEL} HTTP/1.1\r\nHost: x\r\nX-Padding: {'a' * 4000}\r\n\r\n".encode()
        conns: List[List[Any]] = [[self._connect(), 0] for _ in range(self.count)]
        while not self.stop.wait(1.0):
            for entry in conns:
                sock, at = entry
                try:
                    sock.send(request[at % (len(request) - 4) : at % (len(request) - 4) + 1])
                    entry[1] += 1
                    self.sent += 1
                except OSError:  # cut off by the header timeout: come back, as an attacker would
                    sock.close()
                    entry[0], entry[1] = self._connect(), 0
                    self.reconnects += 1
        for sock, _ in conns:
            sock.close()


def test_200_slow_clients_for_30_s_leave_every_pixel_answered_within_50_ms(start: Any, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    _, port = serve(start, "--workers", "2", "--sink", f"file:{events}", "--header-timeout", "10")
    timed_pixel(port, "warm")
    attack = SlowLoris(port, 200)
    attack.thread.start()
    times: List[float] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            times.append(timed_pixel(port, f"n{len(times)}"))
            time.sleep(0.05)
    finally:
        attack.stop.set()
        attack.thread.join(10)
    assert attack.sent > 200 * 25, attack.sent  # the attack really ran all along
    assert attack.reconnects >= 200, attack.reconnects  # and the header timeout cut every connection off
    p99 = statistics.quantiles(times, n=100)[98]
    assert len(times) > 300 and p99 < 0.050, (len(times), p99, max(times))
    lines = lambda: len(events.read_text().splitlines())  # noqa: E731
    assert wait_until(lambda: lines() == len(times) + 1, 10), (lines(), len(times) + 1)


def test_1000_idle_keep_alive_connections_do_not_stop_new_clients(start: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    _, port = serve(start, "--workers", "2", "--sink", "memory:")
    idle = []
    try:
        for i in range(1000):  # each has had its pixel and is kept open, as a browser keeps it
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"GET {PIXEL}&mid=i{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            idle.append(sock)
        times = [timed_pixel(port, f"n{i}") for i in range(100)]
        assert max(times) < 0.5 and statistics.median(times) < 0.02, (statistics.median(times), max(times))
        # The idle ones are still served when they speak again.
        idle[0].sendall(f"GET {PIXEL}&mid=again HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert idle[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in idle:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_header_timeout(start: Any) -> None:
    _, port = serve(start, "--workers", "1", "--sink", "memory:", "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {PIXEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert 0.5 < time.monotonic() - began < 5


@pytest.mark.parametrize("size, status", [(7000, 200), (15000, 200), (17000, 431), (200_000, 431)])
def test_request_line_and_headers_over_the_limit_get_431(start: Any, size: int, status: int) -> None:
    _, port = serve(start, "--workers", "1", "--sink", "memory:", "--max-header-size", "16384")
    for where in ("query", "header"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            if where == "query":  # a long Segment pixel is a long request line
                raw = f"GET {PIXEL}&properties.pad={'p' * size} HTTP/1.1\r\nHost: x\r\n\r\n"
            else:
                raw = f"GET {PIXEL} HTTP/1.1\r\nHost: x\r\nCookie: {'c' * size}\r\n\r\n"
            sock.sendall(raw.encode())
            assert sock.recv(100).startswith(f"HTTP/1.1 {status}".encode()), (where, size)


def test_too_many_headers_get_431(start: Any) -> None:
    _, port = serve(start, "--workers", "1", "--sink", "memory:")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"GET {PIXEL} HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: 1\r\n" for i in range(150))
                      + "\r\n").encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 431")


def test_drain_keeps_answering_pixels_while_readyz_says_503_then_stops(start: Any, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    ops_port = free_port()
    process, port = serve(start, "--workers", "2", "--sink", f"file:{events}", "--ops-port", str(ops_port),
                          env={"PIXEL_DRAIN": "3"})
    readyz = f"http://127.0.0.1:{ops_port}/readyz"

    def ready() -> int:
        try:
            with urllib.request.urlopen(readyz, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    assert wait_until(lambda: ready() == 200, 30)
    process.proc.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert wait_until(lambda: ready() == 503, 2)
    with urllib.request.urlopen(readyz.replace("readyz", "healthz"), timeout=5) as answer:
        assert answer.status == 200  # alive: a liveness probe must not restart a draining collector
    answered = 0
    while process.proc.poll() is None and time.monotonic() - stopped_at < 2.5:
        timed_pixel(port, f"d{answered}")  # fails the test unless every one is answered
        answered += 1
    assert answered > 20 and process.proc.poll() is None  # answered all through the drain
    assert process.proc.wait(30) == 0
    assert 3 <= time.monotonic() - stopped_at < 20
    ids = {json.loads(line)["messageId"] for line in events.read_text().splitlines()}
    assert {f"d{i}" for i in range(answered)} <= ids
    assert "draining for 3 s" in process.output()


def test_sigint_stops_at_once_whatever_the_drain(start: Any) -> None:
    process, _ = serve(start, "--workers", "1", "--sink", "memory:", env={"PIXEL_DRAIN": "30"})
    time.sleep(1)
    began = time.monotonic()
    process.proc.send_signal(signal.SIGINT)
    assert process.proc.wait(15) == 0 and time.monotonic() - began < 10


def test_https_with_a_certificate_made_here(start: Any, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    events = tmp_path / "events.jsonl"
    process, port = serve(start, "--workers", "1", "--sink", f"file:{events}", "--tls-cert", str(cert_file),
                          env={"PIXEL_TLS_KEY": str(key_file)})  # the key from the environment, as a secret mount gives it
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"https://127.0.0.1:{port}{PIXEL}&mid=tls1"
    assert wait_until(lambda: _https(url, context), 15) == (200, GIF)
    assert wait_until(lambda: events.exists() and "tls1" in events.read_text(), 10)
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust the CA refuses the server
        _https(url, ssl.create_default_context())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # plain HTTP on the TLS port
        sock.sendall(f"GET {PIXEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            assert not sock.recv(100).startswith(b"HTTP/1.1 200")
        except ConnectionResetError:
            pass
    assert f"https://127.0.0.1:{port}/" in process.output()


def _https(url: str, context: ssl.SSLContext) -> Tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10, context=context)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("flags, env, named", [
    (["--tls-cert", "cert.pem"], {}, "--tls-cert / PIXEL_TLS_CERT needs --tls-key / PIXEL_TLS_KEY"),
    ([], {"PIXEL_TLS_KEY": "key.pem"}, "--tls-key / PIXEL_TLS_KEY needs --tls-cert / PIXEL_TLS_CERT"),
    (["--tls-cert", "missing.pem", "--tls-key", "missing.pem"], {}, "--tls-cert / --tls-key cannot be loaded"),
    (["--tls-cert", " "], {}, "--tls-cert / PIXEL_TLS_CERT is blank"),
])
def test_tls_misconfiguration_stops_serve_naming_the_setting(tmp_path: Path, flags: List[str], env: Any,
                                                              named: str) -> None:
    import os
    import subprocess

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    done = subprocess.run([sys.executable, "-m", "pixel_middleware", "serve", "--port", str(free_port()), *flags],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})
    assert done.returncode != 0 and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
