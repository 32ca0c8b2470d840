"""/readyz over real HTTP against a real tansu broker paused with SIGSTOP, and a real endpoint whose spool fills."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any, Iterator, Tuple

import pytest
from sinkhelpers import FAST_KAFKA, Broker, Endpoint, wait_until
from werkzeug.test import Client

from pixel_middleware import HttpSink, KafkaSink, PixelMiddleware
from pixel_middleware.server.ops import StatusReporter, ops_app
from tests.helpers import wsgi_server


def readyz(base: str) -> Tuple[int, Any]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.fixture
def ops_server(tmp_path: Any) -> Iterator[Tuple[str, str]]:
    status_dir = str(tmp_path / "status")
    with wsgi_server(ops_app(status_dir, ready_grace=1.0)) as base:
        yield base, status_dir


def test_readiness_follows_a_paused_broker(running_broker: Broker, spool_dir: str, ops_server: Tuple[str, str]) -> None:
    base, status_dir = ops_server
    running_broker.create_topic("raw-events")
    sink = KafkaSink(running_broker.bootstrap, topic="raw-events", spool_dir=spool_dir, delivery_timeout=1.0,
                     probe_timeout=0.5, retry_backoff=0.2, retry_backoff_max=0.5, linger=0.01, exit_timeout=None,
                     config=dict(FAST_KAFKA))
    app = PixelMiddleware(None, sink=sink)
    reporter = StatusReporter(app.collector, status_dir, interval=0.2)
    assert readyz(base) == (503, {"ready": False, "reason": "no worker has reported yet"})
    reporter.start()
    client = Client(app)
    stop = threading.Event()

    def traffic() -> None:  # pixels keep coming, as they would in production
        n = 0
        while not stop.is_set():
            client.get(f"/v1/pixel/track?wk=k&e=Opened&uid=u&mid=r{n}").close()
            n += 1
            stop.wait(0.05)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        assert wait_until(lambda: readyz(base)[0] == 200, 15)
        status, body = readyz(base)
        assert body == {"ready": True, "workers": 1, "sinks": [sink.name]}
        running_broker.pause()
        assert wait_until(lambda: readyz(base)[0] == 503, 30)
        status, body = readyz(base)
        (problem,) = body["sinks"]
        assert problem["sink"] == sink.name and problem["reason"].startswith("unreachable for ")
        running_broker.resume()
        assert wait_until(lambda: readyz(base)[0] == 200, 30)
    finally:
        stop.set()
        sender.join(5)
        running_broker.resume()
        reporter.stop()
        app.close(5)


def test_readiness_fails_when_a_spool_is_nearly_full(endpoint: Endpoint, tmp_path: Any, ops_server: Tuple[str, str]) -> None:
    base, status_dir = ops_server
    endpoint.default = (503, {})
    # retry_backoff far off: the spool fills while the first failure is recent.
    failing = HttpSink(endpoint.url, spool_dir=str(tmp_path / "spool"), spool_max_bytes=4000, retries=0,
                       retry_backoff=30, linger=0.01, exit_timeout=None)
    app = PixelMiddleware(None, sink=failing)
    reporter = StatusReporter(app.collector, status_dir, interval=0.2)
    client = Client(app)
    try:
        reporter.start()
        for i in range(12):
            client.get(f"/v1/pixel/track?wk=k&e=Opened&uid=u{i}&mid=s{i}&p.pad={'x' * 200}").close()
        assert wait_until(lambda: failing.health()[0]["spool_bytes"] > 0.8 * 4000, 15)
        assert wait_until(lambda: readyz(base)[0] == 503, 10)
        status, body = readyz(base)
        (problem,) = body["sinks"]
        assert problem["sink"] == failing.name and problem["reason"].endswith("% full")
    finally:
        reporter.stop()
        app.close(2)
