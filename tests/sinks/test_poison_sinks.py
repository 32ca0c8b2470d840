"""No poison pills in the sinks: one bad event, record or answer never strands or drops the others.

Against the real things: a loopback HTTP endpoint, the tansu broker, spool
directories on disk, and ``serve`` as a subprocess killed with SIGKILL.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from email.utils import formatdate
from typing import Any, Dict, List

import pytest
from sinkhelpers import Broker, Endpoint, fire, free_port, wait_until

from pixel_middleware import HttpSink, KafkaSink, event_received
from pixel_middleware.sinks.http import _retry_after
from tests.helpers import Process, children

GOOD = [f"good{i}" for i in range(10)]

#: What a signal receiver (or a third-party dialect) might leave in an event: each has no valid JSON form.
POISONS = {
    "lone-surrogate": lambda event: event["properties"].__setitem__("s", "\ud800"),
    "surrogate-key": lambda event: event["properties"].__setitem__("\udfff", 1),
    "infinity": lambda event: event["properties"].__setitem__("n", float("inf")),
    "nan": lambda event: event["properties"].__setitem__("n", float("nan")),
    "not-json": lambda event: event["properties"].__setitem__("at", object()),
}


def fire_with_poison(client: Any, middleware_sender: Any, poison: str) -> None:
    """10 good pixels with one poisoned in their middle, fast enough to land in one batch."""

    def spoil(sender: Any, event: Dict[str, Any], **extra: Any) -> None:
        if event.get("messageId") == "poison":
            event.setdefault("properties", {})
            POISONS[poison](event)

    with event_received.connected_to(spoil):
        fire(client, GOOD[:5])
        fire(client, ["poison"])
        fire(client, GOOD[5:])


def dead_letters(path: str) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_http_sink_delivers_the_ten_and_dead_letters_the_poison_alone(
    poison: str, endpoint: Endpoint, spool_dir: str, pixels: Any
) -> None:
    sink = HttpSink(endpoint.url, spool_dir=spool_dir, linger=0.5, retries=0, exit_timeout=None)
    try:
        fire_with_poison(pixels(sink), None, poison)
        assert sink.flush(10)
    finally:
        sink.close(5)
    received = [event["messageId"] for event in endpoint.events(200)]
    assert received == GOOD
    assert len(endpoint.requests) == 1, "the ten went in one batch, as they came"
    assert sink.stats["delivered"] == 10 and sink.stats["dead_lettered"] == 1 and sink.stats["failed_batches"] == 0
    (letter,) = dead_letters(sink.dead_letter)
    assert letter["reason"] == "unserialisable" and len(letter["events"]) == 1
    assert sink.spool.pending() == 0


@pytest.mark.parametrize("poison", ["lone-surrogate", "infinity", "not-json"])
def test_kafka_sink_delivers_the_ten_and_dead_letters_the_poison_alone(
    poison: str, running_broker: Broker, spool_dir: str, pixels: Any
) -> None:
    running_broker.create_topic("raw-events", 1)
    sink = KafkaSink(running_broker.bootstrap, spool_dir=spool_dir, linger=0.5, exit_timeout=None)
    try:
        fire_with_poison(pixels(sink), None, poison)
        assert sink.flush(20)
        messages = running_broker.consume("raw-events", lambda ms: len(ms) >= 10, timeout=30)
    finally:
        sink.close(5)
    assert [json.loads(m.value())["messageId"] for m in messages] == GOOD
    assert sink.stats["delivered"] == 10 and sink.stats["dead_lettered"] == 1
    assert dead_letters(sink.dead_letter)[0]["reason"] == "unserialisable"


def write_spool_file(directory: str, lines: List[bytes], seq: int = 0) -> None:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = f"{time.time_ns():020d}-99999-{seq}.spool"
    with open(os.path.join(directory, name), "wb") as file:
        file.write(b"".join(lines))


def record(mid: str, **properties: Any) -> bytes:
    event = {"type": "track", "event": "x", "userId": "u", "messageId": mid, "properties": properties}
    return json.dumps([event, "compact", "SECRET-KEY"], separators=(",", ":")).encode() + b"\n"


def test_a_corrupt_spool_replays_what_is_good_and_counts_the_rest(
    endpoint: Endpoint, spool_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Non-record JSON, a poisoned record (a lone surrogate escape), garbage and a torn tail, then a clean file."""
    write_spool_file(
        spool_dir,
        [
            record("s1"),
            b"123\n",
            b'[1,2]\n',
            b'{"writeKey":"SECRET-KEY"}\n',
            b'[{"messageId":"bad","properties":{"s":"\\ud800"}},"compact","SECRET-KEY"]\n',
            b"not json at all SECRET-KEY\n",
            record("s2"),
            b'[{"messageId":"torn","wk":"SECRET-KEY"',
        ],
    )
    write_spool_file(spool_dir, [record("s3"), record("s4")], seq=1)
    with caplog.at_level("DEBUG", logger="pixel_middleware"):
        sink = HttpSink(endpoint.url, spool_dir=spool_dir, retries=0, exit_timeout=None)
        try:
            assert wait_until(lambda: len(endpoint.events(200)) >= 4, 15)
            assert wait_until(lambda: sink.spool.pending() == 0, 10)
        finally:
            sink.close(5)
    assert [e["messageId"] for e in endpoint.events(200)] == ["s1", "s2", "s3", "s4"]
    assert sink.stats["unreadable"] == 4
    assert sink.stats["dead_lettered"] == 1
    assert sink.spool.stats["torn"] == 1
    assert "SECRET-KEY" not in caplog.text, "a write key reached the log"


def test_a_spool_directory_that_cannot_be_listed_counts_every_event(spool_dir: str, pixels: Any) -> None:
    """Delivery fails (nothing listens) and the spool is not a directory any more: all 30 counted as overflowed."""
    sink = HttpSink(f"http://127.0.0.1:{free_port()}/v1/batch", spool_dir=spool_dir, retries=0,
                    retry_backoff=0.1, retry_backoff_max=0.2, exit_timeout=None)
    shutil.rmtree(spool_dir)
    with open(spool_dir, "w") as file:
        file.write("in the way")
    try:
        fire(pixels(sink), [f"e{i}" for i in range(30)])
        assert sink.flush(10)
        assert wait_until(lambda: sink.stats["failed_batches"] >= 2, 10), "the worker stopped"
    finally:
        sink.close(2)
    assert sink.spool.stats["overflowed"] == 30
    assert sink.spool.stats["spooled"] == 0


@pytest.mark.parametrize(
    "header, seconds",
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("7", 7.0, id="seconds"),
        pytest.param(" 7 ", 7.0, id="spaces"),
        pytest.param("\u00b2", None, id="superscript-two"),
        pytest.param("\u0663", None, id="arabic-indic-three"),
        pytest.param("-5", None, id="negative"),
        pytest.param("1.5", None, id="fraction"),
        pytest.param("9" * 400, 1e9, id="400-digits"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("Mon, 99 Foo 99999 99:99:99 GMT", None, id="broken-date"),
    ],
)
def test_retry_after_is_read_strictly(header: Any, seconds: Any) -> None:
    assert _retry_after(header) == seconds


def test_retry_after_date_in_the_future() -> None:
    assert 25 < _retry_after(formatdate(time.time() + 30, usegmt=True)) <= 30


@pytest.mark.parametrize("header", ["\u00b2", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_odd_and_huge_retry_after_never_lose_or_stall_a_batch(header: str, endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    endpoint.answers = [(503, {"Retry-After": header})]
    sink = HttpSink(endpoint.url, spool_dir=spool_dir, retries=1, retry_delay=0.05, retry_backoff=0.1,
                    retry_backoff_max=1.0, exit_timeout=None)
    try:
        fire(pixels(sink), ["r1", "r2"])
        assert wait_until(lambda: [e["messageId"] for e in endpoint.events(200)] == ["r1", "r2"], 10)
    finally:
        sink.close(5)
    first, second = endpoint.requests
    assert second["at"] - first["at"] < 5, "waited as long as asked instead of at most retry_backoff_max"


def test_a_write_key_beyond_latin_1_is_delivered(endpoint: Endpoint, spool_dir: str, pixels: Any) -> None:
    """urllib3 encodes Basic credentials as latin-1: a write key from the URL must not poison its batch."""
    sink = HttpSink(endpoint.url, spool_dir=spool_dir, retries=0, exit_timeout=None)
    try:
        client = pixels(sink)
        fire(client, ["a1"], write_key="%D0%BA%D0%BB%D1%8E%D1%87")
        fire(client, ["b1"])
        assert sink.flush(10)
    finally:
        sink.close(5)
    assert sorted(e["messageId"] for e in endpoint.events(200)) == ["a1", "b1"]
    users = {base64.b64decode(r["headers"]["authorization"].split()[1]).decode() for r in endpoint.requests}
    assert users == {"ключ:", "KEY:"}


def get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        assert response.headers["Content-Type"] == "image/gif"
        return response.status


def spooled_lines(directory: str) -> int:
    if not os.path.isdir(directory):
        return 0
    total = 0
    for name in os.listdir(directory):
        if ".spool" in name or ".claim" in name:
            with open(os.path.join(directory, name), "rb") as file:
                total += file.read().count(b"\n")
    return total


POISON_PIXELS = [
    "/v1/pixel/track?data=" + base64.b64encode(b'{"writeKey":"k","userId":"u","event":"x","properties":{"s":"\\ud800"}}').decode(),
    "/v1/pixel/track?data=" + base64.b64encode(b'{"writeKey":"k","userId":"u","event":"x","properties":{"n":1e400}}').decode(),
    "/v1/pixel/track?wk=k&e=x&uid=u&ts=" + "9" * 5000,
    "/v1/pixel/track?wk=k&e=x&uid=u&p.s=%ED%A0%80",
    "/pixel/v1/track?writeKey=k&userId=u&event=x&" + "&".join(f"p{i}=1" for i in range(300)),
]


def test_poison_through_serve_then_kill_9_then_restart_delivers_every_good_event(
    endpoint: Endpoint, tmp_path: Any
) -> None:
    """Real HTTP into `serve`; delivery down so events spool; SIGKILL; restart with the endpoint up."""
    spool = str(tmp_path / "spool")
    options = f"#retries=0&retry_backoff=0.2&retry_backoff_max=0.5&spool_dir={spool}"
    port = free_port()
    down = f"http://127.0.0.1:{free_port()}/v1/batch{options}"
    first = Process([sys.executable, "-m", "pixel_middleware", "serve", "--port", str(port), "--sink", down], port,
                    env={"TMPDIR": str(tmp_path)})  # serve's state directory: a killed master cannot remove it
    try:
        first.wait_ready()
        wanted = [f"k{i}" for i in range(20)]
        for i, mid in enumerate(wanted):
            assert get(port, f"/v1/pixel/track?wk=k&e=Opened&uid=u{i}&mid={mid}&p.s=%E2%80%A8") == 200
            assert get(port, POISON_PIXELS[i % len(POISON_PIXELS)]) == 200
        assert wait_until(lambda: spooled_lines(spool) >= 20, 20), first.output()
        for pid in [*children(first.proc.pid), first.proc.pid]:  # the master and its gunicorn workers
            os.kill(pid, signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.stop()
    assert "Traceback" not in first.output()
    for reason in ("invalid_encoding", "invalid_value", "invalid_timestamp", "too_many_parameters"):
        assert f"pixel rejected: {reason}" in first.output()
    second_port = free_port()
    second = Process([sys.executable, "-m", "pixel_middleware", "serve", "--port", str(second_port),
                      "--sink", endpoint.url + options], second_port)
    try:
        second.wait_ready()
        assert wait_until(lambda: {e["messageId"] for e in endpoint.events(200)} >= set(wanted), 20), second.output()
    finally:
        second.stop()
    delivered = [e["messageId"] for e in endpoint.events(200)]
    assert set(delivered) == set(wanted)
    assert all(e["properties"]["s"] == "\u2028" for e in endpoint.events(200))
