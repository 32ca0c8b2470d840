"""KafkaSink against a real tansu broker on loopback, through the real middleware."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections import Counter
from typing import Any, List

import pytest

from pixel_middleware import KafkaSink, sink_from_url
from sinkhelpers import FAST_KAFKA, Broker, fire, wait_until



def ids(n: int) -> List[str]:
    return [f"m-{uuid.uuid4().hex[:12]}-{i}" for i in range(n)]


def message_ids(messages: List[Any]) -> Counter:
    return Counter(json.loads(m.value())["messageId"] for m in messages)


def has_all(wanted: List[str]):
    def check(messages: List[Any]) -> bool:
        return len(message_ids(messages).keys() & set(wanted)) == len(wanted)

    return check


def make_sink(broker: Broker, spool_dir: str, **options: Any) -> KafkaSink:
    options = {
        "topic": "raw-events",
        "spool_dir": spool_dir,
        "delivery_timeout": 1.0,
        "probe_timeout": 0.5,
        "retry_backoff": 0.2,
        "retry_backoff_max": 1.0,
        "linger": 0.01,
        "exit_timeout": None,
        "config": dict(FAST_KAFKA),
        **options,
    }
    return KafkaSink(broker.bootstrap, **options)


def test_events_arrive_with_key_value_and_headers(running_broker: Broker, spool_dir: str, pixels: Any) -> None:
    running_broker.create_topic("raw-events")
    sink = make_sink(running_broker, spool_dir)
    client = pixels(sink)
    try:
        response = client.get("/v1/pixel/track?wk=KEY&e=Email+Opened&uid=user-1&mid=a1&p.campaign=c7")
        response.close()
        response = client.get("/v1/pixel/page?wk=KEY&e=Home&aid=anon-9&mid=a2")
        response.close()
        assert sink.flush(10)
    finally:
        sink.close(5)
    messages = running_broker.consume("raw-events", lambda ms: len(ms) >= 2, timeout=20)
    by_id = {json.loads(m.value())["messageId"]: m for m in messages}
    assert set(by_id) == {"a1", "a2"}

    track = by_id["a1"]
    assert track.key() == b"user-1"
    value = json.loads(track.value())
    assert value["type"] == "track" and value["event"] == "Email Opened" and value["userId"] == "user-1"
    assert value["properties"] == {"campaign": "c7"}
    assert "KEY" not in track.value().decode()  # the write key never travels in the event
    assert dict(track.headers()) == {"type": b"track", "dialect": b"compact"}

    page = by_id["a2"]
    assert page.key() == b"anon-9"  # no userId: keyed by anonymousId
    assert dict(page.headers())["type"] == b"page"
    assert sink.stats["delivered"] == 2
    assert os.listdir(spool_dir) == []


def test_broker_down_at_start_then_started_delivers_all(broker: Broker, spool_dir: str, pixels: Any) -> None:
    wanted = ids(1000)
    sink = make_sink(broker, spool_dir)
    try:
        timings = fire(pixels(sink), wanted)
        assert max(timings) < 0.5, "a pixel waited on the absent broker"
        assert sink.flush(15)  # everything is spooled by now
        assert sink.spool.stats["spooled"] == 1000
        broker.start()
        messages = broker.consume("raw-events", has_all(wanted), timeout=30)
    finally:
        sink.close(5)
    seen = message_ids(messages)
    assert set(wanted) <= seen.keys(), f"{len(set(wanted) - seen.keys())} events never arrived"
    assert sink.spool.stats["overflowed"] == 0


def test_broker_stopped_mid_stream_and_back(running_broker: Broker, spool_dir: str, pixels: Any) -> None:
    """The broker stops answering (SIGSTOP) in the middle of 5,000 pixels and comes back (SIGCONT).

    A pause rather than a kill: tansu keeps topics in memory, and what it had
    stored must still be there to count what arrived.
    """
    running_broker.create_topic("raw-events")
    wanted = ids(5000)
    sink = make_sink(running_broker, spool_dir)
    client = pixels(sink)
    try:
        timings = fire(client, wanted[:2000])
        running_broker.pause()
        timings += fire(client, wanted[2000:])
        assert max(timings) < 0.5, "a pixel waited on the stopped broker"
        assert wait_until(lambda: sink.stats["failed_batches"] >= 1, 10), "the outage went unnoticed"
        running_broker.resume()
        messages = running_broker.consume("raw-events", has_all(wanted), timeout=40)
    finally:
        sink.close(5)
    seen = message_ids(messages)
    missing = set(wanted) - seen.keys()
    assert not missing, f"{len(missing)} of 5000 events never arrived"
    duplicates = sum(count - 1 for count in seen.values())
    print(f"5000 events delivered, {duplicates} duplicates, sink stats {sink.stats}, spool {sink.spool.stats}")
    assert sink.spool.stats["spooled"] > 0, "the outage should have spooled events"


def test_broker_killed_and_restarted_between_bursts(broker: Broker, spool_dir: str, pixels: Any) -> None:
    """A real stop and restart: what came before is read back before the kill, what came during is replayed."""
    broker.start()
    broker.create_topic("raw-events")
    first, second = ids(500), ids(500)
    sink = make_sink(broker, spool_dir)
    client = pixels(sink)
    try:
        fire(client, first)
        assert sink.flush(10)
        before = broker.consume("raw-events", has_all(first), timeout=20)
        broker.stop()
        fire(client, second)
        assert sink.flush(15)
        broker.start()
        after = broker.consume("raw-events", has_all(second), timeout=30)
    finally:
        sink.close(5)
    assert set(first) <= message_ids(before).keys()
    assert set(second) <= message_ids(after).keys()


SUBPROCESS = textwrap.dedent(
    """
    import os, signal, sys
    from werkzeug.test import Client
    from pixel_middleware import KafkaSink, PixelMiddleware
    bootstrap, spool_dir, how = sys.argv[1:4]
    sink = KafkaSink(bootstrap, spool_dir=spool_dir, delivery_timeout=0.5, probe_timeout=0.2,
                     retry_backoff=5, exit_timeout=3)
    client = Client(PixelMiddleware(None, sink=sink))
    for i in range(200):
        client.get(f"/v1/pixel/track?wk=K&e=Opened&uid=u{i % 7}&mid=sub-{i}").close()
    if how == "kill":
        assert sink.flush(10)  # spooled on disk, then killed without a chance to close
        os.kill(os.getpid(), signal.SIGKILL)
    # graceful: falls off the end; the interpreter's exit closes the sink
    """
)


@pytest.mark.parametrize("how", ["graceful", "kill"])
def test_events_spooled_by_a_stopped_process_are_delivered_after_restart(
    broker: Broker, spool_dir: str, how: str
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, broker.bootstrap, spool_dir, how],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == (0 if how == "graceful" else -9), done.stderr.decode()[-2000:]
    assert time.monotonic() - started < 20
    assert os.listdir(spool_dir), "the stopped process left nothing in the spool"
    broker.start()
    wanted = [f"sub-{i}" for i in range(200)]
    sink = make_sink(broker, spool_dir)  # a new process's sink on the same directory replays at start
    try:
        messages = broker.consume("raw-events", has_all(wanted), timeout=30)
    finally:
        sink.close(5)
    assert set(wanted) <= message_ids(messages).keys()
    assert not [n for n in os.listdir(spool_dir) if n.endswith(".spool") or ".claim-" in n]


def test_kafka_url(spool_dir: str) -> None:
    sink = sink_from_url(
        f"kafka://127.0.0.1:1,127.0.0.1:2/clicks?acks=1&compression.type=gzip&spool_dir={spool_dir}"
        "&delivery_timeout=3&batch_size=50&exit_timeout=1"
    )
    try:
        assert isinstance(sink, KafkaSink)
        assert sink.topic == "clicks"
        assert sink.config["bootstrap.servers"] == "127.0.0.1:1,127.0.0.1:2"
        assert sink.config["acks"] == "1" and sink.config["compression.type"] == "gzip"
        assert sink.config["message.timeout.ms"] == 3000
        assert sink.spool.directory == spool_dir
        assert sink._worker.batch_size == 50
    finally:
        sink.close(0)
    with pytest.raises(ValueError, match="batch_size"):
        sink_from_url("kafka://127.0.0.1:1/t?batch_size=many")
    with pytest.raises(ValueError, match="names no broker") as error:
        sink_from_url("kafka:///t?sasl.password=s3cret")
    assert "s3cret" not in str(error.value)
    # Read as a broker, user:password@ would end up in the sink's name, metrics and logs.
    with pytest.raises(ValueError, match="credentials go in the query") as error:
        sink_from_url("kafka://alice:s3cret@127.0.0.1:1/t")
    assert "s3cret" not in str(error.value)


def test_default_topic_and_bad_config(spool_dir: str) -> None:
    sink = KafkaSink("127.0.0.1:1", spool_dir=spool_dir, exit_timeout=None)
    try:
        assert sink.topic == "raw-events" and sink.config["acks"] == "all"
    finally:
        sink.close(0)
    with pytest.raises(Exception, match="no.such.setting"):
        KafkaSink("127.0.0.1:1", spool_dir=spool_dir, config={"no.such.setting": 1})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sink_built_before_a_fork_delivers_from_the_child(running_broker: Broker, spool_dir: str, pixels: Any) -> None:
    """gunicorn --preload: the sink is built in the master; each forked worker gets its own producer and thread."""
    running_broker.create_topic("raw-events")
    sink = make_sink(running_broker, spool_dir)
    client = pixels(sink)
    try:
        fire(client, ["before-fork"])
        assert sink.flush(10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                fire(client, ["from-child"])
                code = 0 if sink.flush(10) and sink.stats["delivered"] == 2 else 2
                sink.close(5)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        fire(client, ["parent-after"])
        assert sink.flush(10)
    finally:
        sink.close(5)
    wanted = ["before-fork", "from-child", "parent-after"]
    seen = message_ids(running_broker.consume("raw-events", has_all(wanted), timeout=20))
    assert seen["before-fork"] == 1 and seen["from-child"] == 1 and seen["parent-after"] == 1


def test_missing_confluent_kafka_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['confluent_kafka'] = None\n"
        "from pixel_middleware import KafkaSink\n"
        "try:\n"
        "    KafkaSink('127.0.0.1:1')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert b"pixel-middleware[kafka]" in done.stdout, done.stderr
