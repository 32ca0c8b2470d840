"""`pixel-middleware decode URL`: the event a URL decodes to, or why it is rejected; nothing is sent."""
from __future__ import annotations

import json

import pytest

from pixel_middleware import build_pixel_url
from pixel_middleware.server.cli import main

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


# -- signatures: decode gives the verdict the routes would give, with serve's key options --------------

KEY = "decode-signing-key"
SIGNED = build_pixel_url("http://x.test/", "Signup", user_id="u1", write_key="WK-secret", signing_key=KEY)
TAMPERED = SIGNED.replace("uid=u1", "uid=u2")


@pytest.fixture(autouse=True)
def _no_signing_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIXEL_SIGNING_KEY", "PIXEL_SIGNING_KEY_FALLBACKS", "PIXEL_REQUIRE_SIGNATURE", "PIXEL_SIGNATURE_MAX_AGE"):
        monkeypatch.delenv(name, raising=False)


def verdict(argv: list, capsys: pytest.CaptureFixture) -> tuple:
    code = main(argv)
    out = capsys.readouterr()
    assert KEY not in out.out + out.err and "old-key" not in out.out + out.err
    return code, out


@pytest.mark.parametrize("argv, env, reason", [
    pytest.param(["decode", TAMPERED], {"PIXEL_SIGNING_KEY": KEY}, "bad_signature", id="env-key-tampered"),
    pytest.param(["decode", TAMPERED, "--signing-key", KEY], {}, "bad_signature", id="flag-key-tampered"),
    pytest.param(["decode", SIGNED, "--signing-key", "another"], {}, "bad_signature", id="wrong-key"),
    pytest.param(["decode", URL, "--signing-key", KEY, "--require-signature"], {}, "missing_signature",
                 id="flag-required"),
    pytest.param(["decode", URL], {"PIXEL_SIGNING_KEY": KEY, "PIXEL_REQUIRE_SIGNATURE": "yes"}, "missing_signature",
                 id="env-required"),
])
def test_decode_rejects_what_the_routes_reject(argv, env, reason, capsys, monkeypatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out = verdict(argv, capsys)
    assert code == 1 and out.err.startswith(reason + ":") and out.out == ""


@pytest.mark.parametrize("argv, env", [
    pytest.param(["decode", SIGNED, "--signing-key", KEY], {}, id="flag-key"),
    pytest.param(["decode", SIGNED], {"PIXEL_SIGNING_KEY": KEY}, id="env-key"),
    pytest.param(["decode", SIGNED, "--signing-key", "new-key", "--signing-key-fallback", "x",
                  "--signing-key-fallback", KEY], {}, id="repeated-fallback-flags"),
    pytest.param(["decode", SIGNED], {"PIXEL_SIGNING_KEY": "new-key", "PIXEL_SIGNING_KEY_FALLBACKS": f"x,{KEY}"},
                 id="env-fallbacks"),
])
def test_decode_accepts_a_signed_url_with_the_key_or_a_fallback(argv, env, capsys, monkeypatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out = verdict(argv, capsys)
    assert code == 0
    event = json.loads(out.out)
    assert event["userId"] == "u1" and event["context"]["pixel"]["signed"] is True


@pytest.mark.parametrize("max_age", [["--signature-max-age", "60"], []])
def test_decode_rejects_an_expired_signature(max_age, capsys, monkeypatch) -> None:
    import time

    real_time = time.time
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: real_time() - 3600)
        old = build_pixel_url("http://x.test/", "Signup", user_id="u1", write_key="WK-secret", signing_key=KEY)
    if not max_age:
        monkeypatch.setenv("PIXEL_SIGNATURE_MAX_AGE", "60")
    code, out = verdict(["decode", old, "--signing-key", KEY, *max_age], capsys)
    assert code == 1 and out.err.startswith("signature_expired:")


@pytest.mark.parametrize("argv, env, message", [
    pytest.param(["decode", SIGNED, "--signing-key", ""], {}, "--signing-key / PIXEL_SIGNING_KEY is blank", id="empty-flag"),
    pytest.param(["decode", SIGNED], {"PIXEL_SIGNING_KEY": ""}, "--signing-key / PIXEL_SIGNING_KEY is blank", id="empty-env"),
    pytest.param(["decode", SIGNED, "--require-signature"], {}, "--require-signature / PIXEL_REQUIRE_SIGNATURE needs --signing-key", id="required-without-key"),
    pytest.param(["decode", SIGNED, "--signing-key", KEY, "--signature-max-age", "-1"], {}, "--signature-max-age / PIXEL_SIGNATURE_MAX_AGE must be above 0",
                 id="negative-age"),
    pytest.param(["decode", SIGNED], {"PIXEL_REQUIRE_SIGNATURE": "maybe"}, "PIXEL_REQUIRE_SIGNATURE must be",
                 id="bad-env-bool"),
])
def test_decode_refuses_bad_key_options(argv, env, message, capsys, monkeypatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out = verdict(argv, capsys)
    assert code == 2 and out.out == ""
    (line,) = out.err.splitlines()
    assert line.startswith("pixel-middleware decode: ") and message in line
