"""Who fetched a pixel: context.pixel.agent and .machine, and machine_events="drop".

The user agents are real ones, copied from where they are published:

- Gmail: darkvisitors.com/agents/googleimageproxy ("User Agent String")
  and Google's own blog post on the image proxy (2013), quoted in
  exchangetuts.com "Multiple calls from via ggpht.com GoogleImageProxy".
- Yahoo: the string YahooMailProxy sends names its own help page,
  help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html.
- Apple MPP: the bare "Mozilla/5.0", ua-parser/uap-core issue 509
  ("Apple Mail proxy", 2021-09-27); Apple's network is ARIN NET-17-0-0-0-1.
- Apple Mail itself: ua-parser/uap-core issue 528; Outlook for Windows:
  browscap/browscap issue 1634, DannyBoyNg/UserAgentService issue 4,
  ua-parser/uap-core issue 405 ("ms-office; MSOffice 16").
- Crawlers and link-preview bots: Google Search Central "Google crawlers"
  (Googlebot), Bing Webmaster "Which crawlers does Bing use" (bingbot),
  Meta "The Facebook Crawler" (facebookexternalhit), api.slack.com/robots
  (Slackbot-LinkExpanding), LinkedIn's crawler page (LinkedInBot), and
  Barracuda's mail scanner as listed in crawlerdetect's crawler list.
- Prefetch headers: the Fetch metadata spec's Sec-Purpose ("prefetch"),
  Chrome's legacy "Purpose: prefetch", Firefox's "X-Moz: prefetch" (MDN),
  Safari's "X-Purpose: preview" (Top Sites thumbnails).
- The Crawler-Detect project's own test lists, tests/data/crawlers.txt and
  devices.txt.gz (see tests/data/README.md), for the bot verdict.
"""
from __future__ import annotations

import gzip
import logging
import threading
from pathlib import Path

import pytest
from crawlerdetect import CrawlerDetect, providers
from werkzeug.serving import make_server
from werkzeug.test import Client
from werkzeug.wrappers import Response

from pixel_middleware import MemorySink, PixelMiddleware
from pixel_middleware.pipeline.steps import agents, crawlers
from pixel_middleware.pipeline.steps.agents import AGENTS, MACHINE_AGENTS, classify
from tests.conftest import downstream_app, fire

GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
MPP = "Mozilla/5.0"
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
IPHONE_MAIL = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.15225; Pro)"
OUTLOOK_IE = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
FACEBOOK = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
LINKEDIN = "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)"
BARRACUDA = "Barracuda Sentinel (EE)"

APPLE_ADDRESS = "17.58.63.7"
OTHER_ADDRESS = "203.0.113.7"

CASES = [
    pytest.param(GMAIL, OTHER_ADDRESS, {}, "gmail_proxy", id="gmail-image-proxy"),
    pytest.param(YAHOO, OTHER_ADDRESS, {}, "yahoo_proxy", id="yahoo-mail-proxy"),
    pytest.param(MPP, APPLE_ADDRESS, {}, "apple_mpp", id="apple-mpp"),
    pytest.param(MPP, "::ffff:" + APPLE_ADDRESS, {}, "apple_mpp", id="apple-mpp-ipv4-mapped"),
    pytest.param(MPP, OTHER_ADDRESS, {}, "browser", id="bare-mozilla-elsewhere-is-not-apple"),
    pytest.param(APPLE_MAIL, APPLE_ADDRESS, {}, "browser", id="apple-mail-on-apples-network"),
    pytest.param(APPLE_MAIL, OTHER_ADDRESS, {}, "browser", id="apple-mail"),
    pytest.param(IPHONE_MAIL, OTHER_ADDRESS, {}, "browser", id="iphone-mail"),
    pytest.param(OUTLOOK, OTHER_ADDRESS, {}, "browser", id="outlook-windows"),
    pytest.param(OUTLOOK_IE, OTHER_ADDRESS, {}, "browser", id="outlook-ms-office"),
    pytest.param(CHROME, OTHER_ADDRESS, {}, "browser", id="chrome"),
    pytest.param(THUNDERBIRD, OTHER_ADDRESS, {}, "browser", id="thunderbird"),
    pytest.param(GOOGLEBOT, OTHER_ADDRESS, {}, "bot", id="googlebot"),
    pytest.param(BINGBOT, OTHER_ADDRESS, {}, "bot", id="bingbot"),
    pytest.param(FACEBOOK, OTHER_ADDRESS, {}, "bot", id="facebook-link-preview"),
    pytest.param(SLACK, OTHER_ADDRESS, {}, "bot", id="slack-link-preview"),
    pytest.param(LINKEDIN, OTHER_ADDRESS, {}, "bot", id="linkedin-link-preview"),
    pytest.param(BARRACUDA, OTHER_ADDRESS, {}, "bot", id="barracuda-on-the-pixel"),
    pytest.param(CHROME, OTHER_ADDRESS, {"Sec-Purpose": "prefetch"}, "prefetch", id="sec-purpose"),
    pytest.param(CHROME, OTHER_ADDRESS, {"Sec-Purpose": "prefetch;prerender"}, "prefetch", id="sec-purpose-prerender"),
    pytest.param(CHROME, OTHER_ADDRESS, {"Purpose": "prefetch"}, "prefetch", id="purpose"),
    pytest.param(THUNDERBIRD, OTHER_ADDRESS, {"X-Moz": "prefetch"}, "prefetch", id="x-moz"),
    pytest.param(APPLE_MAIL, OTHER_ADDRESS, {"X-Purpose": "preview"}, "prefetch", id="safari-x-purpose-preview"),
    pytest.param(GMAIL, OTHER_ADDRESS, {"Accept": "image/*"}, "gmail_proxy", id="other-headers-change-nothing"),
    pytest.param("", OTHER_ADDRESS, {}, "browser", id="no-user-agent"),
]


def environ(user_agent: str, address: str, headers: dict) -> dict:
    env = {"REMOTE_ADDR": address, "HTTP_USER_AGENT": user_agent}
    env.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()})
    return env


@pytest.mark.parametrize("user_agent, address, headers, expected", CASES)
def test_classify(user_agent, address, headers, expected):
    assert classify(environ(user_agent, address, headers)) == expected


@pytest.mark.parametrize("user_agent, address, headers, expected", CASES)
def test_every_event_says_who_fetched_it(accept, user_agent, address, headers, expected):
    event = accept("/v1/pixel/track?wk=k&e=Email%20Opened&uid=u1", headers={"User-Agent": user_agent, **headers},
                   environ_base={"REMOTE_ADDR": address})
    assert event["context"]["pixel"] == {"agent": expected, "machine": expected in MACHINE_AGENTS}


@pytest.mark.parametrize("user_agent, expected", [
    pytest.param(BARRACUDA, "link_scanner", id="barracuda"),
    pytest.param(GOOGLEBOT, "link_scanner", id="crawler-following-a-link"),
    pytest.param(SLACK, "link_scanner", id="link-preview-following-a-link"),
    pytest.param(CHROME, "browser", id="a-person"),
    pytest.param(GMAIL, "gmail_proxy", id="gmail"),
])
def test_on_the_click_route_known_machines_are_link_scanners(user_agent, expected):
    assert classify(environ(user_agent, OTHER_ADDRESS, {}), click=True) == expected


def test_machine_flag():
    assert MACHINE_AGENTS == {"apple_mpp", "bot", "prefetch", "link_scanner"}
    assert set(AGENTS) - MACHINE_AGENTS == {"browser", "gmail_proxy", "yahoo_proxy"}


@pytest.fixture
def dropping(sink: MemorySink) -> PixelMiddleware:
    return PixelMiddleware(downstream_app, sink=sink, machine_events="drop")


@pytest.mark.parametrize("user_agent, address, headers, expected", [p for p in CASES if p.values[3] in MACHINE_AGENTS])
def test_drop_rejects_machines_with_the_gif(dropping, sink, signals, caplog, user_agent, address, headers, expected):
    with caplog.at_level(logging.WARNING, logger="pixel_middleware"):
        fire(Client(dropping), "/v1/pixel/track?wk=secret-key&e=Open&uid=u1",
             headers={"User-Agent": user_agent, **headers}, environ_base={"REMOTE_ADDR": address})
    assert sink.events == []
    assert dropping.rejections == {"machine": 1}
    assert signals.of("rejected")[0]["reason"] == "machine" and expected in signals.of("rejected")[0]["detail"]
    assert "machine" in caplog.text and "secret-key" not in caplog.text


@pytest.mark.parametrize("user_agent", [GMAIL, YAHOO, APPLE_MAIL, OUTLOOK, CHROME])
def test_drop_keeps_people_and_their_proxies(dropping, sink, user_agent):
    fire(Client(dropping), "/v1/pixel/track?wk=k&e=Open&uid=u1", headers={"User-Agent": user_agent})
    assert len(sink.events) == 1 and sink.events[0]["context"]["pixel"]["machine"] is False


def test_machine_events_must_be_keep_or_drop():
    with pytest.raises(ValueError, match="machine_events"):
        PixelMiddleware(None, machine_events="flag")


def test_a_user_agent_is_classified_once_and_the_cache_is_bounded():
    agents._by_user_agent.cache_clear()
    for _ in range(3):
        classify(environ(GOOGLEBOT, OTHER_ADDRESS, {}))
    info = agents._by_user_agent.cache_info()
    assert (info.misses, info.hits, info.maxsize) == (1, 2, agents.CACHE_SIZE)
    # The address is not part of the cached verdict: MPP is still decided per request.
    assert classify(environ(MPP, APPLE_ADDRESS, {})) == "apple_mpp"
    assert classify(environ(MPP, OTHER_ADDRESS, {})) == "browser"


def test_refresh_writes_apples_egress_list(tmp_path):
    """``refresh`` against a loopback server publishing Apple's CSV format (prefix,country,region,city,)."""
    csv = "172.224.224.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,\n"
    server = make_server("127.0.0.1", 0, lambda env, sr: Response(csv, mimetype="text/csv")(env, sr))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = tmp_path / "ranges.txt"
        target.write_text(agents.RANGES_FILE.read_text())
        count = agents.refresh(f"http://127.0.0.1:{server.server_port}/egress.csv", target)
    finally:
        server.shutdown()
    assert count == 3
    v4, v6 = agents._load_ranges(target)
    assert len(v4[0]) == 2 and len(v6[0]) == 1
    text = target.read_text()
    assert "17.0.0.0/8" in text and "172.224.224.0/27" in text and text.startswith("# Networks")


DATA = Path(__file__).with_name("data")
CRAWLER_LIST = (DATA / "crawlers.txt").read_text(encoding="utf-8").splitlines()
with gzip.open(DATA / "devices.txt.gz", "rt", encoding="utf-8") as _file:
    DEVICE_LIST = _file.read().splitlines()
#: crawlerdetect's own matcher, the reference (it takes about 0.5 ms a line: see the devices test).
reference = CrawlerDetect().is_crawler


def test_the_step_runs_the_compiled_matcher_not_crawlerdetects():
    """With the installed crawlerdetect, nothing falls back to its slow matcher."""
    assert isinstance(agents._is_crawler.__self__, crawlers.CrawlerMatcher)


def test_every_crawler_of_crawler_detects_list_is_a_bot_for_both():
    assert len(CRAWLER_LIST) > 3000
    assert [line for line in CRAWLER_LIST if agents._is_crawler(line) != reference(line)] == []
    assert all(agents._is_crawler(line) for line in CRAWLER_LIST)
    assert all(classify(environ(line, OTHER_ADDRESS, {})) in ("bot", "gmail_proxy", "yahoo_proxy", "browser")
               for line in CRAWLER_LIST)


def test_no_device_of_crawler_detects_list_is_a_bot():
    """Every line, against what Crawler-Detect's own suite asserts of this list (no crawler).

    crawlerdetect itself takes about 0.5 ms a line (95 s for the 165,000 lines), so
    it is asked here of every 50th line; its own test suite asserts the rest.
    """
    assert len(DEVICE_LIST) > 100_000
    assert [line for line in DEVICE_LIST if agents._is_crawler(line)] == []
    sample = DEVICE_LIST[::50]
    assert [line for line in sample if agents._is_crawler(line) != reference(line)] == []


@pytest.mark.parametrize("user_agent, expected", [
    pytest.param("YandexBot/3.0", True, id="yandex-bot"),
    pytest.param("Mozilla/5.0 YandexSearch/8.0", False, id="lookahead-excludes-yandex-search"),
    pytest.param("DebugBear", True, id="dollar"),
    pytest.param("DebugBear Linux", False, id="dollar-not-before-more-text"),
    pytest.param("DebugBear\nLinux", True, id="dollar-before-a-newline-left-by-an-exclusion"),
    pytest.param("b0t", True, id="anchored-both-ends"),
    pytest.param("Java/1.8", True, id="caret"),
    pytest.param("xJava/1.8", False, id="caret-not-inside"),
    pytest.param("cubot", False, id="excluded-phone-name"),
    pytest.param("Dart/3", True, id="ascii-digit"),
    pytest.param("Dart/\u0663", False, id="arabic-digit-is-not-0-9"),
    pytest.param("\u017fpider", True, id="long-s-is-s-under-ignorecase"),
    pytest.param("Y!J-\u0130BC", True, id="dotted-capital-i-is-a-letter-under-ignorecase"),
    pytest.param("Slac\u212abot", True, id="kelvin-sign-is-k"),
    pytest.param("   ", False, id="blank"),
])
def test_patterns_python_and_hyperscan_read_differently_get_crawlerdetects_verdict(user_agent, expected):
    assert reference(user_agent) is expected
    assert agents._is_crawler(user_agent) is expected


def test_only_the_first_512_characters_are_classified():
    agents._by_user_agent.cache_clear()
    head = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    padding = " " * (agents._CLASSIFIED_CHARS - len(head) - len("Googlebot"))
    inside = head + padding + "Googlebot/2.1"  # "Googlebot" ends at character 512
    beyond = head + padding + " Googlebot/2.1"
    assert classify(environ(inside, OTHER_ADDRESS, {})) == "bot"
    assert classify(environ(beyond, OTHER_ADDRESS, {})) == "browser"
    assert reference(beyond) is True  # crawlerdetect would read it all
    megabyte = "Mozilla/5.0 " + "a" * 2**20 + " Googlebot"
    assert classify(environ(megabyte, OTHER_ADDRESS, {})) == "browser"
    assert agents._by_user_agent.cache_info().currsize == 3  # the cache holds heads, not megabytes


def test_a_crawlerdetect_upgrade_brings_its_crawlers_and_exclusions(monkeypatch):
    """The matcher is compiled from the package's lists as they are when it is built."""
    assert not agents._is_crawler("Quuxly/1.0") and agents._is_crawler("Mozilla/5.0 Quuxbot/1.0")
    monkeypatch.setattr(providers.crawlers, "data", [*providers.crawlers.data, r"^Quuxly\/[0-9]"])
    monkeypatch.setattr(providers.exclusions, "data", [*providers.exclusions.data, r"Quuxbot\/[\d\.]*"])
    upgraded = crawlers.build()
    assert isinstance(upgraded.__self__, crawlers.CrawlerMatcher)
    assert upgraded("Quuxly/1.0") and not upgraded("xQuuxly/1.0")
    assert not upgraded("Mozilla/5.0 Quuxbot/1.0")
    assert upgraded("Googlebot/2.1") and not upgraded(CHROME)


def test_a_pattern_the_rewrite_does_not_know_falls_back_to_crawlerdetect(monkeypatch, caplog):
    monkeypatch.setattr(providers.crawlers, "data", [*providers.crawlers.data, r"\bQuuxly\b"])
    with pytest.raises(crawlers.Unsupported):
        crawlers.CrawlerMatcher(providers.crawlers.data, providers.exclusions.data)
    with caplog.at_level(logging.WARNING, logger="pixel_middleware"):
        fallback = crawlers.build()
    assert isinstance(fallback.__self__, CrawlerDetect)
    assert "unaccelerated" in caplog.text
    assert fallback(GOOGLEBOT) and not fallback(CHROME)
