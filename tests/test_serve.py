"""`pixel-middleware serve` as an operator runs it: real granian workers, the environment, the ops port."""
from __future__ import annotations

import json
import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pixel_middleware.core.gif import GIF
from tests.helpers import CHROMIUM_FLAGS, ROOT, Process, children, free_port, wait_until


WRITE_KEY = "SECRET-WK-31337"


def get(url: str, **headers: str) -> Tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def pixel(port: int, name: str, mid: str, **headers: str) -> int:
    status, body = get(f"http://127.0.0.1:{port}/v1/pixel/track?wk={WRITE_KEY}&e={name}&uid=u-{mid}&mid={mid}", **headers)
    assert body == GIF
    return status


def print_config(*flags: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    return subprocess.run([sys.executable, "-m", "pixel_middleware", "serve", "--print-config", *flags],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})


def test_print_config_flags_win_over_the_environment_and_secrets_are_masked() -> None:
    done = print_config(
        "--port", "9001", "--write-key", "flag-key-1",
        PIXEL_PORT="9000", PIXEL_WORKERS="3", PIXEL_DNT="yes", PIXEL_SIGNING_KEY="sign-secret-1",
        PIXEL_SINK="kafka://h1:9092,h2:9092/raw?sasl.password=kafka-secret-1,https://u:http-secret-1@x.test/v1/batch,"
                   "https://x.test/in?sv=2020&sig=sas-secret-1#auth=bob:frag-secret-1&header.X-Team=hdr-secret-1&gzip=1",
        PIXEL_WRITE_KEYS="env-key-1,env-key-2", PIXEL_DEDUP="redis://:redis-secret-1@127.0.0.1:6379/0",
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert rows["PIXEL_PORT"].split()[1:] == ["9001", "(flag)"]
    assert rows["PIXEL_WORKERS"].split()[1:] == ["3", "(env)"]
    assert rows["PIXEL_DNT"].split()[1:] == ["True", "(env)"]
    assert rows["PIXEL_IP"].split()[1:] == ["full", "(default)"]
    # Each sink as its label: scheme, hosts (Kafka's topic), and a digest of the rest that keeps two apart.
    labels = re.findall(r"(\S+ #[0-9a-f]{8})", rows["PIXEL_SINK"])
    assert labels[0].startswith("kafka://h1:9092,h2:9092/raw #") and len(labels) == 3
    assert labels[1].startswith("https://x.test #") and labels[2].startswith("https://x.test #") and labels[1] != labels[2]
    assert rows["PIXEL_WRITE_KEYS"].endswith("(flag)")
    for secret in ("flag-key-1", "env-key", "sign-secret-1", "kafka-secret-1", "http-secret-1", "redis-secret-1",
                   "sas-secret-1", "frag-secret-1", "hdr-secret-1"):
        assert secret not in done.stdout + done.stderr


def test_serve_help_names_each_options_environment_variable() -> None:
    from pixel_middleware.server.config import SERVE_OPTIONS

    done = subprocess.run([sys.executable, "-m", "pixel_middleware", "serve", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    # One block per option: its flags, then its help (on the same line or the next ones).
    blocks = {block.split()[0].rstrip(","): block for block in re.split(r"\n(?=  -)", done.stdout)}
    for option in SERVE_OPTIONS:  # the README sends operators here for the names
        assert f"${option.env}" in blocks[option.flag], (option.flag, blocks[option.flag])


@pytest.mark.parametrize("name, value", [("PIXEL_PORT", "eighty"), ("PIXEL_DNT", "perhaps"), ("PIXEL_IP", "half"),
                                         ("PIXEL_WORKERS", "0"), ("PIXEL_PORT", "70000"),
                                         ("PIXEL_SHUTDOWN_TIMEOUT", "nan"), ("PIXEL_PROXIES", "-1")])
def test_a_bad_environment_value_names_the_variable(name: str, value: str) -> None:
    done = print_config(**{name: value})
    assert done.returncode == 2 and name in done.stderr and value not in done.stderr


@pytest.mark.parametrize("flags, env", [((), {"PIXEL_OPS_HOST": ""}), ((), {"PIXEL_HOST": " "}),
                                         (("--ops-host", ""), {})])
def test_an_empty_host_is_refused_rather_than_bound_to_every_interface(flags: Tuple[str, ...], env: Dict[str, str]) -> None:
    done = print_config(*flags, PIXEL_OPS_PORT="9100", **env)
    assert done.returncode == 2 and "must name an address" in done.stderr and done.stdout == ""


def test_an_out_of_range_flag_is_refused_before_the_server_starts() -> None:
    done = print_config("--workers", "0")  # no worker at all, silently
    assert done.returncode == 2 and "--workers" in done.stderr and done.stdout == ""


def test_a_sink_that_cannot_be_built_stops_serve_with_one_line_and_no_credentials() -> None:
    port = free_port()
    # Not start(): serve may be gone before anyone could connect to it, which is what is tested.
    process = Process([sys.executable, "-m", "pixel_middleware", "serve", "--workers", "2", "--port", str(port),
                       "--sink", "kttps://alice:typo-secret-1@x.test/in",
                       "--sink", "https://x.test/in#auth=bob:frag-secret-2"], port)
    try:
        assert process.proc.wait(60) == 3  # a worker failed to boot: serve stops, no respawn loop
    finally:
        process.stop()
    output = process.output()
    assert "cannot start: ValueError: unknown sink URL scheme 'kttps'" in output, output
    assert "Traceback" not in output and "typo-secret-1" not in output and "frag-secret-2" not in output, output


def scrape(ops: str) -> Dict[Any, float]:
    status, body = get(ops + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def counted(metrics_dir: Path, pid: int, key: Any) -> float:
    """One worker's own figure: its counter file alone, added up as prometheus_client adds all of them."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    alone = metrics_dir.parent / f"alone-{pid}"
    alone.mkdir(exist_ok=True)
    if (metrics_dir / f"counter_{pid}.db").exists():
        shutil.copy(metrics_dir / f"counter_{pid}.db", alone)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return next((s.value for f in registry.collect() for s in f.samples if (s.name, tuple(sorted(s.labels.items()))) == key), 0.0)


def test_metrics_survive_12_worker_restarts_in_a_directory_that_does_not_grow(start: Any, tmp_path: Path) -> None:
    """prometheus_client keeps a file per process: dead workers' counters are folded into one archive.

    The two workers are killed in turn: granian stops the whole server when
    the worker it has just respawned dies again within 5.5 s (a crash loop).
    """
    port, ops_port = free_port(), free_port()
    process = start(["-m", "pixel_middleware", "serve", "--workers", "2", "--port", str(port),
                     "--ops-port", str(ops_port), "--sink", "memory:"], port, env={"TMPDIR": str(tmp_path)})
    ops = f"http://127.0.0.1:{ops_port}"
    [metrics_dir] = tmp_path.glob("pixel-serve-*/metrics")
    key = ("pixel_events_total", (("dialect", "compact"), ("type", "track")))
    master, sent, seen, sizes = process.proc.pid, 0, [], []
    assert wait_until(lambda: len(children(master)) == 2, 30)
    newest = None
    for restart in range(12):
        for _ in range(3):
            assert pixel(port, "Opened", f"r{sent}") == 200
            sent += 1
        assert wait_until(lambda: scrape(ops).get(key) == sent, 15), (restart, scrape(ops))
        seen.append(scrape(ops)[key])
        before = children(master)
        worker = next(pid for pid in before if pid != newest)
        os.kill(worker, signal.SIGKILL)
        respawned = lambda: (lambda now: len(now) == 2 and worker not in now and now)(children(master))  # noqa: E731
        [newest] = set(wait_until(respawned, 30) or ()) - set(before)
        assert wait_until(lambda: not (metrics_dir / f"counter_{worker}.db").exists(), 15)
        sizes.append(len(list(metrics_dir.glob("*.db"))))
    assert pixel(port, "Opened", "last") == 200
    assert wait_until(lambda: scrape(ops).get(key) == sent + 1, 15)  # nothing counted by the dead was lost
    assert seen == sorted(seen) and seen[-1] == sent  # monotonic across every restart
    # The live workers' files (counters and gauges) and the archive: the same after 12 restarts as after one.
    # (A respawned worker writes its own files with its first event, so a count may lag by one.)
    assert max(sizes) <= 8 and max(sizes[-4:]) <= max(sizes[:4]), sizes


def test_two_workers_answer_pixels_publicly_and_health_metrics_only_on_the_ops_port(start: Any, tmp_path: Path) -> None:
    port, ops_port = free_port(), free_port()
    events = tmp_path / "events.jsonl"
    process = start(["-m", "pixel_middleware", "serve", "--workers", "2", "--port", str(port),
                     "--ops-port", str(ops_port), "--ready-grace", "5"], port,
                    env={"PIXEL_SINK": f"file:{events}", "PIXEL_WRITE_KEYS": WRITE_KEY,
                         "TMPDIR": str(tmp_path)})  # serve's state directory, so the test can read each worker's file
    public, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
    for path in ("/healthz", "/readyz", "/metrics", "/"):
        assert get(public + path)[0] == 404, path  # never on the public port
    assert get(ops + "/healthz") == (200, b"ok\n")
    assert wait_until(lambda: get(ops + "/readyz")[0] == 200 and json.loads(get(ops + "/readyz")[1])["workers"] == 2, 30)
    assert json.loads(get(ops + "/readyz")[1])["sinks"] == [f"file:{events}"]

    key = ("pixel_events_total", (("dialect", "compact"), ("type", "track")))
    master = process.proc.pid
    workers = children(master)
    [metrics_dir] = tmp_path.glob("pixel-serve-*/metrics")
    sent = 0
    while sent < 400:  # until both workers have counted some (a worker may take every one)
        for _ in range(20):
            assert pixel(port, "Opened", f"m{sent}") == 200
            sent += 1
        assert wait_until(lambda: scrape(ops).get(key) == sent, 15), scrape(ops)
        if all(counted(metrics_dir, pid, key) for pid in workers):
            break
    assert all(counted(metrics_dir, pid, key) for pid in workers), "one worker took every pixel"
    assert sum(counted(metrics_dir, pid, key) for pid in workers) == sent  # the scrape adds up both
    get(f"{public}/v1/pixel/track?wk=wrong-key&e=Opened&uid=u")
    assert wait_until(lambda: scrape(ops).get(("pixel_rejections_total", (("reason", "invalid_write_key"),))) == 1, 15)
    assert len(events.read_text().splitlines()) == sent

    # A worker dies: what it counted stays counted, its live gauges go (the sweeper), granian starts another.
    victim = workers[0]
    assert (metrics_dir / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: victim not in children(master) and len(children(master)) == 2, 30)
    # One sweep drops the gauges, then folds the counters into the archive (below: still counted): wait for both.
    assert wait_until(lambda: not (metrics_dir / f"gauge_livesum_{victim}.db").exists()
                      and not (metrics_dir / f"counter_{victim}.db").exists(), 15)
    for i in range(10):
        assert pixel(port, "Opened", f"n{i}") == 200
    assert wait_until(lambda: scrape(ops).get(key) == sent + 10, 15), scrape(ops)
    # A worker stops gracefully (as on HUP or TTOU): the state every worker shares stays.
    victim = children(master)[0]
    os.kill(victim, signal.SIGTERM)
    assert wait_until(lambda: victim not in children(master) and len(children(master)) == 2, 30)
    for i in range(10, 20):
        assert pixel(port, "Opened", f"n{i}") == 200
    assert wait_until(lambda: scrape(ops).get(key) == sent + 20, 15), scrape(ops)
    assert wait_until(lambda: json.loads(get(ops + "/readyz")[1]).get("workers") == 2, 15)
    text = get(ops + "/metrics")[1].decode()
    assert WRITE_KEY not in text and "wrong-key" not in text

    # SIGTERM to the master and every worker at once (systemd's KillMode=control-group, Ctrl-C).
    for pid in [master, *children(master)]:
        os.kill(pid, signal.SIGTERM)
    assert process.proc.wait(60) == 0
    process.stop()
    assert "Traceback" not in process.output(), process.output()
    assert WRITE_KEY not in process.output() and "wrong-key" not in process.output()


def test_an_ipv6_ops_address_is_bound(start: Any) -> None:
    port, ops_port = free_port(), free_port()
    process = start(["-m", "pixel_middleware", "serve", "--workers", "1", "--port", str(port),
                     "--ops-host", "::1", "--ops-port", str(ops_port)], port)
    assert get(f"http://[::1]:{ops_port}/healthz") == (200, b"ok\n")
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 404
    process.stop()
    assert f"ops on http://[::1]:{ops_port}/" in process.output(), process.output()


@pytest.mark.parametrize("raw", [
    "GET /v1/pixel/track?wk={key}&e=x HTTP/1.1 extra\r\n\r\n",  # a request line of four parts
    "G\x01T /v1/pixel/track?wk={key} HTTP/1.1\r\n\r\n",  # a control character in the method
    "GET /v1/{key}/Pixel\x01 HTTP/1.1\r\n\r\n",  # mParticle's key is the path's, not the query's
    "GET /v1/pixel/track?wk={key}&e=<script> HTTP/1.1\r\nHost: x\r\n\r\n",  # characters no URL may hold
], ids=["four-parts", "control-in-method", "mparticle-path", "raw-angle-brackets"])
def test_a_malformed_request_gets_400_and_its_write_key_is_in_no_log(start: Any, raw: str) -> None:
    port = free_port()
    process = start(["-m", "pixel_middleware", "serve", "--workers", "1", "--port", str(port)], port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw.format(key=WRITE_KEY).encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert pixel(port, "Opened", "after") == 200  # and the worker answers the next client
    process.stop()
    assert WRITE_KEY not in process.output(), process.output()


def test_the_log_filter_leaves_a_question_mark_that_starts_no_query_alone() -> None:
    import logging

    from pixel_middleware.server.serve import RedactingFilter

    # gunicorn's own words when a worker is killed: nothing was hidden, and the line must not say so.
    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1,
                               "Worker (pid:%s) was sent SIGKILL! Perhaps out of memory?", (42,), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "Worker (pid:42) was sent SIGKILL! Perhaps out of memory?"


def test_the_log_filter_hides_an_mparticle_key_in_a_path() -> None:
    import logging

    from pixel_middleware.server.serve import RedactingFilter

    record = logging.LogRecord("granian", logging.WARNING, __file__, 1, "bad request line %r",
                               (f"GET /v1/{WRITE_KEY}/Pixel\x01 HTTP/1.1",), None)
    assert RedactingFilter().filter(record)
    assert WRITE_KEY not in record.getMessage() and "/v1/[key hidden]/Pixel" in record.getMessage()


@pytest.mark.parametrize("proxies, expected", [(None, "127.0.0.1"), ("1", "203.0.113.9")])
def test_client_address_behind_a_proxy(start: Any, tmp_path: Path, proxies: Any, expected: str) -> None:
    port = free_port()
    events = tmp_path / "events.jsonl"
    argv = ["-m", "pixel_middleware", "serve", "--workers", "1", "--port", str(port), "--sink", f"file:{events}"]
    start(argv + (["--proxies", proxies] if proxies else []), port)
    assert pixel(port, "Opened", "p1", **{"X-Forwarded-For": "203.0.113.9"}) == 200
    assert wait_until(lambda: events.exists() and events.read_text(), 10)
    (event,) = [json.loads(line) for line in events.read_text().splitlines()]
    assert event["context"]["ip"] == expected


@pytest.mark.parametrize("ops_port", [False, True], ids=["one-socket", "with-ops-port"])
def test_file_lines_are_written_as_pixels_are_answered_and_all_of_a_burst_by_sigterm(
        start: Any, tmp_path: Path, ops_port: bool) -> None:
    """No line waits for a later request to push it out, and a burst is all written when serve stops."""
    from concurrent.futures import ThreadPoolExecutor

    port = free_port()
    events = tmp_path / "events.jsonl"
    argv = ["-m", "pixel_middleware", "serve", "--workers", "2", "--port", str(port), "--sink", f"file:{events}"]
    process = start(argv + (["--ops-port", str(free_port())] if ops_port else []), port)
    written = lambda: len(events.read_text().splitlines()) if events.exists() else 0  # noqa: E731
    for i in range(3):  # one at a time: each line must be written with no further request to push it
        assert pixel(port, "Opened", f"h{i}") == 200
        assert wait_until(lambda: written() == i + 1, 5), (written(), i + 1)
    with ThreadPoolExecutor(16) as pool:  # a burst, both workers writing
        assert set(pool.map(lambda i: pixel(port, "Opened", f"b{i}"), range(600))) == {200}
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(60) == 0
    ids = [json.loads(line)["messageId"] for line in events.read_text().splitlines()]
    assert {f"h{i}" for i in range(3)} | {f"b{i}" for i in range(600)} <= set(ids)
    assert len(ids) == len(set(ids))


def test_dev_server_serves_pixels(start: Any, tmp_path: Path) -> None:
    port = free_port()
    events = tmp_path / "events.jsonl"
    start(["-m", "pixel_middleware", "serve", "--dev", "--port", str(port), "--sink", f"file:{events}"], port)
    assert wait_until(lambda: pixel(port, "Opened", "d1") == 200, 10)
    assert wait_until(lambda: events.exists() and "d1" in events.read_text(), 10)


def test_dev_server_log_hides_the_query_of_a_malformed_request(start: Any) -> None:
    port = free_port()
    process = start(["-m", "pixel_middleware", "serve", "--dev", "--port", str(port)], port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # werkzeug logs it as an error
        sock.sendall(f"GET /v1/pixel/track?wk={WRITE_KEY}&e=x y HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    process.wait_for(lambda line: "code 400" in line)
    process.stop()
    assert WRITE_KEY not in process.output(), process.output()


def test_debug_page_in_chromium_shows_the_latest_events_across_workers(
    start: Any, chromium: str, tmp_path: Path
) -> None:
    port, ops_port = free_port(), free_port()
    start(["-m", "pixel_middleware", "serve", "--workers", "2", "--port", str(port), "--ops-port", str(ops_port),
           "--debug-page", "--sink", "memory:", "--write-key", WRITE_KEY], port)
    ops = f"http://127.0.0.1:{ops_port}"
    for i in range(6):
        assert pixel(port, f"Debug+Event+{i}", f"d{i}", **{"X-Forwarded-For": "198.51.100.7"}) == 200
        time.sleep(0.05)  # distinct times: the page orders by them
    get(f"http://127.0.0.1:{port}/v1/pixel/track?wk=wrong&e=%3Cscript%3Ealert(1)%3C/script%3E&uid=u")
    assert pixel(port, "%3C%2Ftextarea%3E%3Cscript%3Ealert(2)%3C%2Fscript%3E", "x1") == 200
    assert wait_until(lambda: b"Debug Event 5" in get(ops + "/")[1] and b"invalid_write_key" in get(ops + "/")[1], 15)

    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, profile, "--dump-dom", ops + "/"],
                         capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr
    page = dom.stdout
    positions = [page.index(f"Debug Event {i}") for i in range(6)]
    assert positions == sorted(positions, reverse=True), "newest first"
    assert "<b>invalid_write_key</b>" in page
    assert WRITE_KEY not in page and "<script>alert" not in page
    assert "&lt;/textarea&gt;&lt;script&gt;alert(2)" in page
    assert "127.0.0.0" in page and "127.0.0.1" not in page  # anonymised

    # Given time, the page's own script runs under its CSP and replaces the rows (only them) from /rows.
    later = subprocess.run([chromium, *CHROMIUM_FLAGS, profile, "--virtual-time-budget=5000", "--dump-dom", ops + "/"],
                           capture_output=True, text=True, timeout=90)
    assert later.returncode == 0 and "Content Security Policy" not in later.stderr, later.stderr
    assert 'id="refreshed">at load<' not in later.stdout and re.search(r'id="refreshed">\d\d:\d\d:\d\d<', later.stdout)
    # Rows, not "no events yet" (a worker a browser's idle connection held past its timeout may have been replaced).
    assert re.search(r"Debug Event \d", later.stdout) and '<form method="post" action="/explain">' in later.stdout

    shot = tmp_path / "page.png"
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, profile, "--window-size=1200,900", f"--screenshot={shot}",
                           ops + "/"], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and shot.exists(), done.stderr
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 900)
        colours = image.convert("L").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 10, "a blank screenshot"

    # The box posts (a GET would put the pasted URL, write key and all, in the address bar and logs):
    # a page that submits the same form as a person would.
    pasted = html.escape(f"http://127.0.0.1:{port}/v1/pixel/track?wk={WRITE_KEY}&e=Pasted&uid=u7")
    form = tmp_path / "paste.html"
    form.write_text(f'<form method="post" action="{ops}/explain"><input name="url" value="{pasted}"></form>'
                    "<script>document.forms[0].submit()</script>")
    explained = subprocess.run([chromium, *CHROMIUM_FLAGS, profile, "--dump-dom", form.as_uri()],
                               capture_output=True, text=True, timeout=90).stdout
    assert "accepted" in explained and "&quot;Pasted&quot;" in explained.replace('"', "&quot;"), explained
    assert WRITE_KEY not in explained
    wrong = "http://x/v1/pixel/track?wk=nope&e=P&uid=u"
    status, _ = get(f"{ops}/explain?url=" + urllib.request.quote(wrong, safe=""))
    assert status == 405  # never by GET
    posted = urllib.request.Request(f"{ops}/explain", data=urllib.parse.urlencode({"url": wrong}).encode())
    with urllib.request.urlopen(posted, timeout=10) as answer:
        assert answer.status == 200 and b"invalid_write_key" in answer.read()


def test_a_webhook_sinks_token_is_never_shown_in_readyz_metrics_logs_or_print_config(start: Any, tmp_path: Path) -> None:
    """Webhook endpoints put their token in the path: a sink's name shows scheme, host, port and a digest."""
    port, ops_port, dead = free_port(), free_port(), free_port()  # nothing listens on ``dead``: deliveries fail
    sink = f"http://bob:pw-secret-1@127.0.0.1:{dead}/services/T000/B000/PATH-SECRET-1?token=q-secret-1#gzip=1"
    env = {"PIXEL_SINK": sink, "PIXEL_WRITE_KEYS": WRITE_KEY, "TMPDIR": str(tmp_path)}
    shown = print_config(**env)
    assert shown.returncode == 0, shown.stderr
    process = start(["-m", "pixel_middleware", "serve", "--workers", "1", "--port", str(port), "--ops-port",
                     str(ops_port), "--ready-grace", "0"], port, env={**env, "PIXEL_SINK": sink})
    ops = f"http://127.0.0.1:{ops_port}"
    for i in range(5):
        assert pixel(port, "Opened", f"w{i}") == 200
    assert wait_until(lambda: get(ops + "/readyz")[0] == 503, 30), get(ops + "/readyz")
    ready = json.loads(get(ops + "/readyz")[1])
    label = ready["sinks"][0]["sink"]
    assert re.fullmatch(rf"http://127\.0\.0\.1:{dead} #[0-9a-f]{{8}}", label), label
    assert wait_until(lambda: label.encode() in get(ops + "/metrics")[1], 15)
    process.stop()
    seen = "\n".join([shown.stdout, shown.stderr, json.dumps(ready), get_text_safely(ops), process.output()])
    assert label in shown.stdout and f"127.0.0.1:{dead}" in process.output()  # the sink is named, safely
    for secret in ("pw-secret-1", "PATH-SECRET-1", "q-secret-1", "/services/", "bob"):
        assert secret not in seen, secret


def get_text_safely(ops: str) -> str:
    try:
        return get(ops + "/metrics")[1].decode()
    except OSError:
        return ""  # stopped
