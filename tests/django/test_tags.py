"""{% load pixel %}: every tag renders the URL TemplateHelpers builds, with Flask's escaping rules."""
from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import Context, Template, TemplateSyntaxError
from django.template.loader import render_to_string
from django.test import Client, override_settings
from itsdangerous import TimestampSigner

from pixel_middleware.django import state
from pixel_middleware.options import option
from pixel_middleware.templates import TemplateHelpers


class Campaign:
    id = "spring-sale"


@pytest.fixture(autouse=True)
def fixed() -> Any:
    """No cache buster and a fixed signing time: then a URL is one exact string."""
    mp = pytest.MonkeyPatch()
    mp.setattr(TimestampSigner, "get_timestamp", lambda self: 1_700_000_000)
    with override_settings(PIXEL_CACHE_BUSTER=False):
        yield
    mp.undo()


def part(page: str, id: str) -> str:
    return re.search(rf'<(?:p|div) id="{id}">(.*?)</(?:p|div)>', page, re.S).group(1)


def test_email_without_request_equals_template_helpers() -> None:
    body = '<a href="https://shop.example.com/a?x=1&amp;y=2">a</a>'
    page = render_to_string("email.html", {"user": "u-42", "c": Campaign(), "body": body})
    core = TemplateHelpers(state().settings)
    assert core.settings["base_url"] == "https://mail.example.com"
    url = core.pixel_url("Email Opened", "u-42", campaign_id="spring-sale")
    assert html.unescape(part(page, "url")) == url and "&amp;" in part(page, "url")  # text: autoescaped
    assert part(page, "tag") == str(core.pixel_tag("Email Opened", "u-42", campaign_id="spring-sale"))
    assert part(page, "amp") == str(core.amp_pixel("Article", "u-42", type="page"))
    assert html.unescape(part(page, "click")) == core.click_url("https://shop.example.com/sale?a=1&b=2", "u-42",
                                                                 campaign_id="spring-sale")
    assert part(page, "filter") == str(core.track_links(body, "u-42"))
    block = '<a href="https://shop.example.com/x">x</a> <a href="mailto:a@example.com">m</a>'
    assert part(page, "block") == str(core.track_links(block, "u-42", campaign_id="spring-sale"))
    assert 'href="mailto:a@example.com"' in part(page, "block")


def test_page_in_a_request_takes_its_host_and_anonymous_is_nobody() -> None:
    with override_settings(PIXEL_BASE_URL=None):
        page = Client().get("/", HTTP_HOST="localhost").content.decode()
        core = TemplateHelpers(state().settings, root=lambda: "http://localhost")
        assert html.unescape(part(page, "url")) == core.pixel_url("Page Viewed", AnonymousUser(), campaign_id="spring-sale")
        assert "uid=" not in part(page, "url")
        with pytest.raises(RuntimeError, match="PIXEL_BASE_URL"):
            render_to_string("email.html", {"user": "u", "c": Campaign(), "body": ""})


def test_values_are_escaped_and_users_by_pk() -> None:
    class User:
        pk = 7
        is_anonymous = False

    out = Template('{% load pixel %}{% pixel_tag "A\\"<b>" user note=n %}|{% pixel_url "A" user as u %}[{{ u }}]').render(
        Context({"user": User(), "n": '"><script>'}))
    assert "<script>" not in out and "<b>" not in out and "uid=7" in out
    assert out.count("<img ") == 1


def test_block_tag_syntax_errors() -> None:
    with pytest.raises(TemplateSyntaxError):
        Template("{% load pixel %}{% track_links a b %}x{% endtrack_links %}")


def test_url_dialect_setting_is_the_flask_key() -> None:
    assert option("url_dialect").key == "PIXEL_URL_DIALECT"
    with override_settings(PIXEL_URL_DIALECT="rudderstack"):
        out = Template('{% load pixel %}{% pixel_url "A" "u" %}').render(Context())
        assert out.startswith("https://mail.example.com/pixel/v1/track?")
