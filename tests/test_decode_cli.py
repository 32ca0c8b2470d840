"""`pixel-middleware decode URL`: the event a URL decodes to, or why it is rejected; nothing is sent."""
from __future__ import annotations

import json

import pytest

from pixel_middleware import build_pixel_url
from pixel_middleware.cli import main

URL = build_pixel_url("http://x.test/", "Signup", user_id="u1", write_key="WK-secret")


def test_decode_prints_the_event(capsys: pytest.CaptureFixture) -> None:
    assert main(["decode", URL]) == 0
    event = json.loads(capsys.readouterr().out)
    assert (event["type"], event["event"], event["userId"]) == ("track", "Signup", "u1")
    assert "WK-secret" not in json.dumps(event)


@pytest.mark.parametrize("argv, reason", [
    pytest.param(["decode", URL, "--write-key", "other"], "invalid_write_key", id="wrong-key"),
    pytest.param(["decode", URL.replace("wk=WK-secret&", ""), "--dialect", "compact"], "missing_write_key", id="no-key"),
    pytest.param(["decode", "http://x.test/nowhere?wk=WK-secret"], "not_a_pixel_route", id="not-a-route"),
])
def test_decode_explains_a_rejection(argv: list, reason: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 1
    out = capsys.readouterr()
    assert out.err.startswith(reason) and out.out == ""
    assert "WK-secret" not in out.err
