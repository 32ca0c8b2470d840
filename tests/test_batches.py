"""serve's workers answer a pixel at once and record its event in a batch with the next ones (pixel_middleware.server.batches)."""
from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, build_click_url
from pixel_middleware.core.gif import GIF
from pixel_middleware.server.batches import Batches

KEY = "batch-signing-key"


def pixel(n: int, write_key: str = "k") -> str:
    return f"/v1/pixel/track?wk={write_key}&e=Open&uid=u{n}&mid=m{n}"


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


def batches(sink: MemorySink, **kwargs) -> Batches:
    middleware = PixelMiddleware(None, sink=sink, write_keys=["k"], signing_key=KEY,
                                 require_signature=False, click_allowed_hosts=["good.example"])
    return Batches(middleware, **kwargs)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.005)


def test_a_batch_is_recorded_when_it_fills_each_event_stamped_when_it_arrived(sink):
    app = batches(sink, size=4, linger=3600)
    client = Client(app)
    stamps = []
    for n in range(3):
        response = client.get(pixel(n))
        assert (response.status_code, response.data, response.headers["Content-Type"]) == (200, GIF, "image/gif")
        stamps.append(datetime.now().astimezone())
        time.sleep(0.02)
    assert sink.events == []  # held, answered
    client.get(pixel(3, write_key="wrong"))  # fills the batch; its own event is refused
    assert [e["userId"] for e in sink.events] == ["u0", "u1", "u2"]
    assert app.middleware.rejections == {"invalid_write_key": 1}
    received = [datetime.fromisoformat(e["receivedAt"].replace("Z", "+00:00")) for e in sink.events]
    # Each when it arrived (20 ms apart), not when the batch was recorded (all within a millisecond).
    assert received == sorted(received) and len(set(received)) == 3
    assert all(r <= s for r, s in zip(received, stamps))


def test_a_batch_that_does_not_fill_is_recorded_after_its_linger(sink):
    app = batches(sink, size=100, linger=0.5)
    client = Client(app)
    started = time.monotonic()
    client.get(pixel(1))
    assert sink.events == []
    wait_for(lambda: sink.events)
    assert time.monotonic() - started >= 0.5
    client.get(pixel(2))  # the timer thread waits for the next batch, and records it too
    wait_for(lambda: len(sink.events) == 2)
    app.close(5)


def test_close_records_what_is_held_and_returns_at_once(sink):
    app = batches(sink, size=100, linger=3600)
    client = Client(app)
    for n in range(3):
        client.get(pixel(n))
    started = time.monotonic()
    app.close(30)
    assert time.monotonic() - started < 5
    assert [e["userId"] for e in sink.events] == ["u0", "u1", "u2"]


def test_close_returns_at_once_when_the_timer_thread_waits_for_a_next_batch(sink):
    app = batches(sink, size=100, linger=0.01)
    Client(app).get(pixel(1))
    wait_for(lambda: sink.events)
    time.sleep(0.05)  # the timer thread is back waiting for a first request
    started = time.monotonic()
    app.close(30)
    assert time.monotonic() - started < 5
    assert not app._holder._thread.is_alive()


def test_head_other_methods_clicks_and_other_paths_are_answered_as_the_middleware_answers(sink):
    app = batches(sink, size=100, linger=3600)
    client = Client(app)
    assert client.head(pixel(1)).status_code == 200
    assert client.post(pixel(2)).status_code == 405
    assert client.get("/elsewhere").status_code == 404
    click = build_click_url("http://localhost", "https://good.example/offer", user_id="u7", write_key="k",
                            signing_key=KEY)
    response = client.get(click.replace("http://localhost", ""))
    assert (response.status_code, response.headers["Location"]) == (302, "https://good.example/offer")
    # The click was decided and recorded before its answer; nothing else was held.
    assert [e["userId"] for e in sink.events] == ["u7"]
    app.close(5)
    assert len(sink.events) == 1


def test_requests_from_many_threads_are_each_recorded_once(sink):
    app = batches(sink, size=16, linger=0.01)
    threads_, per_thread = 8, 150

    def send(t: int) -> None:
        client = Client(app)
        for i in range(per_thread):
            assert client.get(pixel(t * 1000 + i)).status_code == 200

    workers = [threading.Thread(target=send, args=(t,)) for t in range(threads_)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    app.close(5)
    ids = [e["messageId"] for e in sink.events]
    assert len(ids) == threads_ * per_thread and len(set(ids)) == len(ids)


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"linger": 0}, {"linger": float("nan")}])
def test_a_batch_that_could_never_be_recorded_is_refused(sink, kwargs):
    with pytest.raises(ValueError):
        batches(sink, **kwargs)
