"""The one options table: every front door refuses what would weaken a protection, naming the option.

Each defect of issue 18 is reproduced through the doors a user has: ``PixelMiddleware(...)``,
a Flask app's config, and ``serve`` with flags and with the environment.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from typing import Any, Dict, List

import pytest
from flask import Flask
from werkzeug.test import Client

from flask_pixel import Pixel
from pixel_middleware import MemorySink, PixelMiddleware, build_click_url, build_pixel_url
from pixel_middleware import options as table
from tests.helpers import ROOT, free_port

README = (ROOT / "README.md").read_text()


def serve(*flags: str, **env: str) -> subprocess.CompletedProcess:
    """``pixel-middleware serve`` as an operator runs it; it must stop before it serves anything."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    # A free port, in case a refusal is missed: then the collector runs until the timeout kills it.
    return subprocess.run([sys.executable, "-m", "pixel_middleware", "serve", *flags],
                          capture_output=True, text=True, timeout=20, cwd=ROOT,
                          env={**clean, "PYTHONPATH": str(ROOT), "PIXEL_PORT": str(free_port()), **env})


def refused(done: subprocess.CompletedProcess, *names: str) -> None:
    """Exit 2, one line on stderr naming the option, nothing on stdout."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and all(name in lines[0] for name in names), done.stderr
    assert done.stdout == ""


def flask_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"PIXEL_SINK": MemorySink(), "PIXEL_WRITE_KEY": "wk", **config})
    Pixel(app)
    return app


# -- blank signing keys and fallbacks: anyone could sign with "" -----------------------------

def test_an_empty_fallback_signs_nothing_in_the_middleware() -> None:
    """The open redirect: with "" accepted as a fallback, anyone's "" signature passed."""
    with pytest.raises(ValueError, match="signing_key_fallbacks"):
        PixelMiddleware(None, signing_key="real-key", signing_key_fallbacks=[""])
    with pytest.raises(ValueError, match="signing_key_fallbacks"):
        PixelMiddleware(None, signing_key="real-key", signing_key_fallbacks="  ")


@pytest.mark.parametrize("key", ["", " ", "\t\n", b"", b"  "])
def test_a_blank_signing_key_is_an_error_not_no_signing(key: Any) -> None:
    with pytest.raises(ValueError, match="signing_key is blank"):
        PixelMiddleware(None, signing_key=key)


def test_flask_secret_key_fallbacks_from_an_unset_variable_are_refused() -> None:
    # SECRET_KEY_FALLBACKS = os.environ.get("OLD_KEYS", "").split(",") is [""] when OLD_KEYS is unset.
    with pytest.raises(ValueError, match="SECRET_KEY_FALLBACKS"):
        flask_app(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS="".split(","))
    with pytest.raises(ValueError, match="PIXEL_SIGNING_KEY_FALLBACKS"):
        flask_app(PIXEL_SIGNING_KEY="k", PIXEL_SIGNING_KEY_FALLBACKS=["old", ""])


@pytest.mark.parametrize("config, named", [
    ({"SECRET_KEY": ""}, "SECRET_KEY"),
    ({"SECRET_KEY": "   "}, "SECRET_KEY"),
    ({"PIXEL_SIGNING_KEY": ""}, "PIXEL_SIGNING_KEY"),
    ({"SECRET_KEY": "fine", "PIXEL_SIGNING_KEY": " "}, "PIXEL_SIGNING_KEY"),
])
def test_flask_blank_keys_are_refused_naming_the_key(config: Dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=rf"^{named} is blank"):
        flask_app(**config)


def test_flask_without_secret_key_still_means_no_signing() -> None:
    app = flask_app(PIXEL_BASE_URL="https://mail.example")
    with app.app_context():
        assert "sig=" not in app.jinja_env.globals["pixel_url"]("Opened", "u1")
    assert app.extensions["pixel"].collector._verifier is None


def test_a_forged_empty_key_signature_is_no_longer_possible_anywhere() -> None:
    """What an attacker did: sign with "" and be recorded as signed, and redirect anywhere."""
    with pytest.raises(ValueError, match="signing_key is blank"):
        build_pixel_url("http://x.test", "Opened", user_id="u", write_key="k", signing_key="")
    with pytest.raises(ValueError, match="signing_key is blank"):  # the key's fault, not the host's
        build_click_url("http://x.test", "https://evil.test/", user_id="u", write_key="k", signing_key="")


@pytest.mark.parametrize("flags, env, named", [
    (("--signing-key", "k", "--signing-key-fallback", ""), {}, "--signing-key-fallback / PIXEL_SIGNING_KEY_FALLBACKS"),
    ((), {"PIXEL_SIGNING_KEY": "k", "PIXEL_SIGNING_KEY_FALLBACKS": "old,"}, "PIXEL_SIGNING_KEY_FALLBACKS"),
    (("--signing-key", ""), {}, "--signing-key / PIXEL_SIGNING_KEY is blank"),
    ((), {"PIXEL_SIGNING_KEY": ""}, "--signing-key / PIXEL_SIGNING_KEY is blank"),
    ((), {"PIXEL_SIGNING_KEY": "  "}, "PIXEL_SIGNING_KEY is blank"),
])
def test_serve_refuses_blank_keys_from_flags_and_environment(flags: Any, env: Dict[str, str], named: str) -> None:
    refused(serve(*flags, **env), named)


# -- booleans: only 1/true/yes/on and 0/false/no/off -------------------------------------------

@pytest.mark.parametrize("name", ["PIXEL_REQUIRE_SIGNATURE", "PIXEL_DEBUG_PAGE", "PIXEL_METRICS", "PIXEL_DNT"])
@pytest.mark.parametrize("value", ["", " ", "maybe", "2", "enabled"])
def test_serve_refuses_blank_or_unknown_booleans(name: str, value: str) -> None:
    refused(serve(**{name: value, "PIXEL_SIGNING_KEY": "k", "PIXEL_OPS_PORT": "9100"}), name)


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("Yes", True), ("on", True),
                                             ("0", False), ("False", False), ("NO", False), ("off", False)])
def test_booleans_read_in_any_case(value: str, expected: bool) -> None:
    assert table.option("dnt").check(value) is expected
    app = flask_app(PIXEL_DNT=value)
    assert app.extensions["pixel"].settings["dnt"] is expected


@pytest.mark.parametrize("value", ["", "maybe", 2, [True]])
def test_flask_and_python_refuse_blank_or_unknown_booleans(value: Any) -> None:
    with pytest.raises(ValueError, match="PIXEL_REQUIRE_SIGNATURE"):
        flask_app(SECRET_KEY="s", PIXEL_REQUIRE_SIGNATURE=value)
    with pytest.raises(ValueError, match="require_signature"):
        PixelMiddleware(None, signing_key="s", require_signature=value)


# -- dedup windows: a finite number above 0, from the option or a Redis URL ---------------------

@pytest.mark.parametrize("dedup", [0, -5, math.nan, math.inf, "nan", "inf", "0", "", "soon",
                                   "redis://127.0.0.1:6379/0?window=0", "redis://127.0.0.1:6379/0?window=nan",
                                   "redis://127.0.0.1:6379/0?window=-1", "redis://127.0.0.1:6379/0?window="])
def test_a_window_that_never_deduplicates_is_refused(dedup: Any) -> None:
    with pytest.raises(ValueError, match="^dedup"):
        PixelMiddleware(None, dedup=dedup)
    with pytest.raises(ValueError, match="^PIXEL_DEDUP"):
        flask_app(PIXEL_DEDUP=dedup)


@pytest.mark.parametrize("flags, env", [(("--dedup", "nan"), {}), ((), {"PIXEL_DEDUP": "0"}),
                                         (("--dedup", "redis://127.0.0.1:6379/0?window=0"), {}),
                                         ((), {"PIXEL_DEDUP": "redis://:pw@127.0.0.1:6379/0?window=inf"})])
def test_serve_refuses_a_window_that_never_deduplicates(flags: Any, env: Dict[str, str]) -> None:
    done = serve(*flags, **env)
    refused(done, "--dedup / PIXEL_DEDUP")
    assert "pw@" not in done.stderr


def test_a_redis_window_in_fractions_of_a_second_is_kept(redis_server: Any) -> None:
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, dedup=f"{redis_server.url}?window=0.3"))
    url = "/v1/pixel/track?wk=k&e=Open&uid=u&mid=m-fraction"
    client.get(url)
    client.get(url)
    import time

    time.sleep(0.4)
    client.get(url)
    assert len(sink.events) == 2


# -- every other number and choice ------------------------------------------------------------

@pytest.mark.parametrize("options, named", [
    ({"ip": "half"}, "ip must be one of full, anonymize, drop"),
    ({"machine_events": "sometimes"}, "machine_events must be one of keep, drop"),
    ({"privacy_signals": ""}, "privacy_signals is blank"),
    ({"signing_key": "k", "signature_max_age": 0}, "signature_max_age must be above 0"),
    ({"prefix": "t"}, "prefix must start with '/'"),
    ({"write_keys": []}, "write_keys is empty"),
    ({"write_keys": ["k", ""]}, "write_keys holds a blank item"),
    ({"dialects": ["compact", "klingon"]}, "dialects names unknown dialect 'klingon'"),
    ({"sink": ""}, "sink is blank"),
])
def test_python_values_outside_bounds_name_the_option(options: Dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        PixelMiddleware(None, **options)


def test_an_unknown_option_is_a_type_error_as_an_unknown_keyword_is() -> None:
    with pytest.raises(TypeError, match="signing_keys"):
        PixelMiddleware(None, signing_keys=["k"])


@pytest.mark.parametrize("name, value", [("PIXEL_READY_GRACE", "-1"), ("PIXEL_THREADS", "0"), ("PIXEL_PORT", "0"),
                                         ("PIXEL_SIGNATURE_MAX_AGE", "0"), ("PIXEL_MACHINE_EVENTS", "sometimes"),
                                         ("PIXEL_WRITE_KEYS", ""), ("PIXEL_WRITE_KEYS", ",,"), ("PIXEL_SINK", " "),
                                         ("PIXEL_PRIVACY_SIGNALS", "")])
def test_serve_refuses_values_outside_bounds_from_the_environment(name: str, value: str) -> None:
    done = serve(**{name: value, "PIXEL_SIGNING_KEY": "k"})
    refused(done, name)


def test_flask_base_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="PIXEL_BASE_URL must be an absolute http"):
        flask_app(PIXEL_BASE_URL="www.example.com")


# -- --print-config: an unset secret reads unset, a set one masked -----------------------------

def test_print_config_tells_unset_secrets_from_set_ones() -> None:
    done = serve("--print-config", PIXEL_WRITE_KEYS="wk-secret-1")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert rows["PIXEL_SIGNING_KEY"] == ["unset", "(default)"]
    assert rows["PIXEL_SIGNING_KEY_FALLBACKS"] == ["unset", "(default)"]
    assert rows["PIXEL_WRITE_KEYS"] == ["********", "(env)"]
    assert "wk-secret-1" not in done.stdout


# -- one table behind every front door --------------------------------------------------------

def test_serve_flask_and_the_middleware_read_the_same_rows() -> None:
    from flask_pixel.extension import SETTINGS
    from pixel_middleware.server.config import SERVE_OPTIONS

    pipeline = set(table.names("pipeline"))
    assert {o.name for o in SERVE_OPTIONS} == {o.name for o in table.OPTIONS if o.flag}
    assert {o.name for o in SETTINGS} == {o.name for o in table.OPTIONS if o.key and o.scope != "server"}
    assert {o.name for o in SERVE_OPTIONS if o.scope == "pipeline"} == pipeline - {"sender", "after_response"}
    for o in table.OPTIONS:
        assert o.kind in table.CHECKS, o.name
        assert o.key is None or o.key == "PIXEL_" + o.name.upper(), o.name  # one name, everywhere


@pytest.mark.parametrize("which", ["config", "serve"])
def test_the_readme_option_tables_are_the_tables_rows(which: str) -> None:
    """Generated by ``pixel-middleware options``: the README cannot drift from the table."""
    begin, end = f"<!-- options:{which} -->\n", f"\n<!-- /options:{which} -->"
    assert begin in README and end in README, f"README lacks the {which} table's markers"
    shown = README[README.index(begin) + len(begin) : README.index(end)]
    assert shown == table.markdown(which), f"run: pixel-middleware options {which}"


def test_the_cli_prints_the_tables() -> None:
    done = subprocess.run([sys.executable, "-m", "pixel_middleware", "options", "config"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == table.markdown("config"), done.stderr


def _rows(markdown: str) -> List[str]:
    return [line for line in markdown.splitlines() if line.startswith("| `")]


def test_every_option_with_a_key_has_a_row() -> None:
    keys = {re.match(r"\| `([A-Z_]+)`", row).group(1) for row in _rows(table.markdown("config"))}
    assert keys == {o.key for o in table.OPTIONS if o.key and o.scope != "server"}
    flags = {re.match(r"\| `(--[a-z-]+)`", row).group(1) for row in _rows(table.markdown("serve"))}
    assert flags == {o.flag for o in table.OPTIONS if o.flag}


def test_an_added_row_reaches_every_front_door(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding an option is one row: its check runs for the Python keyword and the config key alike."""
    row = table.Option("extra_window", "seconds", None, "a test-only window", key="PIXEL_EXTRA_WINDOW",
                       flag="--extra-window", bounds=(0, None), above=True)
    monkeypatch.setattr(table, "OPTIONS", (*table.OPTIONS, row))
    monkeypatch.setitem(table._BY_NAME, "extra_window", row)
    with pytest.raises(ValueError, match="^PIXEL_EXTRA_WINDOW must be above 0"):
        table.resolve({"extra_window": "0"}, label=lambda o: o.key)
    assert table.resolve({"extra_window": "1.5"})["extra_window"] == 1.5
    assert "PIXEL_EXTRA_WINDOW" in table.markdown("config") and "--extra-window" in table.markdown("serve")
