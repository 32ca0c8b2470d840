"""crawlerdetect's verdict at line rate: its patterns compiled for RE2, with the same answers.

crawlerdetect (``CrawlerDetect().is_crawler(user_agent)``) strips the user
agent, deletes what its exclusions regex matches (browser tokens such as
``Safari/537.36``), and searches what is left with one alternation of about
1,460 patterns, both with Python's backtracking ``re`` and ``IGNORECASE``.
That search tries every branch at every position: a median of 350 us for a
user agent never seen before, and tens of milliseconds for a crafted one.

:class:`CrawlerMatcher` gives the same verdict on any text, built from the
package's own pattern lists (``crawlerdetect.providers``) when it is created,
so that a crawlerdetect upgrade brings its new crawlers along:

1. The text is *folded*, one character for one, into the only distinctions
   the patterns can see: ASCII letters to lower case, any other character
   Python's ``IGNORECASE`` deems equal to an ASCII letter (``K``, ``ſ``,
   ``İ``, ``ı``) to that letter, a non-ASCII decimal digit (which ``\\d``
   matches but ``[0-9]`` does not) to ``\\x80``, any other character above
   ``\\xff`` (and ``\\x80`` itself) to ``\\x81``. Each pattern is rewritten
   from its parse tree for the folded text (literals in lower case, ``\\d``
   as ``[0-9\\x80]``, ``.`` as ``[^\\n]``), so that every piece of it
   matches a folded character exactly when the original piece matches the
   original character under ``IGNORECASE`` (the tests check this for every
   code point).
2. The exclusions are deleted by Python's ``re`` from the folded text, case
   sensitively: the same engine and the same pattern structure as
   crawlerdetect's, so the same matches, without ``IGNORECASE``'s per
   character case folding (a fifth of the cost). An RE2 set of the
   exclusions first says whether any of them occurs at all: in most
   hostile texts none does, and Python's ``re`` is not run.
3. The crawler patterns run as one RE2 set (a lazily built DFA, linear in
   the text, whatever it holds) over the folded text's bytes. The few that
   RE2 cannot run exactly (a lookahead, ``$``, which in Python also matches
   before a final newline) run in RE2 without those zero-width parts, a
   superset, and only a text one of them flags is searched with that one
   pattern in Python's ``re``.

Anything the rewrite does not know (a pattern using ``\\w``, back
references, inline flags; a new construct in a future crawlerdetect) makes
:func:`build` return crawlerdetect's own matcher instead, logged once:
slower, never wrong.
"""
from __future__ import annotations

import logging
import random
import re
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import re2

try:  # Python 3.11+ moved the parser; importing sre_parse there warns.
    from re import _parser as _sre
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_parse as _sre  # type: ignore[no-redef]

log = logging.getLogger("pixel_middleware")

#: Folded stand-in for a non-ASCII decimal digit (``\\d`` matches it, ``[0-9]`` does not).
DIGIT = "\x80"
#: Folded stand-in for any other character the patterns cannot tell apart (beyond Latin-1, and ``\\x80``).
OTHER = "\x81"
#: RE2's budget for the set's program and DFA cache; the DFA of the crawler list stays far below it.
RE2_MAX_MEM = 64 << 20

#: A few common user agents read once at build, so that no request pays for the DFA's first states.
_WARM_UP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
#: Random texts read once at build, as many of each kind as this: a text of characters seen in no user agent
#: walks DFA states no common one does, and without them a flood's first texts cost up to 650 us each
#: (about 140 us once these were read; the reading takes about 0.15 s, once per process).
_WARM_RANDOM = 200
_PRINTABLE = range(0x20, 0x7F)
_WIDE = re.compile("[^\x00-\xff]")
# Case-insensitive only in the class: under IGNORECASE, [\x00-\xff] would take in the wide letters too.
_WIDE_LETTER = re.compile("(?![\x00-\xff])(?i:[a-z])")
_WIDE_DIGIT = re.compile(r"(?![\x00-\xff])\d")
_LETTERS = [(letter, re.compile(letter, re.IGNORECASE)) for letter in "abcdefghijklmnopqrstuvwxyz"]


class Unsupported(ValueError):
    """A pattern uses a construct the rewrite does not reproduce exactly."""


def fold(text: str) -> str:
    """``text`` folded for the rewritten patterns: one character for each character of ``text``."""
    if text.isascii():
        return text.lower()
    if _WIDE.search(text) is None:  # Latin-1, as every WSGI header is
        return text.replace(DIGIT, OTHER).lower()  # below \xff, lower() never makes an ASCII letter
    global _wide_table
    if _wide_table is None:  # built on the first such text: 0.3 s, a 1 MB string
        _wide_table = _fold_slowly("".join(map(chr, range(0x110000))))
    return text.translate(_wide_table)


_wide_table: Optional[str] = None


def _fold_slowly(text: str) -> str:
    """What :func:`fold` does, by regular expressions (about 0.1 us a character): it builds fold's table."""
    text = text.replace(DIGIT, OTHER)
    letters = {}
    for char in set(_WIDE_LETTER.findall(text)):  # a handful of code points
        letters[ord(char)] = next(letter for letter, pattern in _LETTERS if pattern.fullmatch(char))
    text = text.translate(letters)
    return _WIDE.sub(OTHER, _WIDE_DIGIT.sub(DIGIT, text)).lower()


def _char(code: int) -> str:
    char = chr(code)
    return char if char.isalnum() and char.isascii() else f"\\x{code:02x}"


def _folded_class(items: Iterable[Tuple[object, object]]) -> str:
    negate, codes = False, set()
    for op, av in items:
        if op is _sre.NEGATE:
            negate = True
        elif op is _sre.LITERAL and av in _PRINTABLE:
            codes.add(ord(chr(av).lower()))
        elif op is _sre.RANGE and av[0] in _PRINTABLE and av[1] in _PRINTABLE:
            codes.update(ord(chr(code).lower()) for code in range(av[0], av[1] + 1))
        elif op is _sre.CATEGORY and av is _sre.CATEGORY_DIGIT:
            codes.update(range(ord("0"), ord("9") + 1))
            codes.add(ord(DIGIT))
        else:
            raise Unsupported(f"class item {op} {av}")
    return "[" + ("^" if negate else "") + "".join(_char(code) for code in sorted(codes)) + "]"


def rewrite(items: Sequence[Tuple[object, object]], exact: bool) -> str:
    """The parsed pattern ``items`` as a pattern for folded text, in the syntax Python and RE2 share.

    With ``exact`` false, zero-width assertions other than ``^`` are left out
    (a pattern matching wherever the original does, and maybe more): what
    RE2 runs for a pattern it cannot run exactly.
    """
    out = []
    for op, av in items:
        if op is _sre.LITERAL and av in _PRINTABLE:
            out.append(_char(ord(chr(av).lower())))
        elif op is _sre.NOT_LITERAL and av in _PRINTABLE:
            out.append(f"[^{_char(ord(chr(av).lower()))}]")
        elif op is _sre.IN:
            out.append(_folded_class(av))
        elif op is _sre.ANY:
            out.append("[^\\n]")
        elif op is _sre.BRANCH:
            out.append("(?:" + "|".join(rewrite(branch, exact) for branch in av[1]) + ")")
        elif op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                raise Unsupported("inline flags")
            out.append("(?:" + rewrite(sub, exact) + ")")
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            low, high, sub = av
            count = f"{{{low},}}" if high == _sre.MAXREPEAT else f"{{{low},{high}}}"
            out.append("(?:" + rewrite(sub, exact) + ")" + count + ("?" if op is _sre.MIN_REPEAT else ""))
        elif op is _sre.AT and av in (_sre.AT_BEGINNING, _sre.AT_BEGINNING_STRING):
            out.append("^")
        elif op is _sre.AT and av in (_sre.AT_END, _sre.AT_END_STRING):
            if exact:
                out.append("$" if av is _sre.AT_END else "\\Z")
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            direction, sub = av
            if exact:
                kind = ("=" if op is _sre.ASSERT else "!")
                out.append("(?" + ("<" if direction < 0 else "") + kind + rewrite(sub, exact) + ")")
        else:
            raise Unsupported(f"{op} {av}")
    return "".join(out)


def _parse(pattern: str):
    try:
        parsed = _sre.parse(pattern, re.IGNORECASE)
    except re.error as error:
        raise Unsupported(f"{pattern!r} alone: {error}") from None
    if parsed.state.flags & ~(re.IGNORECASE | re.UNICODE):
        raise Unsupported(f"flags of {pattern!r}")
    return parsed


def _needs_python(items: Sequence[Tuple[object, object]]) -> bool:
    """Whether the parsed pattern holds a zero-width part RE2 would not run as Python does."""
    for op, av in items:
        if op in (_sre.ASSERT, _sre.ASSERT_NOT) or (op is _sre.AT and av not in (_sre.AT_BEGINNING,
                                                                                   _sre.AT_BEGINNING_STRING)):
            return True
        if op is _sre.BRANCH and any(_needs_python(branch) for branch in av[1]):
            return True
        if op is _sre.SUBPATTERN and _needs_python(av[3]):
            return True
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and _needs_python(av[2]):
            return True
    return False


class CrawlerMatcher:
    """``is_crawler(user_agent)`` as crawlerdetect's, for the given crawler and exclusion patterns.

    :param crawlers: crawlerdetect's crawler patterns (each searched case-insensitively).
    :param exclusions: its exclusion patterns, deleted (case-insensitively) before the search.

    Raises :class:`Unsupported` when a pattern cannot be reproduced exactly.
    """

    def __init__(self, crawlers: Sequence[str], exclusions: Sequence[str]) -> None:
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1
        options.never_capture = True
        options.max_mem = RE2_MAX_MEM
        parsed_exclusions = [_parse(pattern) for pattern in exclusions]
        self._exclusions = re.compile("|".join(f"(?:{rewrite(parsed.data, exact=True)})"
                                               for parsed in parsed_exclusions))
        #: Whether any exclusion can match (a superset): most hostile texts hold none, and skip Python's re.
        self._excluded = self._compile_set(options, parsed_exclusions)
        self._set = re2.Set.SearchSet(options)
        #: Per set index: None when RE2's verdict is exact, else the pattern Python confirms it with.
        self._confirm: List[Optional[re.Pattern]] = []
        for pattern in crawlers:
            parsed = _parse(pattern)
            if parsed.getwidth()[0] == 0:
                # crawlerdetect reports an empty leftmost match as no crawler, whatever else matches.
                raise Unsupported(f"{pattern!r} can match the empty string")
            try:
                self._set.Add(rewrite(parsed.data, exact=False))
            except re2.error as error:
                raise Unsupported(f"RE2 refuses {pattern!r}: {error}") from None
            self._confirm.append(re.compile(rewrite(parsed.data, exact=True))
                                 if _needs_python(parsed.data) else None)
        try:
            self._set.Compile()
        except re2.error as error:
            raise Unsupported(f"RE2 cannot compile the crawler set: {error}") from None
        self._exact = not any(self._confirm)
        #: How many patterns Python confirms (the rest RE2 decides alone).
        self.confirmed = sum(pattern is not None for pattern in self._confirm)
        for user_agent in _WARM_UP:  # RE2 builds its DFA as it reads: the first texts pay for its start
            self.is_crawler(user_agent)
        pick = random.Random(20)
        for alphabet in ([chr(c) for c in _PRINTABLE], [chr(c) for c in range(1, 0x100)]):
            for _ in range(_WARM_RANDOM):
                self.is_crawler("".join(pick.choices(alphabet, k=512)))

    @staticmethod
    def _compile_set(options: re2.Options, parsed: Sequence) -> re2.Set:
        patterns = re2.Set.SearchSet(options)
        try:
            for pattern in parsed:
                patterns.Add(rewrite(pattern.data, exact=False))
            patterns.Compile()
        except re2.error as error:
            raise Unsupported(f"RE2 refuses the exclusions: {error}") from None
        return patterns

    def is_crawler(self, user_agent: str) -> bool:
        """crawlerdetect's ``is_crawler(user_agent)``."""
        text = user_agent.strip()
        if not text:
            return False
        text = fold(text)
        data = text.encode("latin-1")
        if self._excluded.Match(data):
            text = self._exclusions.sub("", text)
            if not text:
                return False
            data = text.encode("latin-1")
        matched = self._set.Match(data)
        if not matched:
            return False
        if self._exact:
            return True
        confirm = self._confirm
        return any(confirm[i] is None or confirm[i].search(text) is not None for i in matched)


def build() -> Callable[[str], bool]:
    """An ``is_crawler(user_agent) -> bool`` for the installed crawlerdetect's patterns.

    The patterns are read from ``crawlerdetect.providers`` when this is
    called, so an upgraded crawlerdetect is compiled as it is. If a pattern
    cannot be rewritten, crawlerdetect's own (slow) matcher is returned.
    """
    from crawlerdetect import CrawlerDetect, providers

    try:
        return CrawlerMatcher(providers.crawlers.data, providers.exclusions.data).is_crawler
    except Unsupported as error:
        log.warning("crawler patterns run unaccelerated (crawlerdetect's own matcher): %s", error)
        return CrawlerDetect().is_crawler
