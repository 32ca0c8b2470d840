"""The test project as processes: ``manage.py check``, a management command, gunicorn and uvicorn serving it."""
from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from pixel_middleware.core.gif import GIF
from tests.helpers import ROOT, free_port, wait_until

HERE = Path(__file__).resolve().parent


def env(settings: Optional[Dict[str, Any]] = None, **extra: str) -> Dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "pixeltest.settings", "PIXEL_TEST_SETTINGS": json.dumps(settings or {}), **extra}


def manage(*args: str, settings: Optional[Dict[str, Any]] = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=HERE, env=env(settings, **extra),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("settings, ids", [
    pytest.param({}, [], id="clean"),
    pytest.param({"PIXEL_BASE_URL": None}, ["pixel.W001"], id="no-base-url"),
    pytest.param({"PIXEL_SIGNING_KEY": False, "PIXEL_CLICK_ALLOWED_HOSTS": None}, ["pixel.W002"], id="clicks-unfollowed"),
    pytest.param({"PIXEL_WRITE_KEYS": ["other-key"]}, ["pixel.E002"], id="write-key-not-accepted"),
    pytest.param({"PIXEL_DEDUP": "0", "PIXEL_IP": "sometimes"}, ["pixel.E001", "pixel.E001"], id="table-errors"),
    pytest.param({"PIXEL_REQUIRE_SIGNATURE": True, "PIXEL_SIGNING_KEY": False}, ["pixel.E001"], id="contradiction"),
    pytest.param({"MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware",
                                 "pixel_middleware.django.PixelMiddleware"]}, ["pixel.W003"], id="order"),
])
def test_manage_py_check(settings: Dict[str, Any], ids: List[str]) -> None:
    done = manage("check", settings=settings)
    out = done.stdout + done.stderr
    assert sorted(re.findall(r"\(pixel\.[EW]\d{3}\)", out)) == [f"({i})" for i in sorted(ids)], out
    assert (done.returncode != 0) == any(i.startswith("pixel.E") for i in ids), out
    if "PIXEL_DEDUP" in settings:
        assert "PIXEL_DEDUP" in out and "PIXEL_IP" in out  # each named by its setting
    assert "test-secret-key" not in out and "site-key" not in out  # no secret in the report


def test_management_command_renders_from_base_url(tmp_path: Path) -> None:
    done = manage("send_campaign")
    assert done.returncode == 0, done.stderr
    urls = [html.unescape(u) for u in re.findall(r'(?:src|href)="([^"]+)"', done.stdout)]
    assert urls and all(u.startswith("https://mail.example.com/v1/") for u in urls if "mailto" not in u)
    assert any("&sig=" in u for u in urls)  # signed with SECRET_KEY
    failed = manage("send_campaign", settings={"PIXEL_BASE_URL": None})
    assert failed.returncode != 0 and "PIXEL_BASE_URL" in failed.stderr


class Server:
    def __init__(self, argv: List[str], sink: Path, db: Path) -> None:
        self.port = free_port()
        self.sink = sink
        extra = {"PIXEL_TEST_SINK": f"file:{sink}", "PIXEL_TEST_DB": str(db)}
        migrated = manage("migrate", "--verbosity", "0", **extra)
        assert migrated.returncode == 0, migrated.stderr
        argv = [a.replace("PORT", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(argv, cwd=HERE, env=env(**extra), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def wait(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/pixel/track", timeout=1).read()
                return True
            except OSError:
                return False

        assert wait_until(up, 30, 0.1), "server did not start"

    def get(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def events(self) -> List[Dict[str, Any]]:
        return [json.loads(line) for line in self.sink.read_text().splitlines()] if self.sink.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


SERVERS = {
    "gunicorn": [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", "127.0.0.1:PORT", "pixeltest.wsgi:application"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "PORT", "pixeltest.asgi:application"],
}


@pytest.fixture(params=sorted(SERVERS))
def server(request: Any, tmp_path: Path) -> Iterator[Server]:
    started = Server(SERVERS[request.param], tmp_path / "events.jsonl", tmp_path / "db.sqlite3")
    try:
        started.wait()
        yield started
    finally:
        started.stop()


def test_under_a_real_server(server: Server) -> None:
    status, headers, body = server.get("/v1/pixel/track?wk=site-key&e=Email+Opened&uid=u-1&p.campaign_id=s1")
    assert status == 200 and body == GIF and headers["Content-Type"] == "image/gif"
    assert headers["Cache-Control"] == "no-store, no-cache, must-revalidate"
    status, headers, body = server.get("/v1/pixel/track?wk=site-key&e=Head&uid=u-1", method="HEAD")
    assert status == 200 and headers["Content-Length"] == "43" and body == b""
    status, headers, _ = server.get("/v1/pixel/track?wk=site-key&e=Post&uid=u-1", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert server.get("/v1/click?wk=site-key&e=C&uid=u&url=https%3A%2F%2Fevil.example%2F")[0] == 400
    page = server.get("/email")
    assert page[0] == 200 and b"https://mail.example.com/v1/pixel/track?" in page[2]
    # The email's signed pixel (SECRET_KEY), fetched from the server: verified there.
    signed = html.unescape(re.search(r'<img src="([^"]+)"', page[2].decode()).group(1))
    assert server.get(signed.removeprefix("https://mail.example.com"))[0] == 200
    assert server.get("/nothing-here")[0] == 404

    def arrived() -> List[Dict[str, Any]]:
        events = server.events()
        return events if len(events) >= 2 else []

    events = wait_until(arrived, 10)
    assert [e["event"] for e in events] == ["Email Opened", "Email Opened"]
    assert events[1]["userId"] == "u-42" and events[1]["context"]["pixel"]["signed"] is True


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_a_setting_that_switches_a_protection_off_stops_the_server_at_start(name: str) -> None:
    """Django builds its middleware as the server starts: an empty signing key is named there, not at a pixel."""
    port = free_port()
    command = [part.replace("PORT", str(port)) for part in SERVERS[name]]
    done = subprocess.run(command, cwd=HERE, env=env({"PIXEL_SIGNING_KEY": ""}),
                          capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "ImproperlyConfigured" in out and "PIXEL_SIGNING_KEY" in out, out
    assert "test-secret-key" not in out and "site-key" not in out
