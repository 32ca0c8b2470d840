"""Django's own test client against the app's middleware: pixels, clicks, signals, and Django's pages."""
from __future__ import annotations

import asyncio
from typing import Any

from django.test import AsyncClient, Client, override_settings
from werkzeug.test import Client as WSGIClient

from pixel_middleware import MemorySink, PixelMiddleware as WSGIPixelMiddleware, build_pixel_url
from pixel_middleware import event_received
from pixel_middleware.core.gif import GIF
from pixel_middleware.django import PixelMiddleware, state
from campaigns.models import CampaignOpens

TRACK = "/v1/pixel/track?wk=site-key&e=Email+Opened&uid=u-1&p.campaign_id=spring"


def headers(response: Any) -> dict:
    return {k: v for k, v in response.items()}


def test_pixel_answers_as_the_wsgi_middleware_does(pixel: Any) -> None:
    response = Client().get(TRACK, HTTP_USER_AGENT="test-agent/1")
    wsgi = WSGIClient(WSGIPixelMiddleware(None, sink=MemorySink())).get(TRACK)
    assert response.status_code == 200 and response.content == GIF
    assert headers(response) == dict(wsgi.headers)
    assert "Set-Cookie" not in response and "Vary" not in response  # sessions never saw it
    (event,) = pixel.collector.sink.events
    assert event["event"] == "Email Opened" and event["userId"] == "u-1"
    assert event["context"]["userAgent"] == "test-agent/1"


def test_head_records_nothing_other_methods_405(pixel: Any) -> None:
    client = Client()
    head = client.head(TRACK)
    assert head.status_code == 200 and head["Content-Length"] == "43" and head.content == b""
    post = client.post(TRACK)  # CSRF never sees it: the pixel answers first
    assert post.status_code == 405 and post["Allow"] == "GET, HEAD"
    assert pixel.collector.sink.events == []


def test_bad_input_gets_the_gif_and_other_paths_reach_django(pixel: Any) -> None:
    client = Client()
    for url in ("/v1/pixel/track?wk=forged&e=X&uid=u", "/v1/pixel/track?%ff%00=\x00", "/v1/pixel/track"):
        response = client.get(url)
        assert response.status_code == 200 and response.content == GIF
    assert pixel.collector.sink.events == []
    assert pixel.collector.rejections["invalid_write_key"] == 1
    assert client.get("/v1/pixel/trackers").status_code == 404  # Django's 404, not a pixel


def test_clicks_redirect_signed_or_allowed_else_400(pixel: Any) -> None:
    client = Client()
    signed = state().helpers().click_url("https://anywhere.example.net/p", "u-3")
    response = client.get(signed.removeprefix("https://mail.example.com"))
    assert response.status_code == 302 and response["Location"] == "https://anywhere.example.net/p"
    assert "Content-Type" not in response
    allowed = client.get("/v1/click?wk=site-key&e=C&uid=u&url=https%3A%2F%2Fallowed.example.com%2F")
    assert allowed.status_code == 302
    refused = client.get("/v1/click?wk=site-key&e=C&uid=u&url=https%3A%2F%2Fevil.example%2F")
    assert refused.status_code == 400 and b"evil" not in refused.content
    assert [e["event"] for e in pixel.collector.sink.events] == ["Email Link Clicked", "C"]


def test_receiver_counts_opens_per_campaign(pixel: Any) -> None:
    CampaignOpens.objects.all().delete()
    seen = []
    with event_received.connected_to(lambda sender, **kw: seen.append(sender), sender=PixelMiddleware):
        client = Client()
        for _ in range(2):
            client.get(TRACK)
        client.get(TRACK.replace("spring", "autumn"))
    assert dict(CampaignOpens.objects.values_list("campaign_id", "opens")) == {"spring": 2, "autumn": 1}
    assert seen == [PixelMiddleware] * 3


def test_async_client_uses_the_async_path(pixel: Any) -> None:
    CampaignOpens.objects.all().delete()

    async def run() -> Any:
        client = AsyncClient()
        return await client.get(TRACK), await client.head(TRACK), await client.get("/v1/pixel/trackers")

    got, head, other = asyncio.run(run())
    assert got.status_code == 200 and got.content == GIF and head.status_code == 200
    assert other.status_code == 404
    assert len(pixel.collector.sink.events) == 1
    # The receiver wrote to the database from a worker thread, not from the event loop.
    assert CampaignOpens.objects.get(campaign_id="spring").opens == 1


def test_signed_urls_from_secret_key_and_rotation(pixel: Any) -> None:
    with override_settings(PIXEL_REQUIRE_SIGNATURE=True):
        old = state().helpers().pixel_url("Email Opened", "u-5")
        client = Client()
        client.get(old.removeprefix("https://mail.example.com"))
        client.get(TRACK)  # unsigned: rejected
        events = state().collector.sink.events
        assert [e["userId"] for e in events] == ["u-5"] and events[0]["context"]["pixel"]["signed"] is True
        with override_settings(SECRET_KEY="the-new-key", SECRET_KEY_FALLBACKS=["test-secret-key-not-for-production"]):
            client.get(old.removeprefix("https://mail.example.com"))  # signed with the old key: still good
            assert [e["userId"] for e in state().collector.sink.events] == ["u-5"]
            new = state().helpers().pixel_url("Email Opened", "u-6")
        with override_settings(SECRET_KEY="the-new-key"):  # fallback retired: the old URL fails
            client.get(old.removeprefix("https://mail.example.com"))
            client.get(new.removeprefix("https://mail.example.com"))
            assert [e["userId"] for e in state().collector.sink.events] == ["u-6"]
            assert state().collector.rejections["bad_signature"] == 1


def test_bypass_when_the_pixel_is_no_pixel_route(pixel: Any) -> None:
    assert Client().get("/email").status_code == 200
    build_pixel_url  # the wsgi.py wrapper's builder stays public
