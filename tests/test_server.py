"""Over real HTTP: a wrapped app behind a real WSGI server, and the `pixel-middleware serve` command."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Iterator

import pytest
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, build_pixel_url
from pixel_middleware.core.gif import GIF
from tests.conftest import downstream_app
from tests.helpers import free_port, wsgi_server


@pytest.fixture
def served() -> Iterator[tuple]:
    sink = MemorySink()
    with wsgi_server(PixelMiddleware(downstream_app, sink=sink)) as base:
        yield base, sink


def get(url: str, method: str = "GET", **headers: str):
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def test_pixels_over_http(served):
    base, sink = served
    urls = [
        build_pixel_url(base, "Email Opened", user_id="u1", properties={"campaign": "c-1"}, write_key="k"),
        build_pixel_url(base, "Pricing", type="page", anonymous_id="a1", write_key="k", dialect="rudderstack"),
        build_pixel_url(base, "Signed Up", user_id="u2", write_key="k", dialect="segment"),
        build_pixel_url(base, "Clicked", user_id="u3", write_key="k", dialect="mparticle"),
    ]
    for url in urls:
        status, headers, body = get(url, **{"User-Agent": "MailClient/2.0"})
        assert (status, headers["Content-Type"], headers["Cache-Control"], body) == (
            200, "image/gif", "no-store, no-cache, must-revalidate", GIF)
    assert [(e["type"], e.get("event") or e.get("name")) for e in sink.events] == [
        ("track", "Email Opened"), ("page", "Pricing"), ("track", "Signed Up"), ("track", "Clicked")]
    assert {e["context"]["ip"] for e in sink.events} == {"127.0.0.1"}
    assert {e["context"]["userAgent"] for e in sink.events} == {"MailClient/2.0"}
    status, headers, body = get(base + "/v1/pixel/track", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, body = get(base + "/pixel/v1/track?writeKey=k", method="HEAD")
    assert status == 200 and body == b""
    assert get(base + "/dashboard")[2] == b"downstream /dashboard"
    assert len(sink.events) == 4


def test_serve_command_runs_a_collector_with_the_log_sink(start):
    port = free_port()
    process = start(["-m", "pixel_middleware", "serve", "--port", str(port), "--write-key", "demo-key"], port)
    base = f"http://127.0.0.1:{port}"
    status, _, body = get(build_pixel_url(base, "Email Opened", user_id="u9", write_key="demo-key"))
    assert (status, body) == (200, GIF)
    get(build_pixel_url(base, "Email Opened", user_id="u9", write_key="wrong-key"))
    process.wait_for(lambda line: "pixel rejected: invalid_write_key" in line)
    process.wait_for(lambda line: line.startswith("{"))
    process.stop()
    lines = process.output().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(e["event"], e["userId"]) for e in events] == [("Email Opened", "u9")]
    assert not any("demo-key" in line or "wrong-key" in line for line in lines), "a write key was logged"


def test_url_command():
    done = subprocess.run(
        [sys.executable, "-m", "pixel_middleware", "url", "https://x.test", "Email Opened", "--user-id", "u1",
         "--write-key", "k", "-p", "campaign=c1"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert done.stdout.startswith("https://x.test/v1/pixel/track?wk=k&e=Email+Opened&uid=u1&p.campaign=c1&cb=")


def test_serve_flags_reach_the_collector():
    """``serve --machine-events drop --ip anonymize --privacy-signals drop --dnt --dedup 60``, as a worker builds it."""
    import argparse

    from pixel_middleware.server import config as server
    from pixel_middleware.server.worker import WorkerApp

    parser = argparse.ArgumentParser()
    server.add_arguments(parser)
    args = parser.parse_args(["--sink", "memory:", "--machine-events", "drop", "--ip", "anonymize",
                              "--privacy-signals", "drop", "--dnt", "--dedup", "60", "--no-metrics"])
    settings = {name: value for name, (value, _) in server.resolve(args, environ={}).items()}
    app = WorkerApp(settings).middleware
    sink = app.sink
    client = Client(app)
    url = "/v1/pixel/track?wk=k&e=Open&uid=u1&mid=m1"
    bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    for headers in ({"User-Agent": bot}, {"DNT": "1"}, {}, {}):
        response = client.get(url, headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.7"})
        assert response.status_code == 200
    assert [e["context"]["ip"] for e in sink.events] == ["203.0.113.0"]
    assert app.rejections == {"machine": 1, "opted_out": 1, "duplicate": 1}
