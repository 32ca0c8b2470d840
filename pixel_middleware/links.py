"""Link rewriting for HTML emails: every ``<a href="http(s)://...">`` becomes a click URL.

A real HTML parser (the standard library's) finds the links, so comments,
scripts, attribute values that merely contain ``href=`` and odd quoting are
read as a browser reads them. Only the ``href`` of a rewritten tag changes;
every other byte of the email is copied through as it was.

Outlook for Windows renders what other clients skip as a comment, inside
conditional comments (``<!--[if mso]>...<![endif]-->``), and emails put
their buttons there as VML (``<v:roundrect href="...">``, the "bulletproof
button"): the links inside those comments, and the ``href`` of VML shapes,
are rewritten too, or clicks made in Outlook would go uncounted.
"""
from __future__ import annotations

import re
from html import unescape
from html.entities import html5
from html.parser import HTMLParser
from typing import Callable, List, Optional, Tuple

from markupsafe import escape

from .pipeline.clicks import target_host

#: Put this attribute on a link to leave it untracked (unsubscribe links, for instance).
SKIP_ATTRIBUTE = "data-pixel-skip"

#: A start tag's "<" and name as written (html.parser's own pattern for the name, which it lower-cases).
_TAG_NAME = re.compile(r"<[^\t\n\r\f />\x00]*")

#: A character reference, as :func:`html.unescape` finds them.
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _unescape_attribute(value: str) -> str:
    """An attribute's raw text as a browser reads it, which :func:`html.unescape` alone does not.

    In an attribute, a named reference without ``;`` that is followed by ``=``
    or an ASCII letter or digit stays text (HTML's "historical reasons" rule):
    ``href="?lang=en&region=eu"`` leads to ``&region=eu``, where
    :func:`html.unescape` reads ``\u00aeion=eu``, and ``&gtin=1`` to ``&gtin=1``,
    not ``>in=1``. Bare ``&`` in links is common in email HTML.
    """

    def replace(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name[0] != "#" and name not in html5:
            # The entity name html.unescape would take from the front of ``name``, as it takes it.
            end = next((end for end in range(len(name) - 1, 1, -1) if name[:end] in html5), 0)
            if end and (name[end] == "=" or (name[end].isascii() and name[end].isalnum())):
                return match.group(0)
        return unescape(match.group(0))

    return _CHARREF.sub(replace, value) if "&" in value else value


class _LinkFinder(HTMLParser):
    """Finds the links; fed the source with each ``&`` as ``amp``, a character not in it.

    :class:`HTMLParser` unescapes attribute values with :func:`html.unescape`,
    which reads some of them otherwise than browsers do; with no ``&`` in
    what it parses there is nothing for it to unescape, and
    :func:`_unescape_attribute` reads the raw values instead. One character
    for one keeps every position the same.
    """

    def __init__(self, source: str, click_url: Callable[[str], str], amp: str, keep: Callable[[str], bool]) -> None:
        super().__init__(convert_charrefs=False)
        self._click_url = click_url
        self._amp = amp
        self._keep = keep
        # getpos() counts lines by "\n" alone, as here (not str.splitlines' many line breaks).
        self._line_starts = [0]
        for line in source.split("\n"):
            self._line_starts.append(self._line_starts[-1] + len(line) + 1)
        #: (start, end, replacement) of each rewritten tag, in order.
        self.edits: List[Tuple[int, int, str]] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        self._rewrite(tag, attrs, closed=False)

    def handle_startendtag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        self._rewrite(tag, attrs, closed=True)

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        # html.parser raises AssertionError at a "<![" section it does not know ("<![foo]>", "<![ x"),
        # which browsers read as a comment up to the next ">": read so here, rather than raise.
        position = self.getpos()
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            self.lineno, self.offset = position  # moved before it raised: getpos() would be off
            end = self.rawdata.find(">", i)
            return -1 if end < 0 else end + 1

    def handle_comment(self, data: str) -> None:
        if not (data[:3].lower() == "[if" and data.rstrip().lower().endswith("<![endif]")):
            return  # a plain comment, or the "<!--[if !mso]><!-->" form, whose content is no comment
        line, column = self.getpos()
        start = self._line_starts[line - 1] + column + len("<!--")
        inside = _LinkFinder(data.replace(self._amp, "&"), self._click_url, self._amp, self._keep)
        inside.feed(data)
        inside.close()
        self.edits.extend((start + begin, start + end, text) for begin, end, text in inside.edits)

    def _rewrite(self, tag: str, attrs: List[Tuple[str, Optional[str]]], closed: bool) -> None:
        if not (tag == "a" or tag.startswith("v:")) or any(name == SKIP_ATTRIBUTE for name, _ in attrs):
            return
        amp = self._amp
        attrs = [(name.replace(amp, "&"), None if value is None else _unescape_attribute(value.replace(amp, "&"))) for name, value in attrs]
        href = next((value for name, value in attrs if name == "href"), None)  # the first, as browsers take it
        if href is not None:
            href = href.strip()
        if href is None or target_host(href) is None or self._keep(href):
            return  # mailto:, tel:, #fragment, relative, anything the click route would refuse, what keep keeps
        raw = self.get_starttag_text() or ""
        line, column = self.getpos()
        start = self._line_starts[line - 1] + column
        parts = [_TAG_NAME.match(raw).group().replace(amp, "&")]  # "<a", or "<v:roundrect" as written
        done = False
        for name, value in attrs:
            if name == "href" and not done:
                value, done = self._click_url(href), True
            parts.append(f" {name}" if value is None else f' {name}="{escape(value)}"')
        parts.append(" />" if closed else ">")
        self.edits.append((start, start + len(raw), "".join(parts)))


def rewrite_links(html: str, click_url: Callable[[str], str], keep: Callable[[str], bool] = lambda href: False) -> str:
    """``html`` with the ``href`` of every trackable link replaced by ``click_url(href)``.

    Left as they are: ``mailto:``, ``tel:``, fragment-only and relative
    links, links with a ``data-pixel-skip`` attribute, targets the click
    route would refuse to follow, and those ``keep`` says to keep (links
    that are click URLs already).
    """
    amp = next(c for c in map(chr, range(0xE000, 0x110000)) if c not in html)  # private use first
    finder = _LinkFinder(html, click_url, amp, keep)
    finder.feed(html.replace("&", amp))
    finder.close()
    out, position = [], 0
    for start, end, replacement in finder.edits:
        out += [html[position:start], replacement]
        position = end
    out.append(html[position:])
    return "".join(out)
