"""The compact gateway's documented pixels (seed 004) decode to the events it describes."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest

from pixel_middleware import build_pixel_url
from tests.conftest import documented

EMAIL_OPEN = ("/v1/pixel/track?wk=dk_live_abc123&e=Email+Opened&uid=user_98765&p.campaign_id=camp_001"
              "&p.email_subject=February+Newsletter&cb=1740493800")
AMP_PAGE = "/v1/pixel/page?wk=dk_live_abc123&p.url=CANONICAL_URL&p.title=TITLE&cb=RANDOM"
CONVERSION = ("/v1/pixel/track?wk=dk_live_abc123&e=Purchase&uid=user_98765&p.order_id=ORD-001&p.revenue=99.99"
              "&p.currency=USD&cb=1740493800")
BUILDER_OUTPUT = ("https://data.example.com/v1/pixel/track?wk=dk_live_abc123&e=Email+Opened&uid=user_98765"
                  "&cb=1740493800000&p.campaign_id=camp_001&p.email_subject=February+Newsletter")


@pytest.mark.parametrize(
    "url, expected",
    [
        pytest.param(EMAIL_OPEN, {"type": "track", "event": "Email Opened", "userId": "user_98765",
                                  "properties": {"campaign_id": "camp_001", "email_subject": "February Newsletter"}},
                     id="email-open"),
        pytest.param(CONVERSION, {"type": "track", "event": "Purchase", "userId": "user_98765",
                                  "properties": {"order_id": "ORD-001", "revenue": 99.99, "currency": "USD"}},
                     id="conversion"),
        pytest.param(urlsplit(BUILDER_OUTPUT)._replace(scheme="", netloc="").geturl(),
                     {"type": "track", "event": "Email Opened", "userId": "user_98765",
                      "properties": {"campaign_id": "camp_001", "email_subject": "February Newsletter"}},
                     id="dynamic-url"),
    ],
)
def test_documented_examples(accept, url, expected):
    assert documented(accept(url)) == expected


def test_amp_page_view_without_identity_gets_a_random_anonymous_id(accept):
    first, second = accept(AMP_PAGE), accept(AMP_PAGE)
    view = documented(first)
    uuid.UUID(view.pop("anonymousId"))
    assert view == {"type": "page", "properties": {"url": "CANONICAL_URL", "title": "TITLE"}}
    assert first["anonymousId"] != second["anonymousId"]


def test_builder_reproduces_the_documented_url():
    built = build_pixel_url("https://data.example.com", "Email Opened", user_id="user_98765",
                            properties={"campaign_id": "camp_001", "email_subject": "February Newsletter"},
                            write_key="dk_live_abc123", cache_buster="1740493800000")
    assert built.startswith("https://data.example.com/v1/pixel/track?")
    assert sorted(parse_qsl(urlsplit(built).query)) == sorted(parse_qsl(urlsplit(BUILDER_OUTPUT).query))


def test_every_parameter(accept):
    event = accept("/v1/pixel/identify?wk=k&uid=u&aid=a&t.email=jane@example.com&t.age=41&ts=1740493800000&mid=a1b2c3d4"
                   "&c.campaign.source=newsletter")
    assert event["timestamp"] == "2025-02-25T14:30:00.000Z" and event["messageId"] == "a1b2c3d4"
    assert documented(event) == {"type": "identify", "userId": "u", "anonymousId": "a",
                                 "traits": {"email": "jane@example.com", "age": 41},
                                 "context": {"campaign": {"source": "newsletter"}}}
    group = accept("/v1/pixel/group?wk=k&uid=u&gid=g-1&t.name=Acme")
    assert documented(group) == {"type": "group", "userId": "u", "groupId": "g-1", "traits": {"name": "Acme"}}
    page = accept("/v1/pixel/page?wk=k&uid=u&e=Pricing", headers={"Referer": "https://mail.example/inbox"})
    assert page["name"] == "Pricing" and page["context"]["page"] == {"referrer": "https://mail.example/inbox"}


def test_wk_marks_compact_on_the_shared_route(accept):
    # Without wk the request is Segment's: `e` means nothing there and the track lacks an event.
    assert accept("/v1/pixel/track?wk=k&e=E&uid=u")["event"] == "E"


@pytest.mark.parametrize(
    "query, reason",
    [
        pytest.param("wk=k&uid=u", "missing_event", id="track-without-e"),
        pytest.param("wk=&e=E&uid=u", "missing_write_key", id="empty-wk"),
        pytest.param("e=E&uid=u", "missing_write_key", id="no-wk-is-missing-wk-not-a-segment-missing-event"),
        pytest.param("wk=k&e=E&ts=1740493800000.5", "invalid_timestamp", id="fractional-ts"),
        pytest.param("wk=k&e=E&ts=-5", "invalid_timestamp", id="negative-ts"),
        pytest.param("wk=k&e=E&p.a=1&p.a.b=2", "conflicting_parameters", id="conflict"),
    ],
)
def test_rejected(reject, query, reason):
    assert reject("/v1/pixel/track?" + query) == reason


def test_group_needs_gid(reject):
    assert reject("/v1/pixel/group?wk=k&uid=u") == "missing_group_id"


def test_screen_and_alias_are_not_compact_routes(reject):
    # They are Segment's routes, where `wk` and `uid` mean nothing: the key is missing in Segment's form.
    assert reject("/v1/pixel/screen?wk=k&uid=u") == "missing_write_key"
    assert reject("/v1/pixel/screen?writeKey=k&uid=u") == "missing_identity"
