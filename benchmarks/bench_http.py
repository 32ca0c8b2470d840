"""Requests per second over real HTTP: `pixel-middleware serve` against a bare gunicorn app.

    python benchmarks/bench_http.py [--duration 10] [--rounds 3] [--connections 16]

Starts, in one run and with the same gunicorn settings (2 workers of
serve's worker class, gunicorn's sync worker telling an app with ``idle()``
when no request is waiting; the bare app has none, so runs as on plain sync):

  collector  ``pixel-middleware serve --workers 2`` with a ``file:`` sink
             writing one JSON line per event (as a log shipper would read;
             up to 16 lines to a write while requests keep coming)
  bare       a WSGI callable that only returns the GIF: the ceiling

and drives each with ``wrk`` (Debian package) on the RudderStack example
URL, alternating, ``--rounds`` times. Prints requests per second and p50/p99
latency for both, and the collector's share of the bare app's rate.
Target: collector >= 0.90x bare (the median round). Both servers, wrk and
this script share the machine's cores: compare the ratio, never the
absolute figures, across runs or machines.

Also prints the CPU time the two gunicorn workers spent per request (from
/proc): steadier than requests per second on a shared machine, and it shows
what the collector's pipeline costs inside a worker.

Checks that the collector really recorded what it answered: the events file
must hold a line for at least 99% of the requests wrk counted.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pixel_middleware.core.gif import GIF, GIF_HEADERS  # noqa: E402

PATH = "/pixel/v1/track"
QUERY = (
    "writeKey=WRITE_KEY&anonymousId=anon-123&context.locale=en-US"
    "&context.userAgent=Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)"
    "&context.page.path=%2Fproduct%2Fsku-123&context.page.url=https%3A%2F%2Fexample.com%2Fproduct%2Fsku-123"
    "&context.page.referrer=https%3A%2F%2Fexample.com%2F&context.page.title=Product%20Page"
    "&context.screen.width=1920&context.screen.height=1080&name=Product%20Page"
    "&event=Product%20Viewed&properties.productId=sku-123&properties.revenue=29.99"
)
WORKERS = 2


def bare_app(environ: dict, start_response) -> List[bytes]:
    """The ceiling: what any pixel endpoint must do at least (gunicorn imports this module for it)."""
    start_response("200 OK", GIF_HEADERS[:])
    return [GIF]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def start(kind: str, port: int, events_file: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT}
    if kind == "bare":
        # Here, not at the top: gunicorn imports this module for the bare app, which should load nothing more.
        from pixel_middleware.server.serve import SYNC_WORKER

        # serve's worker class (gunicorn's sync worker, which tells an app with idle() when no
        # request waits): the same worker settings for both; the bare app has no idle().
        command = [sys.executable, "-m", "gunicorn", "--chdir", os.path.join(ROOT, "benchmarks"),
                   "--workers", str(WORKERS), "--worker-class", SYNC_WORKER,
                   "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "bench_http:bare_app"]
    else:
        command = [sys.executable, "-m", "pixel_middleware", "serve", "--workers", str(WORKERS),
                   "--host", "127.0.0.1", "--port", str(port), "--sink", f"file:{events_file}"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def worker_cpu_seconds(master: int) -> float:
    """User plus system CPU time of ``master``'s child processes (gunicorn's workers), from /proc."""
    # Here, not at the top: gunicorn imports this module for the bare app, which should load nothing more.
    from tests.helpers import children

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in children(master):
        try:
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that exited since
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def wrk(url: str, duration: float, connections: int, script: Optional[str] = None,
        env: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """wrk's figures for ``url``; ``script`` is a Lua file for wrk's ``-s`` (``env`` its environment)."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
               "requests": float(re.search(r"(\d+) requests in", out).group(1))}
    for name, label in (("p50", "50%"), ("p99", "99%")):
        value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        figures[name] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{errors.group(1)} requests were not answered 200:\n{out}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per server per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    workdir = tempfile.mkdtemp(prefix="bench-http-")
    events_file = os.path.join(workdir, "events.jsonl")
    ports = {"bare": free_port(), "collector": free_port()}
    servers = {kind: start(kind, port, events_file) for kind, port in ports.items()}
    results: Dict[str, List[Dict[str, float]]] = {"bare": [], "collector": []}
    try:
        for kind, port in ports.items():
            wait_ready(f"http://127.0.0.1:{port}{PATH}?{QUERY}", servers[kind])
        print(f"gunicorn, {WORKERS} sync workers each; wrk -t2 -c{args.connections} -d{args.duration:g}s; "
              f"{os.cpu_count()} cores; RudderStack track example")
        recorded = 0
        for round_ in range(1, args.rounds + 1):
            for kind in ("bare", "collector"):  # alternated, so that a busy spell hits both alike
                cpu = worker_cpu_seconds(servers[kind].pid)
                figures = wrk(f"http://127.0.0.1:{ports[kind]}{PATH}?{QUERY}", args.duration, args.connections)
                figures["cpu_us"] = (worker_cpu_seconds(servers[kind].pid) - cpu) / figures["requests"] * 1e6
                results[kind].append(figures)
                if kind == "collector":
                    recorded += figures["requests"]
                print(f"  round {round_} {kind:<9} {figures['rps']:9.0f} req/s   p50 {figures['p50']:6.2f} ms"
                      f"   p99 {figures['p99']:6.2f} ms   worker CPU {figures['cpu_us']:4.0f} us/request")
    finally:
        for process in servers.values():
            stop(process)
    with open(events_file, "rb") as file:
        lines = sum(1 for _ in file)
    ratios = [c["rps"] / b["rps"] for b, c in zip(results["bare"], results["collector"])]
    median = statistics.median(ratios)
    print("\n  " + "  ".join(f"round {i}: {r:.2f}x" for i, r in enumerate(ratios, 1)))
    for kind in ("bare", "collector"):
        rows = results[kind]
        print(f"  {kind:<9} median {statistics.median(r['rps'] for r in rows):9.0f} req/s   "
              f"p50 {statistics.median(r['p50'] for r in rows):6.2f} ms   p99 {statistics.median(r['p99'] for r in rows):6.2f} ms   "
              f"worker CPU {statistics.median(r['cpu_us'] for r in rows):4.0f} us/request")
    print(f"  collector / bare = {median:.2f}x (median round; target >= 0.90x: {'ok' if median >= 0.90 else 'MISSED'})")
    print(f"  events recorded: {lines} lines for {recorded:.0f} requests counted by wrk (+ readiness probes)")
    shutil.rmtree(workdir, ignore_errors=True)
    if lines < 0.99 * recorded:
        raise SystemExit("the collector answered requests it did not record")


if __name__ == "__main__":
    main()
