"""FileSink: JSON lines appended to a real file, by threads and by several processes, across rotation."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
from werkzeug.test import Client

from pixel_middleware import FileSink, PixelMiddleware, build_pixel_url, sink_from_url
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lines(path: str) -> list:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_pixels_become_lines_in_a_private_file(tmp_path) -> None:
    path = str(tmp_path / "events.jsonl")
    app = PixelMiddleware(None, sink=f"file:{path}")
    client = Client(app)
    for i in range(5):
        assert client.get(build_pixel_url("http://x", "Email Opened", user_id=f"u{i}", write_key="k")).status_code == 200
    app.close()
    events = lines(path)
    assert [e["userId"] for e in events] == [f"u{i}" for i in range(5)]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_bad_event_raises_before_anything_is_written(tmp_path) -> None:
    sink = FileSink(str(tmp_path / "e.jsonl"))
    with pytest.raises(ValueError):
        sink.emit({"x": float("inf")})
    sink.emit({"x": "\u2028"})
    sink.close()
    assert (tmp_path / "e.jsonl").read_bytes() == b'{"x":"\\u2028"}\n'


def test_threads_and_processes_append_whole_lines(tmp_path) -> None:
    path = str(tmp_path / "shared.jsonl")
    big = "x" * 20_000  # far beyond PIPE_BUF: lines must still land whole
    script = (
        "import sys; from pixel_middleware import FileSink\n"
        "s = FileSink(sys.argv[1])\n"
        "for i in range(300): s.emit({'p': sys.argv[2], 'i': i, 'pad': sys.argv[3]})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, path, str(n), big], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": ROOT}) for n in range(3)]
    sink = FileSink(path)
    threads = [threading.Thread(target=lambda t=t: [sink.emit({"p": f"t{t}", "i": i, "pad": big}) for i in range(300)])
               for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(p.wait(60) == 0 for p in procs)
    sink.close()
    seen = {(e["p"], e["i"]) for e in lines(path)}
    assert len(seen) == 1800 == len(lines(path))


def test_rotation_reopens_the_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "events.jsonl"
    sink = sink_from_url(f"file://{path}")
    assert isinstance(sink, FileSink) and sink.name == f"file:{path}"
    sink.emit({"n": 1})
    os.rename(path, tmp_path / "events.jsonl.1")  # what logrotate does
    sink._checked -= 2  # the once-a-second check is due
    sink.emit({"n": 2})
    sink.emit({"n": 3})
    sink.close()
    assert lines(str(tmp_path / "events.jsonl.1")) == [{"n": 1}]
    assert lines(str(path)) == [{"n": 2}, {"n": 3}]


@pytest.mark.parametrize("url", ["file:", "file://host/x.jsonl"])
def test_bad_file_urls(url) -> None:
    with pytest.raises(ValueError):
        sink_from_url(url)


def test_file_url_options_go_in_the_fragment(tmp_path) -> None:
    path = tmp_path / "held.jsonl"
    sink = sink_from_url(f"file:{path}#batch=3&linger=60")
    assert (sink.path, sink.batch, sink.linger) == (str(path), 3, 60.0)
    sink.emit({"n": 1})
    sink.emit({"n": 2})
    assert path.read_bytes() == b""  # held, as batch=3 says
    sink.emit({"n": 3})
    assert lines(str(path)) == [{"n": 1}, {"n": 2}, {"n": 3}]
    sink.close()
    assert not (tmp_path / "held.jsonl#batch=3&linger=60").exists()


@pytest.mark.parametrize("fragment, named", [("bacth=16", "'bacth' is unknown"), ("batch=", "batch=''"),
                                             ("batch=x", "batch='x'"), ("linger=0", "linger must be above 0"),
                                             ("linger=nan", "linger must be above 0"), ("batch=0", "at least 1")])
def test_a_file_url_option_that_is_unknown_or_would_not_hold_is_refused_by_name(tmp_path, fragment, named) -> None:
    with pytest.raises(ValueError, match=named):
        sink_from_url(f"file:{tmp_path / 'x.jsonl'}#{fragment}")


def test_held_lines_are_written_in_one_write_when_the_batch_fills_at_flush_and_at_close(tmp_path, monkeypatch) -> None:
    path = tmp_path / "held.jsonl"
    sink = FileSink(str(path), batch=3, linger=60)  # nothing written by the sink's thread meanwhile
    writes = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
    sink.emit({"n": 1})
    sink.emit({"n": 2})
    assert path.read_bytes() == b"" and sink.health()[0]["queue_depth"] == 2  # held
    sink.emit({"n": 3})  # the batch is full: one write carries all three
    assert writes == [b'{"n":1}\n{"n":2}\n{"n":3}\n']
    sink.emit({"n": 4})
    assert sink.flush() is True
    sink.emit({"n": 5})
    sink.close()  # and what it does when it stops
    assert lines(str(path)) == [{"n": i} for i in range(1, 6)]
    assert writes[1:] == [b'{"n":4}\n', b'{"n":5}\n']


def test_a_held_line_waits_at_most_the_hold_time_for_the_next_event(tmp_path, monkeypatch) -> None:
    from pixel_middleware.sinks import file as file_module

    clock = [100.0]
    monkeypatch.setattr(file_module.time, "monotonic", lambda: clock[0])
    path = tmp_path / "aged.jsonl"
    sink = FileSink(str(path), batch=100, linger=60)  # the sink's thread sleeps in real time
    sink.emit({"n": 1})
    clock[0] += 30
    sink.emit({"n": 2})
    assert path.read_bytes() == b""
    clock[0] += 60  # the first line has now waited longer than linger
    sink.emit({"n": 3})
    assert lines(str(path)) == [{"n": 1}, {"n": 2}, {"n": 3}]
    sink.close()


def test_held_lines_a_write_fails_for_are_counted_dead_lettered_not_raised_at_another_request(caplog) -> None:
    sink = FileSink("/dev/full", batch=2)  # every write fails: no space left on device
    sink.emit({"n": 1})
    sink.emit({"n": 2})  # fills the batch: the write fails, and this event's caller is not blamed
    sink.emit({"n": 3})
    sink.close()
    assert sink.health()[0]["dead_lettered"] == 3
    assert "could not write 2 held events" in caplog.text and "could not write 1 held events" in caplog.text
    unbatched = FileSink("/dev/full")
    with pytest.raises(OSError):  # one line at a time: the event's own request hears of it
        unbatched.emit({"n": 1})
    unbatched.close()


def test_threads_holding_lines_lose_none(tmp_path) -> None:
    path = str(tmp_path / "threads.jsonl")
    sink = FileSink(path, batch=7)
    threads = [threading.Thread(target=lambda t=t: [sink.emit({"t": t, "i": i}) for i in range(500)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    assert sorted((e["t"], e["i"]) for e in lines(path)) == [(t, i) for t in range(4) for i in range(500)]


def test_batch_must_be_positive(tmp_path) -> None:
    with pytest.raises(ValueError):
        FileSink(str(tmp_path / "x.jsonl"), batch=0)


@pytest.mark.parametrize("linger", [0, -1.0, float("nan")])
def test_linger_must_be_above_zero(tmp_path, linger) -> None:
    with pytest.raises(ValueError, match="linger"):
        FileSink(str(tmp_path / "x.jsonl"), batch=16, linger=linger)


def test_a_held_line_is_written_by_the_sinks_thread_when_no_event_follows(tmp_path) -> None:
    """The last pixel before a quiet spell: on disk within linger, not held until the next event or close."""
    path = tmp_path / "quiet.jsonl"
    sink = FileSink(str(path), batch=16, linger=0.3)
    try:
        for round_ in range(3):  # the thread goes back to waiting after each write
            began = time.monotonic()
            sink.emit({"n": round_})
            assert path.read_bytes().count(b"\n") == round_  # held
            while path.read_bytes().count(b"\n") == round_:
                assert time.monotonic() - began < 5, "the held line was never written"
                time.sleep(0.005)
            assert time.monotonic() - began >= 0.29  # it waited for followers first
    finally:
        sink.close()
    assert lines(str(path)) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_close_stops_the_sinks_thread_and_writes_what_it_held(tmp_path) -> None:
    path = tmp_path / "closed.jsonl"
    sink = FileSink(str(path), batch=16, linger=60)
    sink.emit({"n": 1})
    writer = sink._held._thread
    assert writer is not None and writer.is_alive()
    sink.close()
    writer.join(5)
    assert not writer.is_alive()
    assert lines(str(path)) == [{"n": 1}]


def test_a_forked_child_writes_its_held_lines_with_a_thread_of_its_own(tmp_path) -> None:
    """The parent's writer thread does not survive a fork (gunicorn --preload): the child starts its own."""
    path = tmp_path / "forked.jsonl"
    sink = FileSink(str(path), batch=16, linger=0.02)
    sink.emit({"from": "parent"})  # the parent's writer thread starts
    pid = os.fork()
    if pid == 0:  # the child: its line must reach the file with no later event and no close
        try:
            sink.emit({"from": "child"})
            began = time.monotonic()
            while b'"child"' not in path.read_bytes():
                if time.monotonic() - began > 5:
                    os._exit(1)
                time.sleep(0.01)
            os._exit(0)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    sink.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(e["from"] for e in lines(str(path))) == ["child", "parent"]
