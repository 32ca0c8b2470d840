"""FileSink: JSON lines appended to a real file, by threads and by several processes, across rotation."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

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
