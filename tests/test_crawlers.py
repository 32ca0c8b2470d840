"""The compiled crawler matcher gives crawlerdetect's verdict on any text, not only on the lists.

Two proofs beside the list tests in test_agents.py: every piece of every
pattern, rewritten, matches a folded character exactly when the original
piece matches the original character under IGNORECASE, for every code
point, in Python's re and in Hyperscan; and arbitrary texts built from the
patterns' own words and the characters where Python and Hyperscan differ get
crawlerdetect's verdict.
"""
from __future__ import annotations

import re
from collections import defaultdict

import hyperscan
import pytest
from crawlerdetect import CrawlerDetect, providers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixel_middleware.pipeline.steps import crawlers
from pixel_middleware.pipeline.steps.crawlers import _sre, fold, rewrite

PATTERNS = [*providers.crawlers.data, *providers.exclusions.data]
#: Characters whose meaning differs between Python's re (Unicode, IGNORECASE) and Hyperscan or a plain lower().
TRICKY = ["\u0130", "\u0131", "\u017f", "\u212a", "\u0663", "\uff13", "\U0001d7d9", "\n", "\x00", "\x80", "\x81",
          "\xe9", "\xc9", "\xdf", "\u03a3", "\ud800", " ", "\t", "/", ".", "_", "-", ";"]


def pieces(items):
    """Every character-matching piece (literal, class, dot) of a parsed pattern."""
    for op, av in items:
        if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.IN, _sre.ANY):
            yield op, av
        elif op is _sre.BRANCH:
            for branch in av[1]:
                yield from pieces(branch)
        elif op is _sre.SUBPATTERN:
            yield from pieces(av[3])
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            yield from pieces(av[2])
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            yield from pieces(av[1])


def as_written(op, av) -> str:
    """A piece as a pattern of its own, for Python's re with IGNORECASE as crawlerdetect runs it."""
    if op is _sre.LITERAL:
        return re.escape(chr(av))
    if op is _sre.NOT_LITERAL:
        return "[^" + re.escape(chr(av)) + "]"
    if op is _sre.ANY:
        return "."
    parts = []
    for item, value in av:
        if item is _sre.NEGATE:
            parts.append("^")
        elif item is _sre.LITERAL:
            parts.append(re.escape(chr(value)))
        elif item is _sre.RANGE:
            parts.append(re.escape(chr(value[0])) + "-" + re.escape(chr(value[1])))
        else:
            assert item is _sre.CATEGORY and value is _sre.CATEGORY_DIGIT, (item, value)
            parts.append(r"\d")
    return "[" + "".join(parts) + "]"


def all_pieces():
    found = {}
    for pattern in PATTERNS:
        for op, av in pieces(crawlers._parse(pattern).data):
            found.setdefault(as_written(op, av), (op, av))
    return found


EVERY_CHARACTER = "".join(map(chr, range(0x110000)))


def test_folding_keeps_one_character_for_one_and_only_latin_1():
    folded = fold(EVERY_CHARACTER)
    assert len(folded) == len(EVERY_CHARACTER)
    assert max(folded) <= "\xff"
    assert fold("Mozilla/5.0 SAFARI") == "mozilla/5.0 safari"


def fullmatcher(pattern: str):
    """Whether Hyperscan, as the matcher compiles patterns, matches ``pattern`` on the whole of a text."""
    database = crawlers._database([f"^(?:{pattern})\\z"], "a piece")
    scratch = hyperscan.Scratch(database)

    def matches(data: bytes) -> bool:
        found = []
        database.scan(data, match_event_handler=crawlers._note, context=found, scratch=scratch)
        return bool(found)

    return matches


def test_every_piece_of_every_pattern_matches_folded_text_as_the_original_matches_the_original():
    """For every code point c and every piece p: p (IGNORECASE) matches c iff rewrite(p) matches fold(c)."""
    folded = fold(EVERY_CHARACTER)
    by_fold = defaultdict(list)
    for char, into in zip(EVERY_CHARACTER, folded):
        by_fold[into].append(char)
    groups = {into: "".join(chars) for into, chars in by_fold.items()}
    found = all_pieces()
    assert len(found) > 50
    wrong = []
    for written, (op, av) in found.items():
        original = re.compile(written, re.IGNORECASE)
        python = re.compile(rewrite([(op, av)], exact=True))
        fast = fullmatcher(rewrite([(op, av)], exact=False))
        for into, chars in groups.items():
            expected = python.fullmatch(into) is not None
            if fast(into.encode("latin-1")) != expected:
                wrong.append((written, "hyperscan", into))
            matched = len(original.findall(chars))
            if matched != (len(chars) if expected else 0):
                wrong.append((written, "python", into, matched, len(chars)))
    assert wrong == []


def test_zero_width_parts_are_confirmed_in_python_and_the_rest_decided_by_hyperscan_alone():
    matcher = crawlers.CrawlerMatcher(providers.crawlers.data, providers.exclusions.data)
    needing = [p for p in providers.crawlers.data if crawlers._needs_python(crawlers._parse(p).data)]
    assert r"Yandex(?!Search)" in needing and 0 < matcher.confirmed == len(needing) < 20


words = sorted({re.sub(r"[\\^$()?*+\[\]|]", "", pattern) for pattern in PATTERNS} - {""})
fragment = st.one_of(
    st.sampled_from(words), st.sampled_from(TRICKY),
    st.sampled_from(["Mozilla/5.0 ", "(KHTML, like Gecko) ", "Safari/537.36", "Windows NT 10.0; ", "Linux", "X11",
                     "CPU iPhone OS 17_1 like Mac OS X", "Build/", "; M bot", "cubot", "Search", "123", "b0t"]),
    st.text(max_size=4),
)
user_agents = st.lists(st.tuples(fragment, st.sampled_from([str, str.upper, str.swapcase])), max_size=10).map(
    lambda parts: "".join(case(text) for text, case in parts))


reference = CrawlerDetect().is_crawler


@pytest.fixture(scope="module")
def matcher():
    return crawlers.CrawlerMatcher(providers.crawlers.data, providers.exclusions.data)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_agent=user_agents)
def test_any_text_gets_crawlerdetects_verdict(matcher, user_agent):
    assert matcher.is_crawler(user_agent) is reference(user_agent)


@settings(max_examples=300, deadline=None)
@given(user_agent=st.text(alphabet=st.sampled_from(TRICKY + list("abcdefghijklmnopqrstuvwxyzBOTJAV0123456789")),
                          max_size=40))
def test_tricky_characters_get_crawlerdetects_verdict(matcher, user_agent):
    assert matcher.is_crawler(user_agent) is reference(user_agent)


def test_threads_classifying_at_once_each_get_the_verdict(matcher):
    """Hyperscan releases the GIL while it scans, and a scratch space serves one scan at a time: one per thread."""
    import threading

    texts = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
             "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
             "curl/8.5.0", "x" * 512 + "bot"]
    expected = [reference(text) for text in texts]
    wrong: list = []

    def classify() -> None:
        try:
            for _ in range(300):
                got = [matcher.is_crawler(text) for text in texts]
                if got != expected:
                    wrong.append(got)
        except Exception as error:  # noqa: BLE001 - a shared scratch raises ScratchInUseError here
            wrong.append(error)

    threads = [threading.Thread(target=classify) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
