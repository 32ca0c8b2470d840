"""Sink.health(): what metrics and readiness read, against a real HTTP endpoint."""
from __future__ import annotations

import time
from typing import Any

from sinkhelpers import Endpoint, fire, wait_until

from pixel_middleware import FanoutSink, HttpSink, LogSink
def test_http_sink_health_follows_an_outage_and_names_no_credentials(endpoint: Endpoint, spool_dir: str, pixels: Any,
                                                                     caplog: Any) -> None:
    url = endpoint.url.replace("http://", "http://user:s3cret@") + "?api_key=s3cret"
    sink = HttpSink(url, spool_dir=spool_dir, timeout=1.0, retries=0, retry_backoff=0.1, retry_backoff_max=0.3,
                    linger=0.02, exit_timeout=None, spool_max_bytes=1 << 20)
    client = pixels(sink)
    try:
        (health,) = sink.health()
        assert "s3cret" not in health["sink"] and "user" not in health["sink"]
        assert health["sink"].startswith("http://127.0.0.1:")
        assert health["down_since"] is None and health["spool_max_bytes"] == 1 << 20

        fire(client, ["a1", "a2"])
        wait_until(lambda: sink.health()[0]["delivered"] == 2, 10)

        endpoint.default = (503, {})
        before = time.time()
        fire(client, ["b1", "b2", "b3"])
        wait_until(lambda: sink.health()[0]["down_since"] is not None, 10)
        health = sink.health()[0]
        assert before <= health["down_since"] <= time.time()
        assert health["failed_batches"] >= 1
        wait_until(lambda: sink.health()[0]["spool_bytes"] > 0, 10)
        time.sleep(0.05)
        assert sink.health()[0]["oldest_spooled_seconds"] > 0

        # The sink logged the outage: by host and path, never with the URL's credentials.
        assert "127.0.0.1" in caplog.text and "s3cret" not in caplog.text and "s3cret" not in repr(sink)

        endpoint.default = (200, {})
        wait_until(lambda: sink.health()[0]["down_since"] is None, 10)
        health = sink.health()[0]
        assert health["delivered"] == 5 and health["spool_bytes"] == 0 and health["oldest_spooled_seconds"] == 0
        assert health["queue_depth"] == 0
    finally:
        sink.close(5)


def test_fanout_reports_each_sink_and_log_sink_is_never_down(endpoint: Endpoint, spool_dir: str) -> None:
    http = HttpSink(endpoint.url, spool_dir=spool_dir, exit_timeout=None)
    try:
        entries = FanoutSink([LogSink(), http]).health()
        assert [entry["sink"] for entry in entries] == ["log", http.name]
        assert entries[0]["down_since"] is None and entries[0]["queue_depth"] == 0
        # Two sinks alike keep apart in metrics and readiness: a repeated name is numbered.
        entries = FanoutSink([LogSink(), http, LogSink(), FanoutSink([LogSink()])]).health()
        assert [entry["sink"] for entry in entries] == ["log", http.name, "log#2", "log#3"]
    finally:
        http.close(2)
