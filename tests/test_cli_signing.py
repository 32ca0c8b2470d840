"""The CLI with signing: ``url --signing-key`` / ``--click``, ``serve`` checking signatures and guarding clicks."""
from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from urllib.parse import quote, urlsplit

import pytest

from pixel_middleware import build_pixel_url
from tests.helpers import ROOT, free_port

KEY = "cli-signing-key"


def run_url(*args: str, env: dict = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pixel_middleware", "url", *args],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    return done.stdout.strip()


def fetch(port: int, url: str):  # type: ignore[no-untyped-def]
    parts = urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
        response = connection.getresponse()
        return response.status, response.headers, response.read()  # names in any case, as HTTP has them
    finally:
        connection.close()


def test_serve_checks_signatures_and_guards_clicks(start):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start(
        ["-m", "pixel_middleware", "serve", "--port", str(port), "--require-signature",
         "--click-allowed-host", "docs.example", "--click-allowed-host", "*.shop.example"],
        port,
        {"PIXEL_SIGNING_KEY": KEY},
    )
    signed = run_url(base, "Email Opened", "--user-id", "u1", "--write-key", "wk", env={"PIXEL_SIGNING_KEY": KEY})
    assert "&sig=" in signed
    assert fetch(port, signed)[0] == 200
    fetch(port, build_pixel_url(base, "Email Opened", user_id="u2", write_key="wk"))
    process.wait_for(lambda line: "pixel rejected: missing_signature" in line)
    click = run_url(base, "--click", "https://anywhere.example/a", "--user-id", "u3", "--write-key", "wk",
                    "--signing-key", KEY)
    status, headers, _ = fetch(port, click)
    assert status == 302 and headers["Location"] == "https://anywhere.example/a"
    allowed = f"/v1/click?wk=wk&uid=u4&url={quote('https://www.shop.example/x', safe='')}"
    assert fetch(port, allowed)[0] == 302  # redirected, though unsigned (recorded nothing: signatures required)
    status, headers, _ = fetch(port, f"/v1/click?wk=wk&uid=u5&url={quote('https://evil.example/', safe='')}")
    assert status == 400 and "Location" not in headers
    process.wait_for(lambda line: "pixel rejected: unsafe_redirect" in line)
    process.wait_for(lambda line: '"Email Link Clicked"' in line)
    process.stop()
    lines = process.output().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(e["event"], e["userId"]) for e in events] == [("Email Opened", "u1"), ("Email Link Clicked", "u3")]
    assert not any(KEY in line for line in lines), "the signing key was logged"


def test_require_signature_without_a_key_is_refused():
    done = subprocess.run(
        [sys.executable, "-m", "pixel_middleware", "serve", "--require-signature"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PIXEL_SIGNING_KEY"},
    )
    assert done.returncode == 2 and "--require-signature / PIXEL_REQUIRE_SIGNATURE needs --signing-key" in done.stderr


def run_cli(*args: str, env: dict = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    return subprocess.run([sys.executable, "-m", "pixel_middleware", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**clean, **(env or {})})


def test_url_click_refuses_a_click_url_the_route_would_refuse():
    done = run_cli("url", "https://c.example", "--click", "https://shop.example/sale", "--write-key", "wk")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    for name in ("--signing-key", "PIXEL_SIGNING_KEY", "--click-allowed-host", "PIXEL_CLICK_ALLOWED_HOSTS"):
        assert name in line
    assert "wk" not in line.replace("would never", "")  # the write key is not quoted


@pytest.mark.parametrize("args, env", [
    pytest.param(["--click-allowed-host", "shop.example"], {}, id="flag"),
    pytest.param([], {"PIXEL_CLICK_ALLOWED_HOSTS": "other.example,*.shop.example,shop.example"}, id="env"),
])
def test_url_click_to_an_allowed_host_is_built_unsigned(args, env):
    done = run_cli("url", "https://c.example", "--click", "https://shop.example/sale", "--write-key", "wk", *args,
                   env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("https://c.example/v1/click?") and "sig=" not in done.stdout


@pytest.mark.parametrize("base", ["example.com", "/relative", "ftp://example.com", "https://"])
def test_url_needs_an_absolute_http_base(base):
    done = run_cli("url", base, "Email Opened", "--write-key", "wk")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("pixel-middleware url: ") and "absolute" in line


def test_url_refuses_an_empty_signing_key():
    done = run_cli("url", "https://c.example", "E", "--write-key", "wk", env={"PIXEL_SIGNING_KEY": ""})
    assert done.returncode == 2 and "PIXEL_SIGNING_KEY is blank" in done.stderr


def test_version():
    import pixel_middleware

    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"pixel-middleware {pixel_middleware.__version__}"


@pytest.mark.parametrize("command", [[], ["serve"], ["url"], ["decode"]])
def test_help_is_plain_text(command):
    done = run_cli(*command, "--help")
    assert done.returncode == 0 and "usage: pixel-middleware" in done.stdout
    assert not re.search(r"``|:(?:func|class|mod|data|meth):", done.stdout), done.stdout


@pytest.mark.parametrize("args, env", [
    pytest.param(["--signing-key", ""], {}, id="flag"),
    pytest.param([], {"PIXEL_SIGNING_KEY": ""}, id="env"),
    pytest.param(["--signing-key", "k", "--signing-key-fallback", ""], {}, id="empty-fallback"),
])
def test_serve_refuses_an_empty_signing_key_rather_than_checking_nothing(args, env):
    done = run_cli("serve", "--port", str(free_port()), *args, env=env)
    assert done.returncode == 2 and "blank" in done.stderr and "Traceback" not in done.stderr
