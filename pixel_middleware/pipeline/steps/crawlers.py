"""crawlerdetect's verdict at line rate: its patterns compiled for Hyperscan, with the same answers.

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
   character case folding (a fifth of the cost). A Hyperscan database of
   the exclusions first says whether any of them occurs at all: in most
   hostile texts none does, and Python's ``re`` is not run.
3. The crawler patterns run as one Hyperscan database over the folded
   text's bytes: compiled ahead of time (in about 0.1 s) into automata
   whose time grows with the text, never with what it holds, and with no
   states left to build at the first texts (RE2's lazily built DFA made a
   worker's first hostile texts cost up to 880 us). The few patterns that
   cannot run exactly there (a lookahead, ``$``, which in Python also
   matches before a final newline) run without those zero-width parts, a
   superset, and only a text one of them flags is searched with that one
   pattern in Python's ``re``.

Anything the rewrite does not know (a pattern using ``\\w``, back
references, inline flags; a new construct in a future crawlerdetect) makes
:func:`build` return crawlerdetect's own matcher instead, logged once:
slower, never wrong.
"""
from __future__ import annotations

import array
import logging
import re
import sys
import threading
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import hyperscan

try:  # Python 3.11+ moved the parser; importing sre_parse there warns.
    from re import _parser as _sre
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_parse as _sre  # type: ignore[no-redef]

log = logging.getLogger("pixel_middleware")

#: Folded stand-in for a non-ASCII decimal digit (``\\d`` matches it, ``[0-9]`` does not).
DIGIT = "\x80"
#: Folded stand-in for any other character the patterns cannot tell apart (beyond Latin-1, and ``\\x80``).
OTHER = "\x81"
_PRINTABLE = range(0x20, 0x7F)
_WIDE = re.compile("[^\x00-\xff]")
_LETTERS = [(letter, re.compile(letter, re.IGNORECASE)) for letter in "abcdefghijklmnopqrstuvwxyz"]


class Unsupported(ValueError):
    """A pattern uses a construct the rewrite does not reproduce exactly."""


def fold(text: str) -> str:
    """``text`` folded for the rewritten patterns: one character for each character of ``text``."""
    if text.isascii():
        return text.lower()
    if _WIDE.search(text) is None:  # Latin-1, as every WSGI header is
        return text.replace(DIGIT, OTHER).lower()  # below \xff, lower() never makes an ASCII letter
    return text.translate(_WIDE_TABLE)


def _fold_table() -> str:
    """What :func:`fold` makes of each code point, as a ``str.translate`` table (0.1 s, 1 MB).

    Built at import, not at the first text beyond Latin-1 (a ``userAgent``
    in a URL may be any text): built there, it stalled that request for
    half a second. Every code point beyond Latin-1 is ``OTHER``, but for the
    decimal digits ``\\d`` matches (``DIGIT``) and the handful of letters
    that ``IGNORECASE`` deems equal to an ASCII one (that letter).
    """
    codec = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
    every = array.array("I", range(0x110000)).tobytes().decode(codec, "surrogatepass")
    table = bytearray(every[:0x100].replace(DIGIT, OTHER).lower().encode("latin-1"))
    table.extend(OTHER.encode("latin-1") * (len(every) - 0x100))
    for digit in re.compile(r"\d").finditer(every, 0x100):
        table[digit.start()] = ord(DIGIT)
    for found in re.compile("[a-z]", re.IGNORECASE).finditer(every, 0x100):
        table[found.start()] = ord(next(letter for letter, pattern in _LETTERS if pattern.fullmatch(found.group())))
    return table.decode("latin-1")


_WIDE_TABLE = _fold_table()


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
    """The parsed pattern ``items`` as a pattern for folded text, in the syntax Python and Hyperscan share.

    With ``exact`` false, zero-width assertions other than ``^`` are left out
    (a pattern matching wherever the original does, and maybe more): what
    Hyperscan runs for a pattern it cannot run exactly.
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
    """Whether the parsed pattern holds a zero-width part Hyperscan would not run as Python does."""
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
    Safe to call from several threads: Hyperscan's scratch space is one per
    thread, made at a thread's first call.
    """

    def __init__(self, crawlers: Sequence[str], exclusions: Sequence[str]) -> None:
        parsed_exclusions = [_parse(pattern) for pattern in exclusions]
        self._exclusions = re.compile("|".join(f"(?:{rewrite(parsed.data, exact=True)})"
                                               for parsed in parsed_exclusions))
        #: Whether any exclusion can match (a superset): most hostile texts hold none, and skip Python's re.
        self._excluded = _database([rewrite(parsed.data, exact=False) for parsed in parsed_exclusions],
                                   "the exclusions")
        written = []
        #: Per pattern id: None when Hyperscan's verdict is exact, else the pattern Python confirms it with.
        self._confirm: List[Optional[re.Pattern]] = []
        for pattern in crawlers:
            parsed = _parse(pattern)
            if parsed.getwidth()[0] == 0:
                # crawlerdetect reports an empty leftmost match as no crawler, whatever else matches.
                raise Unsupported(f"{pattern!r} can match the empty string")
            written.append(rewrite(parsed.data, exact=False))
            self._confirm.append(re.compile(rewrite(parsed.data, exact=True))
                                 if _needs_python(parsed.data) else None)
        self._crawlers = _database(written, "the crawler patterns")
        #: How many patterns Python confirms (the rest Hyperscan decides alone).
        self.confirmed = sum(pattern is not None for pattern in self._confirm)
        self._local = threading.local()

    def _scratches(self) -> Tuple[Any, Any]:
        local = self._local
        try:
            return local.scratches
        except AttributeError:
            local.scratches = (hyperscan.Scratch(self._excluded), hyperscan.Scratch(self._crawlers))
            return local.scratches

    def is_crawler(self, user_agent: str) -> bool:
        """crawlerdetect's ``is_crawler(user_agent)``."""
        text = user_agent.strip()
        if not text:
            return False
        text = fold(text)
        data = text.encode("latin-1")
        excluded_scratch, crawlers_scratch = self._scratches()
        found: List[int] = []
        self._excluded.scan(data, match_event_handler=_note, context=found, scratch=excluded_scratch)
        if found:
            text = self._exclusions.sub("", text)
            if not text:
                return False
            data = text.encode("latin-1")
            found.clear()
        self._crawlers.scan(data, match_event_handler=_note, context=found, scratch=crawlers_scratch)
        if not found:
            return False
        confirm = self._confirm
        return any(confirm[i] is None or confirm[i].search(text) is not None for i in found)


def _note(pattern_id: int, start: int, end: int, flags: int, found: List[int]) -> None:
    """Hyperscan's match callback: the id of each pattern that matched, once each (SINGLEMATCH)."""
    found.append(pattern_id)


def _database(patterns: Sequence[str], what: str) -> Any:
    """A Hyperscan block-mode database of ``patterns`` (for folded text's Latin-1 bytes); ids are their indexes."""
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[pattern.encode("ascii") for pattern in patterns],
                         ids=list(range(len(patterns))), elements=len(patterns),
                         flags=[hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY] * len(patterns))
    except hyperscan.error as error:
        raise Unsupported(f"Hyperscan cannot compile {what}: {error}") from None
    return database


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
