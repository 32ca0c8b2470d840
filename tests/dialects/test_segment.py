"""Segment's documented pixel calls (seed 002) decode to the documented events."""
from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from tests.conftest import documented

# Seed 002's base64 example (it differs from the payload printed above it in the document).
DOC_DATA = (
    "eyJ3cml0ZUtleSI6ICJZT1VSX1dSSVRFX0tFWSIsICJ1c2VySWQiOiAiMDI1cGlrYWNodTAyNSIsICJldmVudCI6ICJFbWFpbCBPcGVuZWQiLCAi"
    "cHJvcGVydGllcyI6IHsgICAic3ViamVjdCI6ICJUaGUgRWxlY3RyaWMgRGFpbHkiLCAgICJlbWFpbCI6ICJwZWVrQXRNZUBlbWFpbC5wb2tlIiB9fQ"
)
DOC_DATA_EVENT = {
    "type": "track",
    "userId": "025pikachu025",
    "event": "Email Opened",
    "properties": {"subject": "The Electric Daily", "email": "peekAtMe@email.poke"},
}
# Seed 002's "Email Opened event payload".
PAYLOAD = {
    "writeKey": "YOUR_WRITE_KEY",
    "userId": "user_123",
    "event": "Email Opened",
    "properties": {"subject": "The Electric Daily", "email": "jane.kim@example.com"},
}
PAYLOAD_EVENT = {
    "type": "track",
    "userId": "user_123",
    "event": "Email Opened",
    "properties": {"subject": "The Electric Daily", "email": "jane.kim@example.com"},
}


def encodings(payload):
    raw = json.dumps(payload).encode()
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    return {
        "standard-padded": quote(standard, safe=""),
        "standard-unpadded": quote(standard.rstrip("="), safe=""),
        "standard-raw-plus": standard,  # '+' arrives as a space after form decoding
        "urlsafe-padded": urlsafe,
        "urlsafe-unpadded": urlsafe.rstrip("="),
        "double-percent-encoded": quote(quote(standard, safe=""), safe=""),
    }


# Characters chosen so that standard and URL-safe alphabets differ and padding is needed.
TRICKY = {"writeKey": "k", "userId": "u>?~", "event": "??>", "properties": {"x": "ÿÿ>>?"}}


def test_documented_base64_example(accept):
    assert documented(accept("/v1/pixel/track?data=" + DOC_DATA)) == DOC_DATA_EVENT


@pytest.mark.parametrize("form", list(encodings(PAYLOAD)))
def test_documented_payload_in_every_base64_form(accept, form):
    assert documented(accept("/v1/pixel/track?data=" + encodings(PAYLOAD)[form])) == PAYLOAD_EVENT


def test_tricky_payload_needs_both_alphabets_and_padding():
    standard = base64.b64encode(json.dumps(TRICKY).encode()).decode()
    assert "+" in standard and "/" in standard and standard.endswith("=")


@pytest.mark.parametrize("form", list(encodings(TRICKY)))
def test_alphabets_and_padding(accept, form):
    data = encodings(TRICKY)[form]
    event = accept("/v1/pixel/track?data=" + data)
    assert (event["userId"], event["event"], event["properties"]) == ("u>?~", "??>", {"x": "ÿÿ>>?"})


@pytest.mark.parametrize("space", ["%20", "+"])
def test_documented_flat_form(accept, space):
    url = (
        "/v1/pixel/track?userId=user_123&event=Email{s}Opened&properties.subject=The{s}Electric{s}Daily"
        "&properties.email=jane.kim@example.com&writeKey=YOUR_WRITE_KEY"
    ).format(s=space)
    assert documented(accept(url)) == PAYLOAD_EVENT


def data(payload):
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "route, payload, expected",
    [
        pytest.param("identify", {"writeKey": "k", "userId": "u", "traits": {"plan": "pro", "n": 3}},
                     {"type": "identify", "userId": "u", "traits": {"plan": "pro", "n": 3}}, id="identify"),
        pytest.param("group", {"writeKey": "k", "userId": "u", "groupId": "g", "traits": {"name": "Acme"}},
                     {"type": "group", "userId": "u", "groupId": "g", "traits": {"name": "Acme"}}, id="group"),
        pytest.param("alias", {"writeKey": "k", "userId": "u", "previousId": "anon"},
                     {"type": "alias", "userId": "u", "previousId": "anon"}, id="alias"),
        pytest.param("screen", {"writeKey": "k", "anonymousId": "a", "name": "Home", "properties": {"v": [1, True, None]}},
                     {"type": "screen", "anonymousId": "a", "name": "Home", "properties": {"v": [1, True, None]}}, id="screen-json-types"),
        pytest.param("page", {"writeKey": "k", "userId": 12345678901234567890, "name": "P"},
                     {"type": "page", "userId": "12345678901234567890", "name": "P"}, id="numeric-id-to-string"),
    ],
)
def test_every_method(accept, route, payload, expected):
    assert documented(accept(f"/v1/pixel/{route}?data={data(payload)}")) == expected


def test_writekey_may_sit_beside_data(accept):
    event = accept("/v1/pixel/track?writeKey=k&data=" + data({"userId": "u", "event": "E"}))
    assert event["event"] == "E" and "writeKey" not in json.dumps(event)


@pytest.mark.parametrize(
    "query, reason",
    [
        pytest.param("data=!!!!", "invalid_base64", id="not-base64"),
        pytest.param("data=abcde", "invalid_base64", id="bad-length"),
        pytest.param("data=" + base64.b64encode(b"{not json").decode(), "invalid_json", id="not-json"),
        pytest.param("data=" + base64.b64encode(b"[1,2]").decode(), "invalid_json", id="not-an-object"),
        pytest.param("data=" + base64.b64encode(b'{"writeKey":"k","userId":"u","event":"E","properties":{"x":NaN}}').decode(),
                     "invalid_json", id="nan"),
        pytest.param("data=" + base64.b64encode(b"\xff\xfe{}").decode(), "invalid_encoding", id="not-utf8"),
        pytest.param("data=" + data({"writeKey": "k", "event": "E"}), "missing_identity", id="no-identity"),
        pytest.param("data=" + data({"userId": "u", "event": "E"}), "missing_write_key", id="no-write-key"),
        pytest.param("data=" + data({"writeKey": "k", "userId": "u"}), "missing_event", id="no-event"),
        pytest.param("data=" + data({"writeKey": "k", "userId": "u", "event": "E", "properties": [1]}),
                     "invalid_value", id="properties-not-object"),
        pytest.param("data=" + data({"writeKey": "k", "userId": {"a": 1}, "event": "E"}), "invalid_value", id="id-object"),
        pytest.param("data=" + data({"writeKey": "k", "userId": "u", "event": "E", "timestamp": "soon"}),
                     "invalid_timestamp", id="bad-timestamp"),
        pytest.param("data=" + base64.b64encode(b'{"writeKey":"k","userId":"u","event":"E","properties":' + b"[" * 5000 + b"]" * 5000 + b"}").decode(),
                     "invalid_json", id="recursion"),
        pytest.param("data=" + data({"writeKey": "k", "userId": "u", "event": "E", "properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}),
                     "nesting_too_deep", id="too-deep"),
    ],
)
def test_rejected(reject, query, reason):
    assert reject("/v1/pixel/track?" + query) == reason


def test_group_and_alias_requirements(reject):
    assert reject("/v1/pixel/group?data=" + data({"writeKey": "k", "userId": "u"})) == "missing_group_id"
    assert reject("/v1/pixel/alias?data=" + data({"writeKey": "k", "userId": "u"})) == "missing_identity"
