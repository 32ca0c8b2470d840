"""The click route: record a click, then send the person on to the link's target.

Clicks are the one route that answers something other than the GIF, and a
redirect endpoint is an open redirect unless it is fenced: a phishing mail
could send readers through a trusted domain to any site. So a target is
followed only when it is an absolute ``http``/``https`` URL, written
plainly (ASCII, no whitespace, control characters, backslashes or
``user@`` part, which browsers and parsers read differently), and either
the URL's signature is valid (the sender chose the target) or its host is
allowed. Anything else gets a 400 page that names no target and links
nowhere, counted as ``unsafe_redirect``.

A safe target is always followed, even when the event is rejected (a bad
write key, a bad signature): the person clicking must reach the page.
"""
from __future__ import annotations

from typing import Any, Callable, Collection, Iterable, Mapping, Optional
from urllib.parse import urlsplit

from ..core.events import DecodeError

from ..core.query import parse_query
from ..core.gif import respond as respond_gif

_REFUSED = (
    b"<!doctype html><title>Link not followed</title>"
    b"<h1>This link cannot be followed</h1><p>The link is damaged or not allowed.</p>\n"
)
_REFUSED_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Length", str(len(_REFUSED))),
    ("Cache-Control", "no-store"),
]


def target_host(target: Optional[str]) -> Optional[str]:
    """The lower-case host of a target a browser reads as we do, or ``None`` if it is not one."""
    if not target or not target.isascii() or "\\" in target:
        return None
    if any(c <= " " or c == "\x7f" for c in target):
        return None
    try:
        parts = urlsplit(target)
        parts.port  # raises on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or "@" in parts.netloc or not parts.hostname:
        return None
    if not target[len(parts.scheme) :].startswith("://"):
        return None
    return parts.hostname


class HostList:
    """``click_allowed_hosts``: exact host names, or ``*.example.com`` for its subdomains."""

    def __init__(self, hosts: Iterable[str] = ()) -> None:
        hosts = [h.strip().lower().rstrip(".") for h in hosts if h.strip()]
        self._exact = frozenset(h for h in hosts if not h.startswith("*."))
        self._suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        host = host.rstrip(".")
        return host in self._exact or (bool(self._suffixes) and host.endswith(self._suffixes))


#: The rejection of a click whose target is not followed: the route's, and explain()'s for it.
UNSAFE = ("unsafe_redirect", "the click target is neither signed nor allowed")


def safe_target(collector: Any, environ: Mapping[str, Any]) -> Optional[str]:
    """The click's target when it may be followed (signed, or an allowed host), else ``None``.

    One check for the route and for :func:`~pixel_middleware.explain.explain`,
    so that decoding a click URL refuses what the route would refuse.
    """
    try:
        params = parse_query(environ.get("QUERY_STRING", ""))
    except DecodeError:
        params = {}
    target = params.get("url")
    host = target_host(target)
    verifier = collector._verifier
    safe = host is not None and (
        host in collector._click_hosts
        or (verifier is not None and "sig" in params and verifier.valid(environ, params["sig"]))
    )
    return target if safe else None


def answer(collector: Any, environ: Mapping[str, Any], match: Any, start_response: Callable) -> Iterable[bytes]:
    """GET records the click and redirects; HEAD only redirects; an unsafe target gets a 400."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        return respond_gif(method, start_response)  # the 405 every pixel route gives
    target = safe_target(collector, environ)
    if target is None:
        if method == "GET":
            collector._reject(*UNSAFE, None, match)
        start_response("400 Bad Request", _REFUSED_HEADERS[:])
        return [_REFUSED] if method == "GET" else []
    if method == "GET":
        collector.collect(environ, match)
    start_response("302 Found", [("Location", target), ("Cache-Control", "no-store"), ("Content-Length", "0")])
    return []


def allowed_hosts(hosts: Optional[Collection[str]]) -> HostList:
    """A :class:`HostList` from a constructor argument (a string is one host)."""
    if isinstance(hosts, str):
        hosts = (hosts,)
    return HostList(hosts or ())
