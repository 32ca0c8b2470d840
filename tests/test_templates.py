"""The template helpers on any Jinja environment: the same URLs as the Flask extension's, decoded by the same routes."""
from __future__ import annotations

import html
import re
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import jinja2
import pytest
from flask import Flask, render_template_string
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware
from pixel_middleware.templates import install, user_id

KEY = "signing-key-for-templates"
OPTIONS = dict(base_url="https://mail.example", write_key="wk1", signing_key=KEY, prefix="/t")


def _src(page: str, tag: str = "img") -> str:
    found = re.search(rf'<{tag} src="([^"]+)"', page)
    assert found, page
    return found.group(1).replace("&amp;", "&")


def _fetch(app: Any, url: str) -> Any:
    parts = urlsplit(url)
    return Client(app).get(parts.path, query_string=parts.query, base_url=f"{parts.scheme}://{parts.netloc}")


def _collector(sink: MemorySink) -> PixelMiddleware:
    return PixelMiddleware(None, sink=sink, write_keys=["wk1"], signing_key=KEY, require_signature=True, prefix="/t")


def _without_cb(url: str) -> dict:
    query = parse_qs(urlsplit(html.unescape(url)).query)
    return {k: v for k, v in query.items() if k not in ("cb", "sig")}


def test_a_plain_jinja_environment_builds_urls_the_middleware_records() -> None:
    env = jinja2.Environment(autoescape=True)
    install(env, **OPTIONS)
    html = env.from_string("<p>Hi</p>{{ pixel_tag('Email Opened', user, campaign_id=7) }}").render(user={"id": "u-9"})
    sink = MemorySink()
    answer = _fetch(_collector(sink), _src(html))
    assert answer.status_code == 200 and answer.mimetype == "image/gif"
    (event,) = sink.events
    assert (event["event"], event["userId"], event["properties"]) == ("Email Opened", "u-9", {"campaign_id": 7})
    assert event["context"]["pixel"]["signed"] is True


def test_the_same_url_as_the_flask_extension_builds() -> None:
    env = jinja2.Environment(autoescape=True)
    install(env, **OPTIONS)
    app = Flask(__name__)
    app.config.update(PIXEL_SINK="memory:", PIXEL_WRITE_KEY="wk1", PIXEL_BASE_URL="https://mail.example",
                      PIXEL_SIGNING_KEY=KEY, PIXEL_PREFIX="/t")
    from flask_pixel import Pixel

    Pixel(app)
    source = "{{ pixel_url('Email Opened', 'u-1', step=2) }}"
    with app.app_context():
        from_flask = render_template_string(source)
    plain = env.from_string(source).render()
    assert urlsplit(plain)[:3] == urlsplit(from_flask)[:3]
    assert _without_cb(plain) == _without_cb(from_flask)


def test_amp_pixel_click_url_and_track_links_on_a_plain_environment() -> None:
    env = jinja2.Environment(autoescape=True)
    install(env, **OPTIONS)
    amp = env.from_string("{{ amp_pixel('Home', 'u1', type='page') }}").render()
    assert "cb=RANDOM" in amp and 'layout="nodisplay"' in amp
    body = env.from_string(
        "{% filter track_links('u1', campaign='c') %}<a href=\"https://shop.example/sale\">Sale</a>"
        "<a href=\"mailto:a@b.example\">m</a>{% endfilter %}"
    ).render()
    link = re.search(r'href="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert link.startswith("https://mail.example/t/v1/click?")
    assert 'href="mailto:a@b.example"' in body
    sink = MemorySink()
    answer = _fetch(_collector(sink), link)
    assert answer.status_code == 302 and answer.headers["Location"] == "https://shop.example/sale"
    (event,) = sink.events
    assert event["properties"]["campaign"] == "c"


def test_unknown_and_blank_options_fail_at_install() -> None:
    env = jinja2.Environment()
    with pytest.raises(TypeError, match="sink"):
        install(env, sink="memory:", **OPTIONS)
    with pytest.raises(ValueError, match="signing_key"):
        install(env, **{**OPTIONS, "signing_key": ""})
    with pytest.raises(ValueError, match="url_dialect"):
        install(env, **OPTIONS, url_dialect="segment", dialects=["compact"])


def test_no_base_url_says_what_to_set() -> None:
    env = jinja2.Environment()
    install(env, write_key="wk1")
    with pytest.raises(RuntimeError, match="PIXEL_BASE_URL"):
        env.from_string("{{ pixel_url('E') }}").render()


def test_click_urls_need_a_click_route_and_a_signature_or_an_allowed_host() -> None:
    env = jinja2.Environment()
    install(env, base_url="https://mail.example", write_key="wk1", dialects=["segment", "rudderstack"],
            url_dialect="segment")
    with pytest.raises(RuntimeError, match="compact"):
        env.from_string("{{ click_url('https://shop.example/') }}").render()
    env = jinja2.Environment()
    install(env, base_url="https://mail.example", write_key="wk1", click_allowed_hosts=["shop.example"])
    assert env.from_string("{{ click_url('https://shop.example/') }}").render().startswith("https://mail.example/")
    with pytest.raises(ValueError, match="evil.example"):
        env.from_string("{{ click_url('https://evil.example/') }}").render()


class DjangoLikeUser:
    """A Django model's shape: ``pk`` is the primary key whatever its field is named; ``id`` may not exist."""

    is_anonymous = False

    def __init__(self, pk: Any) -> None:
        self.pk = pk


class DjangoLikeAnonymous:
    is_anonymous = True
    pk = None
    id = None


class FlaskLoginUser:
    def __init__(self, id: Optional[str]) -> None:
        self._id = id

    def get_id(self) -> Optional[str]:
        return self._id


@pytest.mark.parametrize("user, expected", [
    (None, None), ("", None), ("u1", "u1"), (42, "42"), ({"id": 5}, "5"), ({"id": ""}, None),
    (FlaskLoginUser("f1"), "f1"), (FlaskLoginUser(None), None),
    (DjangoLikeUser(7), "7"), (DjangoLikeAnonymous(), None), (jinja2.Undefined(), None),
])
def test_the_user_rule(user: Any, expected: Optional[str]) -> None:
    assert user_id(user) == expected


def test_an_object_without_an_id_is_refused_not_guessed() -> None:
    with pytest.raises(TypeError, match="pk or id"):
        user_id(object())
    with pytest.raises(TypeError):
        user_id(True)  # a bool is not a user id
