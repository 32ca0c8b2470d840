"""Requests per second over real HTTP: `pixel-middleware serve` beside nginx's empty_gif, the deployment it replaces.

    python benchmarks/bench_http.py [--duration 10] [--rounds 3] [--connections 16] [--workers 2]

Starts, in one run, and drives each in turn with ``wrk -t2`` on the
RudderStack example URL, alternating, ``--rounds`` times, once on keep-alive
connections and once with ``Connection: close`` (as email clients and
browsers fetching one pixel mostly come):

  nginx      nginx (Debian ``nginx-light``) with ``empty_gif`` and an access
             log line per request to a file: what teams deploy at scale,
             shipping the log to Kafka
  bare       a WSGI callable that only returns the GIF, on granian as serve
             runs it (``--workers``, one Python thread each): serve's ceiling
  answer     ``serve`` itself with its recording switched off in this
             benchmark (:func:`answer_only_serve`): what answering a pixel
             costs serve, so that the rest of serve's cost is recording's
  gunicorn   the same bare app on gunicorn's sync workers: the ceiling
             serve had before it moved to granian
  serve      ``pixel-middleware serve --workers N`` with a ``file:`` sink and
             metrics on (its defaults otherwise)

Prints requests per second, p50/p99 latency, the CPU time the server's
processes spent per request (nginx's workers, or granian's and gunicorn's;
steadier than the rate on a shared machine, whose other tenants take the
cores at times), the whole machine's CPU time per request (wrk's and the
kernel's included: all of it is what the cores must give each request) and
each server's share of nginx's rate (and serve's of answer's and bare's),
the median round against the targets: serve at least 0.5x nginx on new
connections and 0.35x on keep-alive. Then the budget the target leaves for
recording an event: the machine's CPU per request at the target rate, less
what answering alone took (``answer``), beside what recording took (serve's
less answer's). The servers, wrk and this script share the machine's cores:
compare ratios, never absolute figures, across runs or machines. ``--workers`` sets the worker processes
of bare, gunicorn and serve (nginx keeps 2; on the 2-core development
machine 1 or 2 made no difference to it): on a machine whose cores wrk
shares, granian's single worker may do better than one per core.

Checks that serve recorded what it answered: the events file must hold a
line for every request wrk counted (wrk does not count requests still in
flight when it stops, so there may be more lines, never fewer).
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
    """The ceiling: what any pixel endpoint must do at least (granian and gunicorn import this module for it)."""
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


NGINX_CONF = """worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{ listen 127.0.0.1:{port}; location / {{ empty_gif; }} }}
}}
"""
SERVERS = ("nginx", "bare", "answer", "gunicorn", "serve")


def start(kind: str, port: int, events_file: str, workers: int = WORKERS) -> subprocess.Popen:
    """``kind`` (one of :data:`SERVERS`) listening on ``port``; serve writes its events to ``events_file``."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    bench = os.path.join(ROOT, "benchmarks")
    if kind == "nginx":
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf_dir = tempfile.mkdtemp(prefix="bench-nginx-")
        with open(os.path.join(conf_dir, "nginx.conf"), "w") as file:
            file.write(NGINX_CONF.format(dir=conf_dir, port=port))
        command = [nginx, "-c", os.path.join(conf_dir, "nginx.conf"), "-g", "daemon off;"]
    elif kind == "bare":
        command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", str(workers),
                   "--blocking-threads", "1", "--no-ws", "--host", "127.0.0.1", "--port", str(port),
                   "--working-dir", bench, "--log-level", "warning", "bench_http:bare_app"]
    elif kind == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "--chdir", bench, "--workers", str(workers),
                   "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "bench_http:bare_app"]
    else:
        serve = ["serve", "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port), "--drain", "0"]
        if kind == "serve":
            command = [sys.executable, "-m", "pixel_middleware", *serve, "--sink", f"file:{events_file}"]
        else:  # the same serve, recording nothing: its sink file stays empty
            command = [sys.executable, "-c", "import sys, bench_http; sys.exit(bench_http.answer_only_serve())",
                       *serve, "--sink", f"file:{events_file}.answer-only"]
            env["PYTHONPATH"] = os.pathsep.join((ROOT, bench))
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def answer_only_serve() -> int:
    """``pixel-middleware serve`` with ``sys.argv``'s arguments, its workers dropping every batch they hold.

    Everything else is serve's own (granian and its settings, the worker
    app, metrics): the pixels are answered and held as always, and only
    :meth:`~pixel_middleware.server.batches.Batches._record` does nothing.
    The workers are forked from this process and inherit it.
    """
    from pixel_middleware.server.batches import Batches
    from pixel_middleware.server.cli import main as cli

    Batches._record = lambda self, batch: None  # type: ignore[method-assign]
    return cli(sys.argv[1:])


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as file:
        ticks = [int(field) for field in file.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def worker_cpu_seconds(master: int) -> float:
    """User plus system CPU time of ``master``'s child processes (the workers), from /proc."""
    # Here, not at the top: the servers import this module for the bare app, which should load nothing more.
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
        env: Optional[Dict[str, str]] = None, header: Optional[str] = None) -> Dict[str, float]:
    """wrk's figures for ``url``; ``script`` is a Lua file for wrk's ``-s`` (``env`` its environment)."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    if header:
        command[1:1] = ["-H", header]
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
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per server, mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=WORKERS, help="worker processes of bare, gunicorn and serve")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install wrk nginx-light)")

    workdir = tempfile.mkdtemp(prefix="bench-http-")
    events_file = os.path.join(workdir, "events.jsonl")
    ports = {kind: free_port() for kind in SERVERS}
    servers = {kind: start(kind, port, events_file, args.workers) for kind, port in ports.items()}
    modes = {"keep-alive": None, "close": "Connection: close"}
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = {m: {k: [] for k in SERVERS} for m in modes}
    recorded = 0.0
    try:
        for kind, port in ports.items():
            wait_ready(f"http://127.0.0.1:{port}{PATH}?{QUERY}", servers[kind])
        print(f"{args.workers} workers each (nginx 2); wrk -t2 -c{args.connections} -d{args.duration:g}s; {os.cpu_count()} cores; "
              "RudderStack track example")
        for round_ in range(1, args.rounds + 1):
            for mode, header in modes.items():
                for kind in SERVERS:  # alternated, so that a busy spell hits every server alike
                    cpu, busy = worker_cpu_seconds(servers[kind].pid), machine_busy_seconds()
                    figures = wrk(f"http://127.0.0.1:{ports[kind]}{PATH}?{QUERY}", args.duration, args.connections,
                                  header=header)
                    figures["machine_us"] = (machine_busy_seconds() - busy) / figures["requests"] * 1e6
                    figures["cpu_us"] = (worker_cpu_seconds(servers[kind].pid) - cpu) / figures["requests"] * 1e6
                    results[mode][kind].append(figures)
                    if kind == "serve":
                        recorded += figures["requests"]
                    print(f"  round {round_} {mode:<10} {kind:<9} {figures['rps']:9.0f} req/s   "
                          f"p50 {figures['p50']:6.2f} ms   p99 {figures['p99']:6.2f} ms   "
                          f"worker CPU {figures['cpu_us']:6.1f} us/request   machine {figures['machine_us']:6.1f} us")
    finally:
        for process in servers.values():
            stop(process)
    with open(events_file, "rb") as file:
        lines = sum(1 for _ in file)
    targets = {"keep-alive": 0.35, "close": 0.5}
    for mode in modes:
        rows = results[mode]

        def median(kind: str, figure: str) -> float:
            return statistics.median(r[figure] for r in rows[kind])

        def rate_ratio(kind: str, base: str) -> float:
            """The median round's ratio: both were driven in the same round, by the same load on the host."""
            return statistics.median(r["rps"] / b["rps"] for r, b in zip(rows[kind], rows[base]))

        print(f"\n  {mode}: median of {args.rounds} rounds")
        for kind in SERVERS:
            print(f"    {kind:<9} {median(kind, 'rps'):9.0f} req/s   p50 {median(kind, 'p50'):6.2f} ms   "
                  f"p99 {median(kind, 'p99'):6.2f} ms   {rate_ratio(kind, 'nginx'):.2f}x nginx   "
                  f"worker CPU {median(kind, 'cpu_us'):6.1f} us/request   machine {median(kind, 'machine_us'):6.1f} us")
        ratio = rate_ratio("serve", "nginx")
        print(f"    serve / nginx = {ratio:.3f}x (target >= {targets[mode]:.2f}x: "
              f"{'ok' if ratio >= targets[mode] else 'MISSED'})")
        print(f"    serve / answer = {rate_ratio('serve', 'answer'):.2f}x (serve's rate against its own answer path's)")
        print(f"    serve / bare = {rate_ratio('serve', 'bare'):.2f}x (against the bare app on the same server: "
              "the share of granian's rate that recording leaves)")
        # The cores busy during nginx's rounds (all of them: the machine is saturated), shared by target x its rate.
        allowed = median("nginx", "machine_us") / targets[mode]
        answering = median("answer", "machine_us")
        recording = statistics.median(s["machine_us"] - a["machine_us"] for s, a in zip(rows["serve"], rows["answer"]))
        print(f"    at {targets[mode]:.2f}x nginx a request may take {allowed:.1f} us of the machine's CPU; answering "
              f"alone took {answering:.1f}, leaving {allowed - answering:.1f} us for recording an event, "
              f"which took {recording:.1f} us")
    print(f"\n  events recorded: {lines} lines for {recorded:.0f} requests counted by wrk (+ readiness probes)")
    shutil.rmtree(workdir, ignore_errors=True)
    if lines < recorded:
        raise SystemExit("serve answered requests it did not record")


if __name__ == "__main__":
    main()
