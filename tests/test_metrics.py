"""Prometheus metrics in one process (the multiprocess case runs under gunicorn in tests/test_serve.py)."""
from __future__ import annotations

from typing import Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, build_pixel_url, metrics_app
Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def scrape() -> Samples:
    response = Client(metrics_app()).get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_events_and_rejections_are_counted_exactly() -> None:
    before = scrape()
    app = PixelMiddleware(None, sink=MemorySink(), write_keys=["k"], metrics=True)
    client = Client(app)
    for i in range(3):
        client.get(build_pixel_url("http://x", "Opened", user_id=f"u{i}", write_key="k"))
    client.get(build_pixel_url("http://x", "Pricing", type="page", anonymous_id="a", write_key="k", dialect="rudderstack"))
    client.get(build_pixel_url("http://x", "Opened", user_id="u", write_key="wrong"))
    client.get("/v1/pixel/track?wk=k")  # no event name
    after = scrape()
    app.close()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("pixel_events_total", dialect="compact", type="track") == 3
    assert grew("pixel_events_total", dialect="rudderstack", type="page") == 1
    assert grew("pixel_rejections_total", reason="invalid_write_key") == 1
    assert grew("pixel_rejections_total", reason="missing_event") == 1


def test_events_from_many_threads_are_counted_exactly_and_ended_threads_fold_away() -> None:
    """Each thread counts in its own table with no lock: none may be lost, and none may pile up."""
    import threading
    import urllib.request

    from werkzeug.serving import make_server

    from tests.helpers import wait_until

    before = scrape()
    app = PixelMiddleware(None, sink=MemorySink(), write_keys=["k"], metrics=True)
    url = build_pixel_url("", "Opened", user_id="u", write_key="k")
    # werkzeug's threaded server (Flask's app.run) starts a thread per request ...
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def over_http(n: int) -> None:
        for _ in range(n):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{url}", timeout=10) as answer:
                assert answer.status == 200

    # ... and a gthread worker keeps a pool of threads, here all counting at once.
    def in_process(n: int) -> None:
        client = Client(app)
        for _ in range(n):
            client.get(url)

    threads = [threading.Thread(target=over_http, args=(20,)) for _ in range(3)]
    threads += [threading.Thread(target=in_process, args=(300,)) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        server.shutdown()
    metrics = app.collector._metrics
    # Every counting thread ends (werkzeug's a moment after its answer): its table is folded into one.
    assert wait_until(lambda: metrics.flush() or metrics._tables == [], 10)
    after_threads = value(scrape(), "pixel_events_total", dialect="compact", type="track")
    later = threading.Thread(target=in_process, args=(5,))  # counted on top of what was folded
    later.start()
    later.join(10)
    metrics.flush()
    after_later = value(scrape(), "pixel_events_total", dialect="compact", type="track")
    app.close()
    assert after_threads - value(before, "pixel_events_total", dialect="compact", type="track") == 3 * 20 + 4 * 300
    assert after_later - after_threads == 5


def test_two_collectors_in_one_process_share_the_metrics() -> None:
    first = PixelMiddleware(None, sink=MemorySink(), metrics=True)
    second = PixelMiddleware(None, sink=MemorySink(), metrics=True)  # no "Duplicated timeseries"
    before = scrape()
    for app in (first, second):
        Client(app).get(build_pixel_url("http://x", "Shared", user_id="u", write_key="k"))
    grown = value(scrape(), "pixel_events_total", dialect="compact", type="track") - value(
        before, "pixel_events_total", dialect="compact", type="track")
    first.close()
    second.close()
    assert grown == 2


def test_sink_figures_follow_an_outage_and_name_no_credentials(tmp_path) -> None:
    import threading
    from http.server import ThreadingHTTPServer

    from tests.sinks.sinkhelpers import Endpoint, handler_for, wait_until

    endpoint = Endpoint()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(endpoint))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = (f"http://user:hunter2@127.0.0.1:{server.server_address[1]}/v1/batch"
           f"#spool_dir={tmp_path}&retries=0&retry_backoff=0.1&retry_backoff_max=0.3&linger=0.02&timeout=2")
    app = PixelMiddleware(None, sink=url, metrics=True)
    sink_name = app.sink.name
    client = Client(app)
    try:
        endpoint.default = (503, {})
        for i in range(5):
            client.get(build_pixel_url("http://x", "Opened", user_id=f"u{i}", write_key="k"))
        assert wait_until(lambda: value(scrape(), "pixel_sink_spool_bytes", sink=sink_name) > 0, 15)
        down = scrape()
        assert value(down, "pixel_sink_failed_batches_total", sink=sink_name) >= 1
        assert ("pixel_sink_oldest_spooled_seconds", (("sink", sink_name),)) in down
        assert wait_until(lambda: value(scrape(), "pixel_sink_oldest_spooled_seconds", sink=sink_name) > 0, 15)
        endpoint.default = (200, {})
        assert wait_until(lambda: value(scrape(), "pixel_sink_delivered_total", sink=sink_name) == 5, 15)
        up = scrape()
        assert value(up, "pixel_sink_spool_bytes", sink=sink_name) == 0
        assert value(up, "pixel_sink_queue_depth", sink=sink_name) == 0
        text = Client(metrics_app()).get("/metrics").get_data(as_text=True)
        assert "hunter2" not in text and "user" not in sink_name
    finally:
        app.close(5)
        server.shutdown()
        server.server_close()


def test_a_forked_worker_counts_its_own_events_with_its_own_thread() -> None:
    import os

    app = PixelMiddleware(None, sink=MemorySink(), metrics=True)
    client = Client(app)
    client.get(build_pixel_url("http://x", "Opened", user_id="parent", write_key="k"))
    metrics = app.collector._metrics
    parent_thread = metrics._thread
    pid = os.fork()
    if pid == 0:  # a gunicorn worker forked after the collector was built (preload)
        ok = metrics._thread is None and metrics._event_totals() == {}
        client.get(build_pixel_url("http://x", "Opened", user_id="child", write_key="k"))
        ok = ok and metrics._thread is not None and metrics._thread.is_alive()
        ok = ok and metrics._event_totals() == {("compact", "track"): 1}
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert metrics._thread is parent_thread and metrics._event_totals() == {("compact", "track"): 1}
    app.close()


def test_a_forked_worker_does_not_report_the_parents_counts_again() -> None:
    import os

    before = scrape()
    app = PixelMiddleware(None, sink=MemorySink(), write_keys=["k"], metrics=True)
    client = Client(app)
    for _ in range(2):
        client.get(build_pixel_url("http://x", "Opened", user_id="u", write_key="wrong"))
    app.collector._metrics.flush()  # the parent has reported its 2
    pid = os.fork()
    if pid == 0:  # the child's registry starts as a copy of the parent's: 2, plus its own 1
        client.get(build_pixel_url("http://x", "Opened", user_id="u", write_key="wrong"))
        after = scrape()
        grown = value(after, "pixel_rejections_total", reason="invalid_write_key") - value(
            before, "pixel_rejections_total", reason="invalid_write_key")
        os._exit(0 if grown == 3 else 10 + int(grown))
    _, status = os.waitpid(pid, 0)
    app.close()
    assert os.waitstatus_to_exitcode(status) == 0, f"the child counted {os.waitstatus_to_exitcode(status) - 10}"


def test_pixel_middleware_loads_prometheus_client_only_when_asked_and_names_the_extra_without_it() -> None:
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    plain = run("import sys; from pixel_middleware import PixelMiddleware, MemorySink\n"
                "PixelMiddleware(None, sink=MemorySink()).close()\n"
                "assert 'prometheus_client' not in sys.modules")
    assert plain.returncode == 0, plain.stderr
    missing = run("import sys; sys.modules['prometheus_client'] = None  # as if not installed\n"
                  "from pixel_middleware import PixelMiddleware, MemorySink, metrics_app\n"
                  "for make in (lambda: PixelMiddleware(None, sink=MemorySink(), metrics=True), metrics_app):\n"
                  "    try:\n        make()\n    except RuntimeError as error:\n        print(error)\n"
                  "    else:\n        raise SystemExit('no error')")
    assert missing.returncode == 0, missing.stderr
    assert missing.stdout.count('pip install "pixel-middleware[metrics]"') == 2, missing.stdout


def test_a_worker_file_not_yet_sized_does_not_fail_the_scrape(tmp_path) -> None:
    """prometheus_client creates a worker's file empty and sizes it a moment later: a scrape between gets 200."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import os\n"
            "from werkzeug.test import Client\n"
            "from pixel_middleware import PixelMiddleware, MemorySink, metrics_app\n"
            "app = PixelMiddleware(None, sink=MemorySink(), metrics=True)\n"
            "assert Client(app).get('/v1/pixel/track?wk=k&e=Opened&uid=u').status_code == 200\n"
            "app.collector._metrics.flush()\n"
            "open(os.path.join(os.environ['PROMETHEUS_MULTIPROC_DIR'], 'counter_999999.db'), 'wb').close()\n"
            "answer = Client(metrics_app()).get('/metrics')\n"
            "print(answer.status_code)\n"
            "print(answer.get_data(as_text=True))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    status, _, text = done.stdout.partition("\n")
    assert status == "200", done.stdout
    assert 'pixel_events_total{dialect="compact",type="track"} 1.0' in text, text
