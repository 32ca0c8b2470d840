"""HttpSink against a real HTTP server on loopback, through the real middleware."""
from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any, List

import pytest
from sinkhelpers import Endpoint, fire, wait_until

from pixel_middleware import HttpSink, sink_from_url
def make_sink(endpoint: Endpoint, spool_dir: str, **options: Any) -> HttpSink:
    options = {
        "spool_dir": spool_dir,
        "timeout": 2.0,
        "retries": 1,
        "retry_delay": 0.05,
        "retry_backoff": 0.2,
        "retry_backoff_max": 1.0,
        "linger": 0.05,
        "exit_timeout": None,
        **options,
    }
    return HttpSink(endpoint.url, **options)


def received_ids(endpoint: Endpoint) -> List[str]:
    return [event["messageId"] for event in endpoint.events(200)]


def test_segment_format_batches_per_write_key(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    sink = make_sink(endpoint, spool_dir, batch_size=100)
    client = pixels(sink)
    try:
        fire(client, [f"a{i}" for i in range(5)], write_key="KEY-A")
        fire(client, [f"b{i}" for i in range(3)], write_key="KEY-B")
        assert sink.flush(10)
    finally:
        sink.close(5)
    by_user = {}
    for request in endpoint.requests:
        assert request["path"] == "/v1/batch"
        assert request["headers"]["content-type"] == "application/json"
        scheme, _, token = request["headers"]["authorization"].partition(" ")
        assert scheme == "Basic"
        user = base64.b64decode(token).decode()
        assert set(request["json"]) == {"batch", "sentAt"}
        assert request["json"]["sentAt"].endswith("Z")
        by_user.setdefault(user, []).extend(e["messageId"] for e in request["json"]["batch"])
        for event in request["json"]["batch"]:
            assert "KEY" not in json.dumps(event)  # beside the payload, never in it
    assert by_user == {"KEY-A:": [f"a{i}" for i in range(5)], "KEY-B:": [f"b{i}" for i in range(3)]}


def test_json_format_with_headers_and_gzip(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    sink = make_sink(endpoint, spool_dir, format="json", gzip=True, headers={"X-Token": "t0k"})
    try:
        fire(pixels(sink), ["j1", "j2"])
        assert sink.flush(10)
    finally:
        sink.close(5)
    (request,) = endpoint.requests
    assert request["headers"]["content-encoding"] == "gzip"
    assert request["headers"]["x-token"] == "t0k"
    assert "authorization" not in request["headers"]  # json format does not send write keys
    assert [e["messageId"] for e in request["json"]] == ["j1", "j2"]


def test_500_for_a_while_then_200_loses_nothing(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    endpoint.default = (500, {})
    wanted = [f"f{i}" for i in range(300)]
    sink = make_sink(endpoint, spool_dir, batch_size=50)
    try:
        fire(pixels(sink), wanted)
        assert wait_until(lambda: sink.stats["failed_batches"] >= 2, 10)
        endpoint.default = (200, {})
        assert wait_until(lambda: set(wanted) <= set(received_ids(endpoint)), 20)
    finally:
        sink.close(5)
    assert len(endpoint.events(500)) > 0
    assert sink.spool.stats["spooled"] > 0 and sink.spool.stats["overflowed"] == 0
    assert not [n for n in os.listdir(spool_dir) if n.endswith(".spool")]


def test_400_is_dead_lettered_and_not_retried(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    endpoint.default = (400, {})
    sink = make_sink(endpoint, spool_dir, retries=3, batch_size=100)
    try:
        fire(pixels(sink), [f"d{i}" for i in range(10)])
        assert sink.flush(10)
        time.sleep(0.5)  # room for a retry that must not come
    finally:
        sink.close(5)
    assert len(endpoint.requests) == 1
    assert sink.stats["dead_lettered"] == 10 and sink.stats["delivered"] == 0
    with open(sink.dead_letter) as file:
        (line,) = [json.loads(text) for text in file]
    assert line["status"] == 400 and line["response"] == '{"status": 400}' and line["url"] == endpoint.url
    assert [e["messageId"] for e in line["events"]] == [f"d{i}" for i in range(10)]
    assert "KEY" not in json.dumps(line)
    assert sink.spool.stats["spooled"] == 0


def test_429_retry_after_is_honoured(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    endpoint.answers = [(429, {"Retry-After": "1"})]
    sink = make_sink(endpoint, spool_dir, retries=2, retry_delay=0.01)
    try:
        fire(pixels(sink), ["r1"])
        assert sink.flush(10)
    finally:
        sink.close(5)
    first, second = endpoint.requests
    assert first["status"] == 429 and second["status"] == 200
    assert second["at"] - first["at"] >= 0.95
    assert received_ids(endpoint) == ["r1"]


def test_slow_endpoint_does_not_slow_pixels(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    endpoint.delay = 5.0
    wanted = [f"s{i}" for i in range(200)]
    sink = make_sink(endpoint, spool_dir, timeout=10, batch_size=500, linger=0.3)
    try:
        started = time.perf_counter()
        timings = fire(pixels(sink), wanted)
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, f"200 pixels took {elapsed:.2f} s"
        assert max(timings) < 0.1, f"slowest pixel {max(timings) * 1000:.1f} ms"
        assert wait_until(lambda: set(wanted) <= set(received_ids(endpoint)), 15)
    finally:
        sink.close(5)


def test_endpoint_down_then_a_new_process_delivers_the_spool(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    """Close (as at shutdown) while the endpoint fails: events are spooled, and the next sink delivers them."""
    endpoint.default = (503, {})
    wanted = [f"p{i}" for i in range(50)]
    sink = make_sink(endpoint, spool_dir, retry_backoff=30)
    fire(pixels(sink), wanted)
    sink.close(1)
    assert received_ids(endpoint) == []
    endpoint.default = (200, {})
    again = make_sink(endpoint, spool_dir)
    try:
        assert wait_until(lambda: set(wanted) <= set(received_ids(endpoint)), 10)
    finally:
        again.close(5)


def test_http_url(spool_dir: str) -> None:
    sink = sink_from_url(
        "http://user:pa%20ss@127.0.0.1:1/collect?site=3"
        f"#format=json&gzip=1&header.X-Tenant=acme&timeout=2.5&retries=4&spool_dir={spool_dir}"
        "&exit_timeout=1"
    )
    try:
        assert isinstance(sink, HttpSink)
        assert sink.url == "http://127.0.0.1:1/collect?site=3"
        assert sink.format == "json" and sink.gzip and sink.retries == 4
        assert sink.headers["X-Tenant"] == "acme" and sink.auth == "user:pa ss"
        assert not sink.keeps_write_key
    finally:
        sink.close(0)
    with pytest.raises(ValueError, match="bogus"):
        sink_from_url("https://example.com/v1/batch#bogus=1")
    with pytest.raises(ValueError, match="format"):
        HttpSink("https://example.com/v1/batch", format="xml", spool_dir=spool_dir)


def test_long_retry_after_spools_and_waits_the_cap(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    """A Retry-After beyond retry_backoff_max spools the batch, replayed after retry_backoff_max: never later."""
    endpoint.answers = [(503, {"Retry-After": "30"})]
    sink = make_sink(endpoint, spool_dir, retries=3, retry_backoff=0.05, retry_backoff_max=1.0)
    try:
        fire(pixels(sink), ["late"])
        assert wait_until(lambda: received_ids(endpoint) == ["late"], 10)
    finally:
        sink.close(5)
    first, second = endpoint.requests
    assert 0.95 <= second["at"] - first["at"] < 10, "retried before the cap, or waited as long as asked"
    assert sink.spool.stats["spooled"] == 1 and sink.spool.stats["replayed"] == 1


def test_close_spools_a_batch_still_in_flight(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    """close() with a 0.5 s timeout while the endpoint takes 3 s: the batch is spooled, and delivered next time."""
    endpoint.delay = 3.0
    wanted = [f"c{i}" for i in range(20)]
    sink = make_sink(endpoint, spool_dir, timeout=10)
    fire(pixels(sink), wanted)
    started = time.monotonic()
    sink.close(0.5)
    assert time.monotonic() - started < 2.0, "close() overran its timeout"
    assert sink.spool.stats["spooled"] == 20
    assert wait_until(lambda: len(endpoint.requests) == 1, 10)  # the first try did arrive, late
    assert wait_until(lambda: not [t for t in threading.enumerate() if t.name == "pixel-middleware-http"], 10)
    endpoint.delay = 0.0
    again = make_sink(endpoint, spool_dir)
    try:
        assert wait_until(lambda: received_ids(endpoint).count("c0") == 2, 10)
    finally:
        again.close(5)
    assert sorted(received_ids(endpoint)) == sorted(wanted * 2)  # at least once: here exactly twice


def test_full_queue_spools_on_the_request_thread(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    endpoint.delay = 1.0
    wanted = [f"q{i}" for i in range(60)]
    sink = make_sink(endpoint, spool_dir, queue_size=10, batch_size=5, linger=0.01)
    try:
        timings = fire(pixels(sink), wanted)
        assert max(timings) < 0.5
        assert sink.stats["spooled_by_request"] > 0, "memory must stay bounded"
        endpoint.delay = 0.0
        assert wait_until(lambda: set(wanted) <= set(received_ids(endpoint)), 20)
    finally:
        sink.close(5)
    assert sink.spool.stats["overflowed"] == 0


def test_disk_cap_refusals_are_counted_and_logged(endpoint: Endpoint, spool_dir: str, pixels: Any, caplog: Any) -> None:
    endpoint.default = (503, {})
    sink = make_sink(endpoint, spool_dir, retries=0, spool_max_bytes=2000, retry_backoff=30)
    try:
        with caplog.at_level(logging.ERROR, logger="pixel_middleware.spool"):
            fire(pixels(sink), [f"o{i}" for i in range(40)])
            assert sink.flush(10)
    finally:
        sink.close(1)
    spooled, overflowed = sink.spool.stats["spooled"], sink.spool.stats["overflowed"]
    assert spooled > 0 and overflowed > 0 and spooled + overflowed == 40
    assert any("the spool is full" in r.getMessage() for r in caplog.records)


def test_missing_urllib3_names_the_extra(tmp_path: Any) -> None:
    code = (
        "import sys; sys.modules['urllib3'] = None\n"
        "from pixel_middleware import HttpSink\n"
        "try:\n"
        "    HttpSink('http://127.0.0.1:1/x', spool_dir=sys.argv[1])\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, timeout=30)
    assert b"pixel-middleware[http]" in done.stdout, done.stderr


def test_default_spool_dir_is_private_and_per_destination(tmp_path: Any, monkeypatch: Any) -> None:
    from pixel_middleware.sinks.delivery import default_spool_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    one = default_spool_dir("http", "https://a.example/v1/batch")
    assert one.startswith(str(tmp_path)) and one != default_spool_dir("http", "https://b.example/v1/batch")
    assert os.stat(os.path.dirname(one)).st_mode & 0o777 == 0o700
