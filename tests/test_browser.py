"""A real browser opens the Flask example's email preview, and its pixel request becomes the event;
it follows the email's tracked link to the shop's page, and the click becomes an event.

Headless Chromium (Debian's ``chromium``) loads the page from a live loopback
server with ``--dump-dom``, which returns after the load event, that is after
the pixel image was fetched. Where Chromium is absent the test skips, except
under CI (``CI`` set), where a missing browser is a failure.
"""
from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from werkzeug.serving import make_server

from pixel_middleware import MemorySink, event_received
from tests.helpers import CHROMIUM_FLAGS, free_port

ROOT = Path(__file__).resolve().parent.parent
def load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("flask_example_app", ROOT / "examples" / "flask_app" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flask finds the example's templates through its module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


@pytest.fixture
def live_example() -> Iterator[tuple]:
    """The Flask example on a loopback port in a thread, with a memory sink; shut down afterwards."""
    sink = MemorySink()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # PIXEL_BASE_URL wins over the request's host, so the example must be told where it listens.
    app = load_example().create_app({"PIXEL_SINK": sink, "PIXEL_WRITE_KEY": "browser-key", "PIXEL_BASE_URL": base})
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, sink, base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_chromium_loads_the_email_preview_and_its_pixel_is_recorded(
    chromium: str, live_example: tuple, tmp_path: Path
) -> None:
    app, sink, base = live_example
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=30).stdout
    major = re.search(r"(\d+)\.\d+\.\d+\.\d+", version)
    received = []
    with event_received.connected_to(lambda sender, **kw: received.append(sender), sender=app):
        result = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
             f"{base}/emails/welcome/preview?user=u-1002"],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert result.returncode == 0, result.stderr
    assert '<img src="' + base + "/v1/pixel/track?" in result.stdout, result.stdout
    (event,) = sink.events
    assert (event["type"], event["event"], event["userId"]) == ("track", "Email Opened", "u-1002")
    assert event["properties"] == {"campaign_id": "welcome"}
    agent = event["context"]["userAgent"]
    assert "HeadlessChrome/" in agent
    if major:
        assert f"HeadlessChrome/{major.group(1)}." in agent
    assert event["context"]["ip"] == "127.0.0.1"
    assert received == [app]
    assert app.extensions["open_counter"].counts() == {"welcome": 1}


def test_chromium_follows_a_tracked_link_to_its_page_and_the_click_is_recorded(
    chromium: str, live_example: tuple, tmp_path: Path
) -> None:
    app, sink, base = live_example

    def dump(url: str) -> str:
        result = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    preview = dump(f"{base}/emails/spring-sale/preview?user=u-1001")
    link = re.search(r'<a href="([^"]+)" id="cta"', preview)
    assert link, preview
    click = html.unescape(link.group(1))
    assert click.startswith(f"{base}/v1/click?") and "&sig=" in click
    landed = dump(click)  # Chromium follows the 302 and renders the target page
    assert '<h1 id="landed">Shop: sale</h1>' in landed, landed
    (clicked,) = [event for event in sink.events if event["event"] == "Email Link Clicked"]
    assert clicked["userId"] == "u-1001" and clicked["context"]["pixel"]["signed"] is True
    assert clicked["properties"] == {"campaign_id": "spring-sale", "link_url": f"{base}/shop/sale"}
    assert "HeadlessChrome/" in clicked["context"]["userAgent"]
