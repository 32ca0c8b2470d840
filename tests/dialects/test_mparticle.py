"""mParticle's documented Pixel Service calls (seed 003) decode as the dialect's table says."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import documented

CT = "1740493800000"
CT_ISO = "2025-02-25T14:30:00.000Z"


def without_generated_id(event):
    view = documented(event)
    uuid.UUID(view.pop("anonymousId"))  # mParticle needs no identity: a random one is generated
    return view


def test_first_example(accept):
    # https://pixels.mparticle.com/v1/{{web_api_key}}/Pixel?ct={{timestampMs}}&dbg=true&n=Custom%20Pixel%20Event&dt=AppEvent&et=Unknown
    event = accept(f"/v1/us1-abc/Pixel?ct={CT}&dbg=true&n=Custom%20Pixel%20Event&dt=AppEvent&et=Unknown")
    assert event["timestamp"] == CT_ISO
    assert without_generated_id(event) == {
        "type": "track",
        "event": "Custom Pixel Event",
        "context": {"mparticle": {"eventType": "Unknown", "debug": True}},
    }


def test_javascript_example(accept):
    # n=${eventName}&dt=${messageType}&ct=${currentTime}&et={eventType}, as fetch() sends it
    event = accept(f"/v1/KEY/Pixel?n=My%20Custom%20Event&dt=AppEvent&ct={CT}&et=Navigation")
    assert without_generated_id(event) == {
        "type": "track",
        "event": "My Custom Event",
        "context": {"mparticle": {"eventType": "Navigation"}},
    }


def test_html_example_as_printed_lacks_dt_and_is_dropped(reject):
    # The document's <img> example misses an '&' before dt: n=My%20Page%20Viewdt=ScreenView
    assert reject(f"/v1/KEY/Pixel?n=My%20Page%20Viewdt=ScreenView&ct={CT}&et=Navigation&dbg=true") == "unknown_type"


def test_html_example_corrected(accept):
    event = accept(f"/v1/KEY/Pixel?n=My%20Page%20View&dt=ScreenView&ct={CT}&et=Navigation&dbg=true")
    assert event["timestamp"] == CT_ISO
    assert without_generated_id(event) == {
        "type": "page",
        "name": "My Page View",
        "context": {"mparticle": {"eventType": "Navigation", "debug": True}},
    }


def test_identities_example(accept):
    # ui_t=email,customerid,phone_number&ui_v=test@email.com,1234567,212-555-1212
    event = accept("/v1/KEY/Pixel?dt=AppEvent&n=Signed%20Up&ui_t=email,customerid,phone_number"
                   "&ui_v=test@email.com,1234567,212-555-1212")
    assert documented(event) == {
        "type": "track",
        "event": "Signed Up",
        "userId": "1234567",
        "context": {
            "traits": {"email": "test@email.com"},
            "externalIds": [
                {"id": "test@email.com", "type": "email", "collection": "users", "encoding": "none"},
                {"id": "212-555-1212", "type": "phone_number", "collection": "users", "encoding": "none"},
            ],
            "mparticle": {"eventType": "Unknown"},
        },
    }


def test_every_documented_attribute(accept):
    event = accept(
        "/v1/KEY/Pixel?dt=ScreenView&n=Pricing&et=Navigation&ct=" + CT
        + "&attrs_k=plan,seats&attrs_v=pro,12&ua_k=tier,email&ua_v=gold,a@b.c"
        "&ui_t=customerid&ui_v=c-77&flags_k=Google.Category,Google.Label&flags_v=cat,lab"
        "&lc=40.7128,-74.006&av=3.2.1&dbg=false&hn=www.example.com&ttl=Pricing%20%7C%20Example"
        "&path=%2Fpricing&amp_id=amp-1x"
    )
    assert documented(event) == {
        "type": "page",
        "name": "Pricing",
        "userId": "c-77",
        "anonymousId": "amp-1x",
        "properties": {"plan": "pro", "seats": "12", "path": "/pricing", "title": "Pricing | Example"},
        "context": {
            "traits": {"tier": "gold", "email": "a@b.c"},
            "location": {"latitude": 40.7128, "longitude": -74.006},
            "app": {"version": "3.2.1"},
            "page": {"path": "/pricing", "host": "www.example.com", "title": "Pricing | Example"},
            "mparticle": {"eventType": "Navigation", "flags": {"Google.Category": "cat", "Google.Label": "lab"}, "debug": False},
        },
    }
    assert event["timestamp"] == CT_ISO


def test_write_key_is_the_api_key_in_the_path(sink):
    from werkzeug.test import Client

    from pixel_middleware import PixelMiddleware
    client = Client(PixelMiddleware(None, sink=sink, write_keys={"us1-good"}))
    client.get("/v1/us1-good/Pixel?dt=AppEvent&n=E")
    client.get("/v1/us1-bad/Pixel?dt=AppEvent&n=E")
    assert len(sink.events) == 1


@pytest.mark.parametrize(
    "query, reason",
    [
        pytest.param("n=E", "unknown_type", id="no-dt"),
        pytest.param("dt=Commerce&n=E", "unknown_type", id="unknown-dt"),
        pytest.param("dt=AppEvent", "missing_event", id="app-event-without-name"),
        pytest.param("dt=AppEvent&n=E&attrs_k=a,b&attrs_v=1", "mismatched_lists", id="attrs-mismatch"),
        pytest.param("dt=AppEvent&n=E&ua_k=a", "mismatched_lists", id="ua-values-missing"),
        pytest.param("dt=AppEvent&n=E&ui_t=customerid,email&ui_v=1", "mismatched_lists", id="ui-mismatch"),
        pytest.param("dt=AppEvent&n=E&flags_v=x,y&flags_k=f", "mismatched_lists", id="flags-mismatch"),
        pytest.param("dt=AppEvent&n=E&attrs_k=,b&attrs_v=1,2", "invalid_parameter", id="empty-key"),
        pytest.param("dt=AppEvent&n=E&ct=yesterday", "invalid_timestamp", id="bad-ct"),
        pytest.param("dt=AppEvent&n=E&ct=99999999999999999", "invalid_timestamp", id="ct-out-of-range"),
        pytest.param("dt=AppEvent&n=E&lc=north", "invalid_value", id="bad-lc"),
        pytest.param("dt=AppEvent&n=E&lc=91,0", "invalid_value", id="lc-off-globe"),
    ],
)
def test_rejected(reject, query, reason):
    assert reject("/v1/KEY/Pixel?" + query) == reason


def test_only_the_pixel_path_matches(client):
    assert client.get("/v1/KEY/Pixel/extra").data.startswith(b"downstream")
    assert client.get("/v1/a/b/Pixel").data.startswith(b"downstream")
    assert client.get("/v2/KEY/Pixel").data.startswith(b"downstream")
