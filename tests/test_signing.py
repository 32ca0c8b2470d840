"""Signed URLs: what ``sig`` covers, rotation, expiry, and that any change to a signed URL is caught."""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, build_pixel_url
from tests.conftest import ENVIRON, downstream_app, fire

KEY = "pixel-signing-key"
OLD_KEY = "the-key-before"
BASE = "http://pixels.example"


def signed(key=KEY, **kwargs):
    fields = dict(user_id="u1", properties={"campaign": "spring", "n": 3}, write_key="wk1", cache_buster="cb1")
    fields.update(kwargs)
    return build_pixel_url(BASE, "Email Opened", signing_key=key, **fields)


def path_and_query(url):
    parts = urlsplit(url)
    return parts.path, parse_qsl(parts.query, keep_blank_values=True)


def rebuild(path, pairs):
    return f"{path}?{urlencode(pairs)}"


def replace(url, name, value):
    path, pairs = path_and_query(url)
    return rebuild(path, [(n, value if n == name else v) for n, v in pairs])


@pytest.fixture
def middleware(sink):
    return PixelMiddleware(downstream_app, sink=sink, signing_key=KEY, signing_key_fallbacks=[OLD_KEY])


def test_signed_url_is_accepted_and_says_so(accept):
    event = accept(signed())
    assert event["context"]["pixel"]["signed"] is True
    assert event["event"] == "Email Opened" and event["userId"] == "u1"
    assert event["properties"] == {"campaign": "spring", "n": 3}


def test_unsigned_url_is_accepted_when_not_required_and_marked(accept):
    event = accept(build_pixel_url(BASE, "Email Opened", user_id="u1", write_key="wk1"))
    assert event["context"]["pixel"]["signed"] is False


def test_no_key_no_signed_flag():
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink))
    fire(client, signed())
    assert "signed" not in sink.events[0]["context"].get("pixel", {})


@pytest.mark.parametrize(
    "name, value",
    [
        pytest.param("wk", "wk2", id="write-key"),
        pytest.param("e", "Email Clicked", id="event"),
        pytest.param("uid", "u2", id="user"),
        pytest.param("p.campaign", "autumn", id="property"),
        pytest.param("p.n", "4", id="number"),
        pytest.param("sig", "x" + signed().split("sig=")[1][1:40], id="signature"),
    ],
)
def test_changing_any_signed_parameter_is_rejected(reject, name, value):
    assert reject(replace(signed(), name, value)) == "bad_signature"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p, q: (p, q + [("aid", "a1")]), id="added-parameter"),
        pytest.param(lambda p, q: (p, [x for x in q if x[0] != "p.n"]), id="removed-parameter"),
        pytest.param(lambda p, q: ("/v1/pixel/page", q), id="other-route"),
        pytest.param(lambda p, q: (p, [(n, v) for n, v in q if n != "sig"] + [("sig", "")]), id="empty-signature"),
        pytest.param(lambda p, q: (p, [(n, v) for n, v in q if n != "sig"] + [("sig", "!!.??")]), id="garbage-signature"),
        pytest.param(lambda p, q: (p, [(n, v + "=" if n == "sig" else v) for n, v in q]), id="padded-signature"),
        pytest.param(lambda p, q: (p, [(n, v + "\u00e9" if n == "sig" else v) for n, v in q]), id="non-ascii-signature"),
        # Only "cb=" and "sig=" pieces are left out of the signature, not names that start alike.
        pytest.param(lambda p, q: (p, q + [("sigma", "1")]), id="added-sig-prefixed-name"),
        pytest.param(lambda p, q: (p, q + [("cbx", "1")]), id="added-cb-prefixed-name"),
    ],
)
def test_changing_the_shape_is_rejected(reject, change):
    path, pairs = change(*path_and_query(signed()))
    assert reject(rebuild(path, pairs)) == "bad_signature"


def test_order_and_cache_buster_do_not_matter(accept):
    path, pairs = path_and_query(signed())
    shuffled = list(reversed([(n, "other" if n == "cb" else v) for n, v in pairs]))
    assert accept(rebuild(path, shuffled))["context"]["pixel"]["signed"] is True


def test_built_urls_list_their_pieces_as_signed_then_sig_then_cb():
    pieces = urlsplit(signed()).query.split("&")
    assert pieces[:-2] == sorted(pieces[:-2]) and len(pieces) > 4
    assert pieces[-2].startswith("sig=") and pieces[-1] == "cb=cb1"


def test_a_url_as_built_is_checked_without_sorting_its_query(monkeypatch, accept):
    """The verifier's fast path: the query before "&sig=" is the signed text; only other layouts are sorted."""
    from pixel_middleware.pipeline.steps import signing
    url, sorts = signed(), []
    real = signing._canonical
    monkeypatch.setattr(signing, "_canonical", lambda path, query: sorts.append(query) or real(path, query))
    assert accept(url)["context"]["pixel"]["signed"] is True
    assert sorts == []
    path, pairs = path_and_query(url)
    assert accept(rebuild(path, list(reversed(pairs))))["context"]["pixel"]["signed"] is True
    assert len(sorts) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda q: q.replace("&cb=cb1", "&uid=u2"), id="after-sig-instead-of-cb"),
        pytest.param(lambda q: q.replace("&cb=cb1", "&uid=u2&cb=cb1"), id="between-sig-and-cb"),
        pytest.param(lambda q: q.replace("&cb=cb1", "&cb=cb1&uid=u2"), id="after-cb"),
        pytest.param(lambda q: q.replace("&sig=", "&aid=a1&sig="), id="before-sig"),
        pytest.param(lambda q: q.replace("&sig=", "&sig=&sig="), id="empty-sig-first"),
    ],
)
def test_pieces_around_the_signature_are_signed_too(reject, change):
    """Whatever the layout, only "cb" and "sig" pieces may differ from what was signed."""
    path, query = signed()[len(BASE) :].split("?", 1)
    assert reject(f"{path}?{change(query)}") == "bad_signature"


def test_a_cache_buster_anywhere_a_repeated_signature_and_empty_pieces_are_no_change(accept):
    path, query = signed()[len(BASE) :].split("?", 1)
    sig = query.split("&sig=")[1].split("&")[0]
    moved = "cb=other&" + query.replace("&cb=cb1", "")
    assert accept(f"{path}?{moved}")["context"]["pixel"]["signed"] is True
    assert accept(f"{path}?{query}&sig={sig}")["context"]["pixel"]["signed"] is True
    assert accept(f"{path}?&{query}&")["context"]["pixel"]["signed"] is True  # "a=1&&b=2" reads as "a=1&b=2"


def test_a_repeated_name_is_never_signed():
    """Order is not signed and the first of a repeated name is recorded: swapping two repeats would pass."""
    from pixel_middleware.pipeline.steps.signing import signed_query

    with pytest.raises(ValueError, match="repeat"):
        signed_query(KEY, "/v1/pixel/track", [("wk", "wk1"), ("e", "E"), ("uid", "u1"), ("uid", "u2")])
    assert "&sig=" in signed_query(KEY, "/v1/pixel/track", [("wk", "wk1"), ("e", "E"), ("uid", "u1")])


def test_a_repeated_name_is_a_change_too(reject):
    """Every piece as sent is signed: even a repeat the dialects would ignore (first wins) is refused."""
    path, pairs = path_and_query(signed())
    assert reject(rebuild(path, pairs + [("uid", "someone-else")])) == "bad_signature"
    assert reject(rebuild(path, [("uid", "someone-else")] + pairs)) == "bad_signature"


def test_a_re_encoded_value_is_refused_not_misread(reject):
    url = signed()
    assert "Email+Opened" in url
    assert reject(url.replace("Email+Opened", "Email%20Opened")) == "bad_signature"


def test_rotation_accepts_the_listed_old_key(accept, reject):
    assert accept(signed(key=OLD_KEY))["context"]["pixel"]["signed"] is True
    assert reject(signed(key="a-key-long-removed")) == "bad_signature"


def test_removed_fallback_rejects(signals):
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, signing_key=KEY))
    fire(client, signed(key=OLD_KEY))
    assert sink.events == []
    assert signals.of("rejected")[0]["reason"] == "bad_signature"


def test_signatures_verify_where_hmac_wraps_no_openssl_object(monkeypatch):
    """The check copies OpenSSL's HMAC inside hmac.HMAC where there is one; elsewhere the HMAC itself."""
    import hashlib
    import hmac

    from pixel_middleware.pipeline.steps import signing
    def plain(key, msg=None, digestmod=None):  # the pure-Python HMAC, as without OpenSSL (itsdangerous' too)
        return hmac.HMAC(key, msg, digestmod=lambda data=b"": hashlib.sha256(data))

    monkeypatch.setattr(signing.hmac, "new", plain)
    assert plain(b"k")._hmac is None
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, signing_key=KEY, signing_key_fallbacks=[OLD_KEY]))
    for url in (signed(), signed(key=OLD_KEY, user_id="old"), signed(key="wrong", user_id="forged"),
                replace(signed(user_id="changed"), "uid", "other")):
        fire(client, url)
    assert [(e["userId"], e["context"]["pixel"]["signed"]) for e in sink.events] == [("u1", True), ("old", True)]


@pytest.mark.parametrize("fallback", [OLD_KEY, OLD_KEY.encode()], ids=["str", "bytes"])
def test_a_single_fallback_key_is_one_key_not_one_per_character(fallback, signals):
    # A str is iterable: taken as a list of keys, "the-key-before" listed "t", "h", "e", ...,
    # and a URL signed with the one-character key "t" passed as signed.
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, signing_key=KEY, signing_key_fallbacks=fallback))
    fire(client, signed(key=OLD_KEY, user_id="rotated"))
    fire(client, signed(key="t", user_id="forged"))
    assert [event["userId"] for event in sink.events] == ["rotated"]
    assert [call["reason"] for call in signals.of("rejected")] == ["bad_signature"]


@pytest.mark.parametrize(
    "dialect, prefix",
    [
        pytest.param("mparticle", "", id="mparticle-path-in-signature"),
        pytest.param("segment", "/t", id="segment-under-prefix"),
        pytest.param("rudderstack", "", id="rudderstack"),
    ],
)
def test_other_dialects_and_prefixes_sign(dialect, prefix):
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, signing_key=KEY, prefix=prefix, require_signature=True))
    url = build_pixel_url(BASE + prefix, "Opened", user_id="u1", write_key="wk1", dialect=dialect, signing_key=KEY)
    fire(client, url)
    assert sink.events[-1]["context"]["pixel"]["signed"] is True
    if dialect == "mparticle":
        # The write key sits in mParticle's path: another one there breaks the signature.
        fire(client, url.replace("/v1/wk1/", "/v1/wk2/"))
        assert len(sink.events) == 1


@pytest.mark.parametrize("key", ["k ey", "k%20ey", "k?ey", "k#ey"])
def test_an_mparticle_key_is_encoded_in_the_path_and_signed_as_read(key):
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, write_keys=[key], signing_key=KEY, require_signature=True))
    url = build_pixel_url(BASE, "Opened", user_id="u1", write_key=key, dialect="mparticle", signing_key=KEY)
    assert " " not in url and url.count("?") == 1 and "#" not in url
    fire(client, url)
    assert [event["context"]["pixel"]["signed"] for event in sink.events] == [True]


def test_an_mparticle_key_must_be_ascii():
    with pytest.raises(ValueError, match="ASCII"):
        build_pixel_url(BASE, "Opened", user_id="u1", write_key="k\u00e9y", dialect="mparticle")


def test_required_signature_rejects_unsigned(signals, caplog):
    sink = MemorySink()
    middleware = PixelMiddleware(None, sink=sink, signing_key=KEY, require_signature=True)
    with caplog.at_level(logging.WARNING, logger="pixel_middleware"):
        fire(Client(middleware), build_pixel_url(BASE, "Opened", user_id="u1", write_key="wk1"))
    assert sink.events == [] and middleware.rejections == {"missing_signature": 1}
    assert signals.of("rejected")[0]["reason"] == "missing_signature"
    assert KEY not in caplog.text and "wk1" not in caplog.text


def test_require_signature_without_a_key_is_a_configuration_error():
    with pytest.raises(ValueError, match="signing_key"):
        PixelMiddleware(None, require_signature=True)


@pytest.mark.parametrize(
    "max_age",
    [
        pytest.param(60, id="seconds"),
        # Flask's own durations (PERMANENT_SESSION_LIFETIME) may be timedeltas; one here made every
        # signed request fail inside the pipeline (internal_error, a traceback each), none recorded.
        pytest.param(timedelta(minutes=1), id="timedelta"),
    ],
)
def test_expiry(monkeypatch, max_age):
    sink = MemorySink()
    middleware = PixelMiddleware(None, sink=sink, signing_key=KEY, signature_max_age=max_age)
    client = Client(middleware)
    fire(client, signed())
    assert len(sink.events) == 1
    real_time = time.time
    with monkeypatch.context() as clock:
        # itsdangerous stamps with time.time(): sign "two minutes ago".
        clock.setattr(time, "time", lambda: real_time() - 120)
        old = signed()
    fire(client, old)
    assert len(sink.events) == 1 and middleware.rejections == {"signature_expired": 1}


@pytest.mark.parametrize("max_age", ["an hour", [60], "", 0, -1, float("inf"), float("nan"), timedelta(0)])
def test_an_expiry_that_is_no_positive_number_is_a_configuration_error(max_age):
    with pytest.raises(ValueError, match="signature_max_age"):
        PixelMiddleware(None, signing_key=KEY, signature_max_age=max_age)


def test_an_expiry_given_as_text_is_read_once_as_seconds():
    # As the environment and config files give it: parsed at start-up, not compared as text per request.
    middleware = PixelMiddleware(None, signing_key=KEY, signature_max_age="3600")
    assert middleware.collector.settings["signature_max_age"] == 3600.0


ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
_name = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@ROUND_TRIP
@given(
    event=_text,
    user=_text,
    properties=st.dictionaries(_name, _text | st.integers(-1000, 1000), max_size=4),
    position=st.integers(min_value=0),
    replacement=st.characters(codec="ascii"),
)
def test_signed_urls_round_trip_and_any_one_character_change_is_caught(event, user, properties, position, replacement):
    sink = MemorySink()
    client = Client(PixelMiddleware(None, sink=sink, signing_key=KEY, require_signature=True))
    url = build_pixel_url(BASE, event, user_id=user, properties=properties, write_key="wk1", signing_key=KEY, cache_buster=False)
    fire(client, url, environ_base=ENVIRON)
    (original,) = sink.events
    assert original["context"]["pixel"]["signed"] is True and original["event"] == event
    path, query = url[len(BASE) :].split("?", 1)
    position %= len(query)
    changed = query[:position] + replacement + query[position + 1 :]
    client.get(f"{path}?{changed}", environ_base=ENVIRON)
    if len(sink.events) == 2:
        same = lambda e: {k: v for k, v in e.items() if k not in ("messageId", "receivedAt", "timestamp", "context")}
        assert same(sink.events[1]) == same(original)
