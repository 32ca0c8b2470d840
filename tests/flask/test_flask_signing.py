"""Signing and clicks in Flask: keys from SECRET_KEY, click_url, track_links, and PIXEL_BASE_URL over the Host header."""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, List, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, render_template_string
from markupsafe import Markup

import flask_pixel
from conftest import WRITE_KEY, src_of
from pixel_middleware import MemorySink, build_pixel_url
from pixel_middleware.pipeline.steps.signing import _canonical

EXAMPLE_TEMPLATES = Path(__file__).resolve().parents[2] / "examples" / "flask_app" / "templates"


def get(app: Flask, url: str):  # type: ignore[no-untyped-def]
    parts = urlsplit(url)
    return app.test_client().get(parts.path, query_string=parts.query, base_url=f"{parts.scheme}://{parts.netloc}")


def test_secret_key_signs_by_default(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(SECRET_KEY="flask-secret", PIXEL_BASE_URL="https://mail.example", PIXEL_REQUIRE_SIGNATURE=True)
    with app.app_context():
        url = flask_pixel.pixel_url("Email Opened", "u1")
    assert "&sig=" in url
    get(app, url)
    assert pixel_sink.events[0]["context"]["pixel"]["signed"] is True
    get(app, url.replace("uid=u1", "uid=u2"))
    assert len(pixel_sink.events) == 1
    assert app.extensions["pixel"].collector.rejections == {"bad_signature": 1}


def test_a_session_cookie_signature_is_no_pixel_signature(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    # Flask's session serializer signs with the same SECRET_KEY but its own salt; what it signs never verifies here.
    app = make_app(SECRET_KEY="flask-secret", PIXEL_BASE_URL="https://mail.example")
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    url = build_pixel_url("https://mail.example", "E", user_id="u1", write_key=WRITE_KEY, cache_buster=False)
    parts = urlsplit(url)
    cookie = serializer.make_signer().sign(_canonical(parts.path, parts.query).encode())
    forged = url + "&sig=" + cookie.decode().rsplit(".", 2)[-2] + "." + cookie.decode().rsplit(".", 1)[-1]
    get(app, forged)
    assert pixel_sink.events == []
    assert app.extensions["pixel"].collector.rejections == {"bad_signature": 1}


def test_signing_key_false_turns_signing_off(make_app: Callable[..., Flask]) -> None:
    app = make_app(SECRET_KEY="flask-secret", PIXEL_SIGNING_KEY=False, PIXEL_BASE_URL="https://mail.example")
    with app.app_context():
        assert "sig=" not in flask_pixel.pixel_url("E")
    assert app.extensions["pixel"].collector._verifier is None


def test_secret_key_fallbacks_rotate(pixel_sink: MemorySink, make_app: Callable[..., Flask]) -> None:
    old = make_app(SECRET_KEY="old-secret", PIXEL_BASE_URL="https://mail.example")
    with old.app_context():
        url = flask_pixel.pixel_url("E", "u1")
    rotated = make_app(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"], PIXEL_BASE_URL="https://mail.example")
    get(rotated, url)
    assert len(pixel_sink.events) == 1
    dropped = make_app(SECRET_KEY="new-secret", PIXEL_BASE_URL="https://mail.example")
    get(dropped, url)
    assert len(pixel_sink.events) == 1 and dropped.extensions["pixel"].collector.rejections == {"bad_signature": 1}


def test_own_signing_key_and_fallbacks(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(
        SECRET_KEY="flask-secret",
        SECRET_KEY_FALLBACKS=["flask-old"],
        PIXEL_SIGNING_KEY="pixel-new",
        PIXEL_SIGNING_KEY_FALLBACKS=["pixel-old"],
        PIXEL_BASE_URL="https://mail.example",
    )
    for key, accepted in [("pixel-new", True), ("pixel-old", True), ("flask-secret", False), ("flask-old", False)]:
        before = len(pixel_sink.events)
        get(app, build_pixel_url("https://mail.example", "E", user_id="u1", write_key=WRITE_KEY, signing_key=key))
        assert (len(pixel_sink.events) == before + 1) is accepted, key


@pytest.mark.parametrize("setting", ["PIXEL_SIGNING_KEY_FALLBACKS", "SECRET_KEY_FALLBACKS"])
def test_a_fallback_key_given_as_a_string_is_one_key(make_app: Callable[..., Flask], pixel_sink: MemorySink, setting: str) -> None:
    # Other PIXEL_* lists take a string too; a key string read as a list of keys made each of its
    # characters a signing key, and anyone could sign URLs with one of them.
    app = make_app(SECRET_KEY="flask-secret", PIXEL_BASE_URL="https://mail.example", **{setting: "old-secret"})
    for key, accepted in [("old-secret", True), ("o", False), ("-", False)]:
        before = len(pixel_sink.events)
        get(app, build_pixel_url("https://mail.example", "E", user_id="u1", write_key=WRITE_KEY, signing_key=key))
        assert (len(pixel_sink.events) == before + 1) is accepted, key


def test_click_url_global_records_and_redirects(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(SECRET_KEY="flask-secret", PIXEL_BASE_URL="https://mail.example")
    with app.app_context():
        rendered = render_template_string(
            "<a href=\"{{ click_url('https://shop.example/sale?a=1&b=2', user, campaign_id=4) }}\">Sale</a>", user={"id": "u9"}
        )
    url = html.unescape(rendered.split('"')[1])
    response = get(app, url)
    assert response.status_code == 302 and response.headers["Location"] == "https://shop.example/sale?a=1&b=2"
    (event,) = pixel_sink.events
    assert (event["event"], event["userId"]) == ("Email Link Clicked", "u9")
    assert event["properties"] == {"campaign_id": 4, "link_url": "https://shop.example/sale?a=1&b=2"}


def test_allowed_hosts_setting_without_a_key(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(PIXEL_BASE_URL="https://mail.example", PIXEL_CLICK_ALLOWED_HOSTS="shop.example, *.cdn.example")
    with app.app_context():
        allowed = flask_pixel.click_url("https://img.cdn.example/x", "u1")
        with pytest.raises(ValueError, match="PIXEL_CLICK_ALLOWED_HOSTS"):
            flask_pixel.click_url("https://evil.example/", "u1")  # the route would refuse it
    assert "sig=" not in allowed
    assert get(app, allowed).status_code == 302
    refused = allowed.replace("img.cdn.example", "evil.example")
    response = get(app, refused)
    assert response.status_code == 400 and "Location" not in response.headers
    assert app.extensions["pixel"].collector.rejections == {"unsafe_redirect": 1}


def test_without_a_key_or_allowed_hosts_click_urls_are_refused_when_built(make_app: Callable[..., Flask]) -> None:
    """Every click on them would answer 400 "This link cannot be followed": say so while building."""
    app = make_app(PIXEL_BASE_URL="https://mail.example")  # PIXEL_WRITE_KEY, no SECRET_KEY, no allowed hosts
    with app.app_context():
        with pytest.raises(ValueError) as refused:
            flask_pixel.click_url("https://shop.example/", "u1")
        for name in ("PIXEL_SIGNING_KEY", "SECRET_KEY", "PIXEL_CLICK_ALLOWED_HOSTS"):
            assert name in str(refused.value)
        with pytest.raises(ValueError, match="PIXEL_CLICK_ALLOWED_HOSTS"):
            flask_pixel.track_links('<p><a href="https://shop.example/sale">Sale</a></p>', "u1")
        with pytest.raises(ValueError, match="PIXEL_CLICK_ALLOWED_HOSTS"):
            app.jinja_env.from_string('{{ "<a href=\'https://shop.example/\'>s</a>"|track_links }}').render()
        # Links that are never rewritten need nothing.
        assert flask_pixel.track_links('<a href="mailto:a@b.example">m</a>') == '<a href="mailto:a@b.example">m</a>'


# -- PIXEL_BASE_URL over the request's Host ----------------------------------


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("internal-worker:8000", id="internal-host"),
        pytest.param("attacker.example", id="host-header-poisoning"),
    ],
)
def test_base_url_wins_over_the_request_host(make_app: Callable[..., Flask], host: str) -> None:
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    with app.test_request_context("/admin/send-newsletter", headers={"Host": host}):
        rendered = render_template_string(
            "{{ pixel_tag('Email Opened', 'u1') }}{{ '<a href=\"https://shop.example/\">x</a>'|track_links('u1') }}"
        )
    assert host not in rendered
    assert src_of(rendered).startswith("https://mail.example/v1/pixel/track?")
    assert 'href="https://mail.example/v1/click?' in rendered


def test_without_base_url_a_request_lends_its_host(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    with app.test_request_context("/", headers={"Host": "shop.example"}):
        assert flask_pixel.pixel_url("E").startswith("http://shop.example/v1/pixel/track?")


# -- track_links on a newsletter ------------------------------------------------


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: List[Tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        if tag == "a":
            attributes = dict(attrs)
            self.hrefs.append((attributes.get("href") or "", attributes))


def links(markup: str) -> List[Tuple[str, dict]]:
    parser = Links()
    parser.feed(markup)
    return parser.hrefs


def test_track_links_on_the_example_newsletter(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    source = (EXAMPLE_TEMPLATES / "newsletter.html").read_text()
    context = {"shop_url": "https://shop.example", "campaign_id": "spring", "user": {"id": "u1"}}
    with app.app_context():
        plain = render_template_string(source, **context)
        tracked = render_template_string("{{ body|track_links(user, campaign_id='spring') }}", body=Markup(plain), user={"id": "u1"})
    assert len(plain) > 4000
    before, after = links(plain), links(tracked)
    assert len(before) == len(after) > 15
    rewritten = 0
    for (old, attributes), (new, new_attributes) in zip(before, after):
        web = old.startswith(("http://", "https://"))
        if web and "data-pixel-skip" not in attributes:
            rewritten += 1
            assert new.startswith("https://mail.example/v1/click?") and "&sig=" in new
            assert {k: v for k, v in new_attributes.items() if k != "href"} == {k: v for k, v in attributes.items() if k != "href"}
            response = get(app, new)
            assert response.status_code == 302 and response.headers["Location"] == old
        else:
            assert new == old  # mailto:, tel:, #top, /refer, the unsubscribe link
    assert rewritten == len(pixel_sink.events) >= 10
    assert {e["properties"]["campaign_id"] for e in pixel_sink.events} == {"spring"}
    # Outside the rewritten <a> tags, not one character changed.
    assert tracked.count("<") == plain.count("<") and tracked.endswith(plain[plain.rindex("</a>") :])
    assert "<!-- Footer links" in tracked and "&copy; 2026 Shop &lt;Example&gt; Ltd." in tracked
    # Outlook for Windows shows the VML button in the conditional comment instead: tracked as well.
    button = re.search(r'<!--\[if mso\]>\s*<v:roundrect [^>]*href="([^"]+)"', tracked)
    assert button and "xmlns:v=" in tracked[button.start() : button.end()]
    response = get(app, html.unescape(button.group(1)))
    assert response.status_code == 302 and response.headers["Location"] == "https://shop.example/sale"


OUTLOOK_BUTTON = """<td>
<!--[IF gte mso 9]>
  <v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://shop.example/sale?a=1&amp;b=2" arcsize="10%" fillcolor="#d33">
    <center><a href="https://shop.example/in-comment">x</a> <a href="mailto:a@b.example">m</a></center>
  </v:roundrect>
  <v:rect data-pixel-skip href="https://shop.example/skip"></v:rect>
<![endif] -->
<!--[if !mso]><!-- --><a href="https://shop.example/sale">Shop</a><!--<![endif]-->
<!-- <a href="https://x.example/">a plain comment</a> [if mso]> <![endif]-->
</td>"""


def test_track_links_rewrites_outlook_conditional_comments_and_vml(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    with app.app_context():
        result = str(flask_pixel.track_links(OUTLOOK_BUTTON, "u1"))
    hrefs = re.findall(r'href="([^"]+)"', result)
    clicks = [html.unescape(h) for h in hrefs if h.startswith("https://mail.example/v1/click?")]
    targets = []
    for click in clicks:
        response = get(app, click)
        assert response.status_code == 302
        targets.append(response.headers["Location"])
    assert targets == ["https://shop.example/sale?a=1&b=2", "https://shop.example/in-comment", "https://shop.example/sale"]
    assert [e["properties"]["link_url"] for e in pixel_sink.events] == targets
    # Everything else, comments and their markers included, is as it was.
    assert re.sub(r'href="[^"]+"', "href", result) == re.sub(r'href="[^"]+"', "href", OUTLOOK_BUTTON)
    assert 'href="mailto:a@b.example"' in result and 'href="https://shop.example/skip"' in result
    assert 'href="https://x.example/">a plain comment' in result


def test_track_links_reads_an_unknown_marked_section_as_browsers_do(make_app: Callable[..., Flask]) -> None:
    # html.parser raises AssertionError on a "<![" section it does not know, which browsers read as
    # a comment up to the next ">": the whole filter raised on such an email, and inside Outlook's
    # conditional comments (read now for their links) on what passed before as a plain comment.
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    source = ('<p>\n<![foo]>\n<![ x]></p><a href="https://y.example/">y</a>\n'
              '<!--[if mso]><![foo]><a href="https://x.example/">x</a><![endif]-->')
    with app.app_context():
        result = str(flask_pixel.track_links(source, "u1"))
    assert [parse_qs(urlsplit(html.unescape(href)).query)["url"] for href in re.findall(r'href="([^"]+)"', result)] == [
        ["https://y.example/"], ["https://x.example/"]]
    assert re.sub(r'href="[^"]+"', "href", result) == re.sub(r'href="[^"]+"', "href", source)


def test_track_links_writes_ampersands_in_tag_and_attribute_names_back(make_app: Callable[..., Flask]) -> None:
    # The parser reads the source with each "&" as a private-use character: in the names of a
    # rewritten tag, that character, not the "&", was written out.
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    source = '<a x&y href="https://x.example/">x</a><!--[if mso]><v:rect&x href="https://v.example/"></v:rect><![endif]-->'
    with app.app_context():
        result = str(flask_pixel.track_links(source, "u1"))
    assert '<a x&y href="https://mail.example/v1/click?' in result
    assert '<v:rect&x href="https://mail.example/v1/click?' in result
    assert all(ord(c) < 0xE000 for c in result)


def test_track_links_keeps_a_tag_name_whose_lower_case_is_longer(make_app: Callable[..., Flask]) -> None:
    # The name as written was cut at the length of html.parser's lower-cased name, and "İ".lower()
    # is two characters: the cut took what followed the name too ("<v:İİ/h href=...>").
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    with app.app_context():
        spaced = str(flask_pixel.track_links('<v:İ href="https://v.example/"></v:İ>', "u1"))
        slashed = str(flask_pixel.track_links('<v:İİ/href="https://v.example/"></v:İİ>', "u1"))
    assert spaced.startswith('<v:İ href="https://mail.example/v1/click?')
    assert slashed.startswith('<v:İİ href="https://mail.example/v1/click?')


@pytest.mark.parametrize(
    "source, expected",
    [
        pytest.param('<a href="mailto:a@b.example">m</a>', '<a href="mailto:a@b.example">m</a>', id="mailto"),
        pytest.param('<a href="tel:+1">t</a>', '<a href="tel:+1">t</a>', id="tel"),
        pytest.param("<a href='#x'>f</a>", "<a href='#x'>f</a>", id="fragment"),
        pytest.param('<a href="/p">r</a>', '<a href="/p">r</a>', id="relative"),
        pytest.param('<a href="//cdn.example/x">r</a>', '<a href="//cdn.example/x">r</a>', id="scheme-relative"),
        pytest.param('<a name="anchor">n</a>', '<a name="anchor">n</a>', id="no-href"),
        pytest.param('<a data-pixel-skip href="https://x.example/">s</a>', '<a data-pixel-skip href="https://x.example/">s</a>', id="skip"),
        pytest.param('<!-- <a href="https://x.example/">c</a> -->', '<!-- <a href="https://x.example/">c</a> -->', id="comment"),
        pytest.param('<p title="a href=https://x.example/">p</p>', '<p title="a href=https://x.example/">p</p>', id="attribute-text"),
        pytest.param('<script>var s = \'<a href="https://x.example/">\';</script>', '<script>var s = \'<a href="https://x.example/">\';</script>', id="script"),
    ],
)
def test_track_links_leaves_other_links_and_text_alone(make_app: Callable[..., Flask], source: str, expected: str) -> None:
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    with app.app_context():
        result = flask_pixel.track_links(source, "u1")
    assert isinstance(result, Markup) and str(result) == expected


def test_track_links_handles_entities_case_and_line_breaks(make_app: Callable[..., Flask]) -> None:
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    source = '<p>a\r\nb</p>\n<A HREF="https://x.example/?a=1&amp;b=2" Class=btn>x</A>\n<a href="http://y.example/">y</a>'
    with app.app_context():
        result = str(flask_pixel.track_links(source))
    (first, _), (second, _) = links(result)
    assert parse_qs(urlsplit(first).query)["url"] == ["https://x.example/?a=1&b=2"]
    assert parse_qs(urlsplit(second).query)["url"] == ["http://y.example/"]
    assert result.startswith("<p>a\r\nb</p>\n<A href=") and 'class="btn">x</A>\n<a href=' in result


def test_track_links_reads_bare_ampersands_in_href_as_browsers_do(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    # HTML's rule for attributes: a named reference with no ';' followed by '=' or a letter or digit
    # is text ("&region=eu" stays as written), so a browser follows exactly this URL; html.unescape
    # alone read "&region" as "®ion" (the link was left untracked) and "&gtin" as ">in" (the click
    # led elsewhere). Other attributes of the tag keep their text likewise.
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    target = "https://shop.example/p?lang=en&region=eu&gtin=4006381333931&copy=1&amp=2"
    source = f'<a href="{target}" title="Q&amp;A &copy=1 &times 2">Shop</a> <a href="https://shop.example/?a=1&amp;b=&lt;">x</a>'
    with app.app_context():
        result = str(flask_pixel.track_links(source, "u1"))
    (first, attributes), (second, _) = links(result)
    assert parse_qs(urlsplit(first).query)["url"] == [target]
    assert parse_qs(urlsplit(second).query)["url"] == ["https://shop.example/?a=1&b=<"]
    response = get(app, first)
    assert response.status_code == 302 and response.headers["Location"] == target
    assert 'title="Q&amp;A &amp;copy=1 × 2"' in result


def test_track_links_leaves_the_apps_own_click_urls_alone(make_app: Callable[..., Flask], pixel_sink: MemorySink) -> None:
    # A body with a click_url(...) link of its own, filtered through track_links: wrapped again,
    # one click recorded two events, the outer one's link_url the inner URL, write key included.
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example")
    source = "<a href=\"{{ click_url('https://shop.example/cta', user, 'CTA Clicked') }}\" class=cta>Buy</a> <a href=\"https://shop.example/\">Shop</a>"
    with app.app_context():
        tracked = render_template_string("{% filter track_links(user) %}" + source + "{% endfilter %}", user="u1")
    assert tracked.count("/v1/click?") == 2 and "%2Fv1%2Fclick" not in tracked
    assert '" class=cta>Buy</a>' in tracked  # the tag as written, not rebuilt
    (first, _), (second, _) = links(tracked)
    response = get(app, first)
    assert response.status_code == 302 and response.headers["Location"] == "https://shop.example/cta"
    assert get(app, second).headers["Location"] == "https://shop.example/"
    assert [(e["event"], e["properties"]["link_url"]) for e in pixel_sink.events] == [
        ("CTA Clicked", "https://shop.example/cta"),
        ("Email Link Clicked", "https://shop.example/"),
    ]
    assert all(WRITE_KEY not in str(e) for e in pixel_sink.events)


def test_click_urls_without_the_click_route_are_refused(make_app: Callable[..., Flask]) -> None:
    # Without the compact dialect the app has no /v1/click: every link of an email rewritten to it
    # was a 404 for the reader, found out only when the mail had gone.
    app = make_app(SECRET_KEY="s", PIXEL_BASE_URL="https://mail.example", PIXEL_DIALECTS=["rudderstack"], PIXEL_URL_DIALECT="rudderstack")
    with app.app_context():
        assert flask_pixel.track_links('<a href="mailto:a@b.example">m</a>') == '<a href="mailto:a@b.example">m</a>'
        with pytest.raises(RuntimeError, match="compact"):
            flask_pixel.click_url("https://shop.example/", "u1")
        with pytest.raises(RuntimeError, match="compact"):
            flask_pixel.track_links('<a href="https://shop.example/">s</a>', "u1")
