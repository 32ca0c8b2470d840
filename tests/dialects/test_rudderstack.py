"""RudderStack's documented pixel calls (seeds 000 and 001) decode to the documented events."""
from __future__ import annotations

import re

import pytest

from tests.conftest import documented

HOST = "https://hosted.rudderlabs.com"

# Seed 001, "Send a page call": the example call and the resulting event object, verbatim.
PAGE_CALL = (
    "/pixel/v1/page?writeKey=WRITE_KEY&anonymousId=anon-123"
    "&context.locale=en-US"
    "&context.userAgent=Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)"
    "&context.page.path=%2Fhome&context.page.url=https%3A%2F%2Fexample.com%2Fhome"
    "&context.page.referrer=https%3A%2F%2Fexample.com%2F&context.page.title=Home"
    "&context.screen.width=1920&context.screen.height=1080"
    "&properties.path=%2Fhome&properties.url=https%3A%2F%2Fexample.com%2Fhome"
    "&properties.referrer=https%3A%2F%2Fexample.com%2F&properties.title=Home&name=Home%20Page"
)
PAGE_EVENT = {
    "type": "page",
    "anonymousId": "anon-123",
    "name": "Home Page",
    "properties": {
        "path": "/home",
        "url": "https://example.com/home",
        "referrer": "https://example.com/",
        "title": "Home",
    },
    "context": {
        "locale": "en-US",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "page": {
            "path": "/home",
            "url": "https://example.com/home",
            "referrer": "https://example.com/",
            "title": "Home",
        },
        "screen": {"width": 1920, "height": 1080},
    },
}

# Seed 001, "Send a track call".
TRACK_CALL = (
    "/pixel/v1/track?writeKey=WRITE_KEY&anonymousId=anon-123"
    "&context.locale=en-US"
    "&context.userAgent=Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)"
    "&context.page.path=%2Fproduct%2Fsku-123&context.page.url=https%3A%2F%2Fexample.com%2Fproduct%2Fsku-123"
    "&context.page.referrer=https%3A%2F%2Fexample.com%2F&context.page.title=Product%20Page"
    "&context.screen.width=1920&context.screen.height=1080&name=Product%20Page"
    "&event=Product%20Viewed&properties.productId=sku-123&properties.revenue=29.99"
)
TRACK_EVENT = {
    "type": "track",
    "anonymousId": "anon-123",
    "event": "Product Viewed",
    "name": "Product Page",
    "properties": {"productId": "sku-123", "revenue": 29.99},
    "context": {
        "locale": "en-US",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "page": {
            "path": "/product/sku-123",
            "url": "https://example.com/product/sku-123",
            "referrer": "https://example.com/",
            "title": "Product Page",
        },
        "screen": {"width": 1920, "height": 1080},
    },
}

# Seed 001, "Track with an image pixel", placeholders filled in.
IMAGE_CALL = "/pixel/v1/track?writeKey=WK&anonymousId=a-9&event=Notification%20Impression&properties.notificationId=n-42"

# Seed 000's AMP sample calls, with AMP's variables substituted as AMP would.
AMP_COMMON = (
    "writeKey=WK&context.library.name=Rudderstack%20AMP%20SDK&context.library.version=1.0.0"
    "&context.platform=AMP&anonymousId=amp-Xy12&context.locale=de-DE&context.userAgent=AMP%20UA"
    "&context.page.path=%2Fa&context.page.url=https%3A%2F%2Fexample.com%2Fa"
    "&context.page.referrer=&context.page.title=A&context.screen.width=390&context.screen.height=844"
)
AMP_CONTEXT = {
    "library": {"name": "Rudderstack AMP SDK", "version": "1.0.0"},
    "platform": "AMP",
    "locale": "de-DE",
    "userAgent": "AMP UA",
    "page": {"path": "/a", "url": "https://example.com/a", "referrer": "", "title": "A"},
    "screen": {"width": 390, "height": 844},
}


@pytest.mark.parametrize(
    "url, expected",
    [
        pytest.param(PAGE_CALL, PAGE_EVENT, id="seed-001-page"),
        pytest.param(TRACK_CALL, TRACK_EVENT, id="seed-001-track"),
        pytest.param(
            IMAGE_CALL,
            {"type": "track", "anonymousId": "a-9", "event": "Notification Impression",
             "properties": {"notificationId": "n-42"}},
            id="seed-001-image-pixel",
        ),
        pytest.param(
            "/pixel/v1/page?" + AMP_COMMON
            + "&properties.path=%2Fa&properties.url=https%3A%2F%2Fexample.com%2Fa"
            "&properties.referrer=&properties.title=A&name=Landing",
            {"type": "page", "anonymousId": "amp-Xy12", "name": "Landing", "context": AMP_CONTEXT,
             "properties": {"path": "/a", "url": "https://example.com/a", "referrer": "", "title": "A"}},
            id="seed-000-page",
        ),
        pytest.param(
            "/pixel/v1/track?" + AMP_COMMON + "&event=Scrolled&properties.key1=value1&properties.key2=value2",
            {"type": "track", "anonymousId": "amp-Xy12", "event": "Scrolled", "context": AMP_CONTEXT,
             "properties": {"key1": "value1", "key2": "value2"}},
            id="seed-000-track",
        ),
    ],
)
def test_documented_calls(accept, url, expected):
    assert documented(accept(url)) == expected


def test_page_example_keeps_its_own_user_agent_and_ip_comes_from_the_request(accept):
    event = accept(PAGE_CALL, headers={"User-Agent": "EmailClient/1"})
    assert event["context"]["userAgent"] == "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    assert event["context"]["ip"] == "203.0.113.7"


@pytest.mark.parametrize(
    "query, check",
    [
        pytest.param("userId=u1&event=first&event=second", lambda e: e["event"] == "first", id="first-of-repeated"),
        pytest.param("userId=804827945997959209&event=E&properties.id=804827945997959209",
                     lambda e: e["userId"] == "804827945997959209" and e["properties"]["id"] == "804827945997959209",
                     id="big-ids-stay-strings"),
        pytest.param("userId=42&event=E", lambda e: e["userId"] == "42", id="numeric-userId-stays-string"),
        pytest.param("userId=u&event=E&messageId=m-1&timestamp=2025-02-25T14:30:00Z",
                     lambda e: e["messageId"] == "m-1" and e["timestamp"] == "2025-02-25T14:30:00.000Z", id="given-ids"),
        pytest.param("userId=u&event=E&originalTimestamp=2025-02-25T15:30:00.5%2B01:00",
                     lambda e: e["timestamp"] == "2025-02-25T14:30:00.500Z", id="originalTimestamp-to-utc"),
        pytest.param("userId=u&event=E&integrations.All=false&cb=123&writeKey=again",
                     lambda e: "integrations" not in e and "cb" not in e and "writeKey" not in str(e), id="ignored"),
        pytest.param("userId=u&event=E&traits.plan=pro",
                     lambda e: e["context"]["traits"] == {"plan": "pro"} and "traits" not in e, id="traits-in-context"),
    ],
)
def test_track_rules(accept, query, check):
    assert check(accept("/pixel/v1/track?writeKey=WK&" + query))


def test_empty_page_name_is_unknown_page(accept):
    assert accept("/pixel/v1/page?writeKey=WK&userId=u&name=")["name"] == "Unknown Page"


def test_a_page_without_a_name_parameter_keeps_no_name(accept):
    """rudder-server names a page only when ``name`` is sent empty; one never sent stays unnamed."""
    assert "name" not in accept("/pixel/v1/page?writeKey=WK&userId=u&properties.path=%2Fa")


@pytest.mark.parametrize(
    "sent, kept",
    [
        pytest.param("%22abc%22", "abc", id="one-pair"),
        pytest.param("%22abc", '"abc', id="leading-only"),
        pytest.param("abc%22", 'abc"', id="trailing-only"),
        pytest.param("%22%22abc%22%22", '"abc"', id="two-pairs-lose-one"),
        pytest.param("%22", '"', id="a-lone-quote"),
        pytest.param("a%22b", 'a"b', id="inside"),
    ],
)
def test_anonymous_id_loses_one_pair_of_surrounding_quotes(accept, sent, kept):
    assert accept(f"/pixel/v1/track?writeKey=WK&event=E&anonymousId={sent}")["anonymousId"] == kept


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param("anonymousId=%20", id="space-anonymousId"),
        pytest.param("userId=%20%09", id="space-tab-userId"),
        pytest.param("userId=%0A&anonymousId=%E3%80%80", id="newline-and-ideographic-space"),
        pytest.param("anonymousId=%22%20%22", id="quoted-space"),
        pytest.param("anonymousId=%22%22", id="quoted-nothing"),
    ],
)
def test_a_blank_identifier_is_absent(reject, ids):
    assert reject(f"/pixel/v1/track?writeKey=WK&event=E&{ids}") == "missing_identity"


def test_a_blank_identifier_beside_a_real_one_is_dropped(accept):
    event = accept("/pixel/v1/track?writeKey=WK&event=E&userId=%20&anonymousId=a-1")
    assert "userId" not in event and event["anonymousId"] == "a-1"


@pytest.mark.parametrize(
    "sent, kept",
    [
        pytest.param("m-1", "m-1", id="plain"),
        pytest.param("%20m-1%09", "m-1", id="surrounding-whitespace"),
        pytest.param("m%00-1", "m-1", id="nul"),
        pytest.param("m%CD%8F-1", "m-1", id="combining-grapheme-joiner"),
        pytest.param("%EF%BB%BFm-%E2%80%8B1%E2%80%8E", "m-1", id="bom-zero-width-space-lrm"),
        pytest.param("m-1%C2%AD%F3%A0%80%81", "m-1", id="soft-hyphen-language-tag"),
        pytest.param("m%7F-%C2%851", "m-1", id="del-and-c1-control"),
        pytest.param("m%20%C3%A9-1", "m \u00e9-1", id="visible-text-kept"),
    ],
)
def test_message_id_loses_invisible_characters(accept, sent, kept):
    assert accept(f"/pixel/v1/track?writeKey=WK&event=E&userId=u&messageId={sent}")["messageId"] == kept


@pytest.mark.parametrize("sent", ["%20", "%00", "%E2%80%8B%20%CD%8F", "%EF%BB%BF"])
def test_a_blank_message_id_gets_a_generated_one(accept, sent):
    generated = accept(f"/pixel/v1/track?writeKey=WK&event=E&userId=u&messageId={sent}")["messageId"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", generated)


@pytest.mark.parametrize(
    "url, reason",
    [
        pytest.param("/pixel/v1/track?writeKey=WK&event=E", "missing_identity", id="no-identity"),
        pytest.param("/pixel/v1/track?writeKey=WK&userId=&anonymousId=&event=E", "missing_identity", id="empty-ids"),
        pytest.param("/pixel/v1/track?writeKey=WK&userId=u", "missing_event", id="no-event"),
        pytest.param("/pixel/v1/track?writeKey=WK&userId=u&event=", "missing_event", id="empty-event"),
        pytest.param("/pixel/v1/track?userId=u&event=E", "missing_write_key", id="no-write-key"),
        pytest.param("/pixel/v1/track?writeKey=WK&userId=u&event=E&timestamp=yesterday", "invalid_timestamp", id="bad-ts"),
        pytest.param("/pixel/v1/page?writeKey=WK&userId=u&properties.a=1&properties.a.b=2", "conflicting_parameters", id="conflict"),
        pytest.param("/pixel/v1/page?writeKey=WK&userId=u&properties..a=1", "invalid_parameter", id="empty-segment"),
        pytest.param("/pixel/v1/page?writeKey=WK&userId=u&context." + ".".join("abcdefghijk") + "=1",
                     "nesting_too_deep", id="too-deep"),
    ],
)
def test_rejected(reject, url, reason):
    assert reject(url) == reason
