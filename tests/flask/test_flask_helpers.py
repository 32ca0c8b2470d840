"""The Jinja helpers: pixel_url, pixel_tag, amp_pixel; a URL they build, fetched, records its event."""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, render_template_string, url_for
from markupsafe import Markup

import flask_pixel
from conftest import WRITE_KEY, src_of
from pixel_middleware import MemorySink, PixelUrlWarning
def fetch(app: Flask, url: str) -> None:
    """GET an absolute pixel URL through the app, as a mail client would."""
    parts = urlsplit(url)
    response = app.test_client().get(
        parts.path, query_string=parts.query, base_url=f"{parts.scheme}://{parts.netloc}"
    )
    assert response.status_code == 200 and response.mimetype == "image/gif"


class User:
    def __init__(self, id: Any, email: Optional[str] = None) -> None:
        self.id = id
        self.email = email


class LoginUser:
    """Flask-Login's UserMixin shape: the id comes from get_id(), as a string."""

    def __init__(self, id: Optional[str]) -> None:
        self._id = id

    def get_id(self) -> Optional[str]:
        return self._id


# -- the delimiter test from the issue --------------------------------------


def test_helpers_work_with_other_jinja_delimiters(pixel_sink: MemorySink) -> None:
    app = Flask(__name__)
    app.jinja_options = {**app.jinja_options, "variable_start_string": "<<", "variable_end_string": ">>"}
    app.config.update(PIXEL_SINK=pixel_sink, PIXEL_WRITE_KEY=WRITE_KEY, PIXEL_BASE_URL="https://mail.example")
    flask_pixel.Pixel(app)
    with app.app_context():
        rendered = render_template_string(
            "<p>{{ not a variable }}</p><img src=\"<< pixel_url('Email Opened', user) >>\">", user={"id": "u-42"}
        )
    assert "{{ not a variable }}" in rendered
    url = src_of(rendered)
    assert url.startswith("https://mail.example/v1/pixel/track?")
    fetch(app, url)
    (event,) = pixel_sink.events
    assert (event["type"], event["event"], event["userId"]) == ("track", "Email Opened", "u-42")


def test_delimiters_changed_on_the_environment_after_init(app: Flask, pixel_sink: MemorySink) -> None:
    app.jinja_env.variable_start_string, app.jinja_env.variable_end_string = "<<", ">>"
    with app.test_request_context("/", base_url="http://shop.example"):
        url = html.unescape(render_template_string("<< pixel_url('Email Opened', user) >>", user="u-7"))
    fetch(app, url)
    assert [(e["event"], e["userId"]) for e in pixel_sink.events] == [("Email Opened", "u-7")]


# -- absolute URLs, with and without a request ------------------------------


def test_inside_a_request_the_url_takes_the_request_host(app: Flask) -> None:
    with app.test_request_context("/page", base_url="https://shop.example:8443/app"):
        url = render_template_string("{{ pixel_url('Viewed') }}")
    assert html.unescape(url).startswith("https://shop.example:8443/app/v1/pixel/track?wk=test-key&e=Viewed&")


def test_outside_a_request_as_in_a_celery_task(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com/")
    with app.app_context():  # what a background job has: an app context, no request
        rendered = render_template_string("{{ pixel_tag('Email Opened', user, campaign_id=9) }}", user=User(5))
    url = src_of(rendered)
    assert url.startswith("https://example.com/v1/pixel/track?")
    fetch(app, url)
    (event,) = pixel_sink.events
    assert (event["event"], event["userId"], event["properties"]) == ("Email Opened", "5", {"campaign_id": 9})


def test_globals_are_bound_to_their_app_and_need_no_context(make_app: Callable[..., Flask]) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    rendered = app.jinja_env.from_string("{{ pixel_url('E') }}").render()
    assert rendered.startswith("https://example.com/v1/pixel/track?")


def test_server_name_and_scheme_outside_a_request(make_app: Callable[..., Flask]) -> None:
    app = make_app(SERVER_NAME="news.example", PREFERRED_URL_SCHEME="https", APPLICATION_ROOT="/mail")
    with app.app_context():
        url = flask_pixel.pixel_url("E")
    assert url.startswith("https://news.example/mail/v1/pixel/track?")


def test_prefix_is_part_of_every_url(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_PREFIX="/t", PIXEL_BASE_URL="https://example.com")
    with app.app_context():
        url = flask_pixel.pixel_url("E", "u1")
    with app.test_request_context("/"):
        assert url_for("pixel.v1_pixel_track") == "/t/v1/pixel/track"
    assert url.startswith("https://example.com/t/v1/pixel/track?")
    fetch(app, url)
    assert len(pixel_sink.events) == 1
    assert app.test_client().get(f"/v1/pixel/track?wk={WRITE_KEY}&e=E").status_code == 404


def test_without_a_base_url_the_error_names_the_setting(app: Flask) -> None:
    with app.app_context(), pytest.raises(RuntimeError, match="PIXEL_BASE_URL"):
        render_template_string("{{ pixel_url('E') }}")


def test_without_a_write_key_the_error_names_the_setting(make_app: Callable[..., Flask]) -> None:
    app = make_app(PIXEL_WRITE_KEY=None, PIXEL_BASE_URL="https://example.com")
    with app.app_context(), pytest.raises(RuntimeError, match="PIXEL_WRITE_KEY"):
        flask_pixel.pixel_tag("E")


# -- the tags and their escaping --------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: List[Any] = []

    def handle_starttag(self, tag: str, attrs: List[Any]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(markup: str) -> List[Any]:
    parser = _Tags()
    parser.feed(markup)
    return parser.tags


def test_pixel_tag_is_a_hidden_one_pixel_image(make_app: Callable[..., Flask]) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    with app.app_context():
        tag = flask_pixel.pixel_tag("Email Opened", "u1")
    assert isinstance(tag, Markup)
    ((name, attrs),) = parse(tag)
    assert name == "img"
    assert attrs["width"] == "1" and attrs["height"] == "1" and attrs["alt"] == "" and "hidden" in attrs
    assert "&amp;" in tag and not re.search(r"&(?!amp;)", tag)


def test_every_value_is_escaped_and_survives_the_round_trip(
    make_app: Callable[..., Flask], pixel_sink: MemorySink
) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    hostile = '"><script>alert(1)</script>&x=<b>'
    with app.app_context():
        rendered = render_template_string(
            "{{ pixel_tag(name, user, subject=subject) }}{{ amp_pixel(name, user, subject=subject) }}",
            name='Opened "quoted" <tag>',
            user={"id": 'u"1<'},
            subject=hostile,
        )
    assert "<script" not in rendered and "<b>" not in rendered
    tags = parse(rendered)
    assert [name for name, _ in tags] == ["img", "amp-pixel"]
    for _, attrs in tags:
        fetch(app, attrs["src"])
    assert [(e["event"], e["userId"], e["properties"]["subject"]) for e in pixel_sink.events] == [
        ('Opened "quoted" <tag>', 'u"1<', hostile)
    ] * 2


def test_amp_pixel_uses_amps_random_as_cache_buster(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    with app.app_context():
        tag = flask_pixel.amp_pixel("Home", "u1", type="page")
    assert tag.startswith('<amp-pixel src="https://example.com/v1/pixel/page?')
    assert tag.endswith('" layout="nodisplay"></amp-pixel>')
    url = src_of(tag)
    assert parse_qs(urlsplit(url).query)["cb"] == ["RANDOM"]
    fetch(app, url)
    (event,) = pixel_sink.events
    assert (event["type"], event["name"], event["userId"]) == ("page", "Home", "u1")


def test_markup_and_undefined_values(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    with app.app_context():
        url = render_template_string(
            "{{ pixel_url(name, nobody, title=title, missing=not_defined, empty=none) }}",
            name=Markup("<i>Opened</i>"),
            title=Markup("A &amp; B"),
            none=None,
        )
    fetch(app, html.unescape(url))
    (event,) = pixel_sink.events
    assert event["event"] == "<i>Opened</i>"
    assert event["properties"] == {"title": "A &amp; B"}
    assert "userId" not in event and event["anonymousId"]


# -- users, traits, cache buster, long URLs ---------------------------------


@pytest.mark.parametrize(
    "user, expected",
    [
        pytest.param(None, None, id="none"),
        pytest.param("u-1", "u-1", id="string"),
        pytest.param("", None, id="empty-string"),
        pytest.param(42, "42", id="int"),
        pytest.param({"id": "u-2", "email": "a@b.c"}, "u-2", id="mapping"),
        pytest.param({"id": 804827945997959209}, "804827945997959209", id="mapping-big-int"),
        pytest.param({"name": "no id"}, None, id="mapping-without-id"),
        pytest.param(LoginUser("u-3"), "u-3", id="flask-login-user"),
        pytest.param(LoginUser(None), None, id="flask-login-anonymous"),
        pytest.param(User(7), "7", id="object-with-id"),
    ],
)
def test_user_argument(make_app: Callable[..., Flask], pixel_sink: MemorySink, user: Any, expected: Any) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    with app.app_context():
        fetch(app, flask_pixel.pixel_url("E", user))
    (event,) = pixel_sink.events
    assert event.get("userId") == expected
    if expected is None:
        assert event["anonymousId"]
    assert "context" not in event or "traits" not in event["context"]  # no traits unless configured


def test_a_user_without_an_id_is_an_error_naming_the_resolver(make_app: Callable[..., Flask]) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    with app.app_context(), pytest.raises(TypeError, match="PIXEL_USER_RESOLVER"):
        flask_pixel.pixel_url("E", object())


def test_configured_resolver_and_traits(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    def resolver(user: Any) -> Optional[str]:
        return f"acct-{user.account}" if hasattr(user, "account") else flask_pixel.user_id(user)

    class Account:
        account = 12
        email = "x@example.com"
        plan = None

    app = make_app(
        PIXEL_BASE_URL="https://example.com", PIXEL_USER_RESOLVER=resolver, PIXEL_USER_TRAITS=["email", "plan"]
    )
    with app.app_context():
        fetch(app, flask_pixel.pixel_url("E", Account()))
        fetch(app, flask_pixel.pixel_url("E", {"id": "m1", "email": "m@example.com"}))
        fetch(app, flask_pixel.pixel_url(None, {"id": "m2", "email": "n@example.com"}, type="identify"))
        fetch(app, flask_pixel.pixel_url("E", "plain-id"))
    first, second, identify, plain = pixel_sink.events
    assert first["userId"] == "acct-12" and first["context"]["traits"] == {"email": "x@example.com"}
    assert second["userId"] == "m1" and second["context"]["traits"] == {"email": "m@example.com"}
    assert identify["type"] == "identify" and identify["traits"] == {"email": "n@example.com"}
    assert plain["userId"] == "plain-id" and "traits" not in plain.get("context", {})


def test_traits_from_a_comma_separated_string(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com", PIXEL_USER_TRAITS="email, plan")
    with app.app_context():
        fetch(app, flask_pixel.pixel_url("E", {"id": "u1", "plan": "pro", "email": "e@example.com", "name": "N"}))
    assert pixel_sink.events[0]["context"]["traits"] == {"email": "e@example.com", "plan": "pro"}


def test_traits_from_a_callable(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    traits: Callable[[Any], Dict[str, Any]] = lambda user: {"plan": user["plan"], "seats": 3}  # noqa: E731
    app = make_app(PIXEL_BASE_URL="https://example.com", PIXEL_USER_TRAITS=traits)
    with app.app_context():
        fetch(app, flask_pixel.pixel_url("E", {"id": "u1", "plan": "pro"}))
    assert pixel_sink.events[0]["context"]["traits"] == {"plan": "pro", "seats": 3}


def test_cache_buster_on_by_default_and_off_by_config(make_app: Callable[..., Flask]) -> None:
    on = make_app(PIXEL_BASE_URL="https://example.com")
    off = make_app(PIXEL_BASE_URL="https://example.com", PIXEL_CACHE_BUSTER=False)
    with on.app_context():
        first, second = flask_pixel.pixel_url("E", "u1"), flask_pixel.pixel_url("E", "u1")
    assert "cb=" in first and first != second
    with off.app_context():
        assert "cb=" not in flask_pixel.pixel_url("E", "u1")
        assert "cb=" not in flask_pixel.amp_pixel("E", "u1")


def test_ordinary_urls_are_short_and_long_ones_warn(make_app: Callable[..., Flask]) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    with app.app_context():
        ordinary = flask_pixel.pixel_url(
            "Email Opened", {"id": "3f6c2a9e-1b7d-4c1e-9a55-0d1e2f3a4b5c"}, campaign_id=2024, variant="b", list="weekly"
        )
        assert len(ordinary) < 2000
        with pytest.warns(PixelUrlWarning):
            flask_pixel.pixel_url("E", "u1", body="x" * 2100)


def test_other_dialects_for_urls(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com", PIXEL_URL_DIALECT="rudderstack")
    with app.app_context():
        url = flask_pixel.pixel_url("Email Opened", "u1", campaign_id=3)
    assert url.startswith("https://example.com/pixel/v1/track?")
    fetch(app, url)
    (event,) = pixel_sink.events
    assert (event["event"], event["userId"], event["properties"]) == ("Email Opened", "u1", {"campaign_id": 3})


def test_a_track_pixel_without_an_event_name_is_refused(make_app: Callable[..., Flask]) -> None:
    app = make_app(PIXEL_BASE_URL="https://example.com")
    with app.app_context(), pytest.raises(ValueError, match="needs an event name"):
        flask_pixel.pixel_url(None, "u1")


def test_another_apps_request_does_not_lend_its_host(make_app: Callable[..., Flask]) -> None:
    mailer = make_app(PIXEL_BASE_URL="https://mail.example")
    web = make_app()  # no PIXEL_BASE_URL: its own requests lend it their host
    with web.test_request_context("/", base_url="http://internal:8000"):
        assert mailer.extensions["pixel"].pixel_url("E").startswith("https://mail.example/v1/pixel/track?")
        assert web.extensions["pixel"].pixel_url("E").startswith("http://internal:8000/v1/pixel/track?")
