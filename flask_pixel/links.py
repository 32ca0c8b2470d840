"""Link rewriting for HTML emails: every ``<a href="http(s)://...">`` becomes a click URL.

A real HTML parser (the standard library's) finds the links, so comments,
scripts, attribute values that merely contain ``href=`` and odd quoting are
read as a browser reads them. Only the ``href`` of a rewritten ``<a>`` tag
changes; every other byte of the email is copied through as it was.
"""
from __future__ import annotations

from html.parser import HTMLParser
from typing import Callable, List, Optional, Tuple

from markupsafe import escape

from pixel_middleware.clicks import target_host

#: Put this attribute on a link to leave it untracked (unsubscribe links, for instance).
SKIP_ATTRIBUTE = "data-pixel-skip"


class _LinkFinder(HTMLParser):
    def __init__(self, source: str, click_url: Callable[[str], str]) -> None:
        super().__init__(convert_charrefs=False)
        self._click_url = click_url
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

    def _rewrite(self, tag: str, attrs: List[Tuple[str, Optional[str]]], closed: bool) -> None:
        if tag != "a" or any(name == SKIP_ATTRIBUTE for name, _ in attrs):
            return
        href = next((value for name, value in attrs if name == "href"), None)
        if href is None or target_host(href.strip()) is None:
            return  # mailto:, tel:, #fragment, relative, and anything the click route would refuse
        raw = self.get_starttag_text() or ""
        line, column = self.getpos()
        start = self._line_starts[line - 1] + column
        parts = ["<a"]
        done = False
        for name, value in attrs:
            if name == "href" and not done:
                value, done = self._click_url(href.strip()), True
            parts.append(f" {name}" if value is None else f' {name}="{escape(value)}"')
        parts.append(" />" if closed else ">")
        self.edits.append((start, start + len(raw), "".join(parts)))


def rewrite_links(html: str, click_url: Callable[[str], str]) -> str:
    """``html`` with the ``href`` of every trackable link replaced by ``click_url(href)``.

    Left as they are: ``mailto:``, ``tel:``, fragment-only and relative
    links, links with a ``data-pixel-skip`` attribute, and targets the click
    route would refuse to follow.
    """
    finder = _LinkFinder(html, click_url)
    finder.feed(html)
    finder.close()
    out, position = [], 0
    for start, end, replacement in finder.edits:
        out += [html[position:start], replacement]
        position = end
    out.append(html[position:])
    return "".join(out)
