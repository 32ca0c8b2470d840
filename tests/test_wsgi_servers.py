"""Every answered pixel is recorded on every PEP 3333 server, inline and ``after_response``.

granian and bjoern never call ``close()`` on a response body that is a ``list``; a body that
records its event in ``close()`` must therefore not be one (it was, and on granian every event
of ``after_response`` was lost without a word).
"""
from __future__ import annotations

import importlib.util
import urllib.request
from pathlib import Path
from typing import Any, List

import pytest

from pixel_middleware.core.gif import GIF
from tests.helpers import free_port, wait_until

SERVERS = {
    "gunicorn-sync": lambda port: ["-m", "gunicorn", "-w", "1", "-k", "sync",
                                   "-b", f"127.0.0.1:{port}", "tests.servers.pixel_app:app"],
    "gunicorn-gthread": lambda port: ["-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4",
                                      "-b", f"127.0.0.1:{port}", "tests.servers.pixel_app:app"],
    "granian": lambda port: ["-m", "granian", "--interface", "wsgi", "--workers", "1",
                             "--host", "127.0.0.1", "--port", str(port), "tests.servers.pixel_app:app"],
}


@pytest.mark.parametrize("after_response", [False, True], ids=["inline", "after-response"])
@pytest.mark.parametrize("server", list(SERVERS))
def test_every_answered_pixel_is_recorded(start: Any, tmp_path: Path, server: str, after_response: bool) -> None:
    if server == "granian" and importlib.util.find_spec("granian") is None:
        pytest.fail("granian is not installed (the test extra installs it)")
    port = free_port()
    events = tmp_path / "events.jsonl"
    start(SERVERS[server](port), port, env={"PIXEL_TEST_EVENTS": str(events),
                                            "PIXEL_TEST_AFTER_RESPONSE": "1" if after_response else "0"})
    answered: List[str] = []
    for i in range(50):
        mid = f"{server}-{i}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/pixel/track?wk=k&e=Opened&uid=u&mid={mid}",
                                    timeout=10) as answer:
            assert answer.status == 200 and answer.read() == GIF
            answered.append(mid)

    def recorded() -> List[str]:
        import json

        return [json.loads(line)["messageId"] for line in events.read_text().splitlines()] if events.exists() else []

    assert wait_until(lambda: sorted(recorded()) == sorted(answered), 10), (len(recorded()), len(answered))
