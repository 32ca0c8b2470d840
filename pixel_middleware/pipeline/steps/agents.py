"""Who fetched a pixel: a person's mail client or browser, a mail proxy, or a machine.

Since Apple's Mail Privacy Protection (2021) a large share of "opens" are
fetches no person caused: MPP downloads every image of every message through
Apple's proxies, crawlers and link-preview bots fetch anything, browsers
prefetch. Gmail's and Yahoo's image proxies are different: they fetch when
the message is opened, but hide the reader's address and user agent.

:func:`classify` names the fetcher (one of :data:`AGENTS`) from the request's
own headers and address, never from what the URL claims:

==================  ==========================================================
``prefetch``        a ``Sec-Purpose``/``Purpose``/``X-Moz`` prefetch header
                    (or Safari's ``X-Purpose: preview``)
``gmail_proxy``     user agent names ``GoogleImageProxy``
``yahoo_proxy``     user agent names ``YahooMailProxy``
``apple_mpp``       the bare user agent ``Mozilla/5.0`` from one of Apple's
                    proxy networks (``data/apple_proxy_ranges.txt``)
``link_scanner``    on the click route, a user agent the crawler list knows
                    (mail-security scanners follow every link they see)
``bot``             a user agent the ``crawlerdetect`` list knows
``browser``         anything else
==================  ==========================================================

This is a heuristic: scanners that pretend to be a browser pass as
``browser``, and Apple's ranges change (refresh them with
``python -m pixel_middleware.pipeline.steps.agents refresh``).

Why it is cheap at line rate, with user agents never seen before: the
``bot`` verdict is crawlerdetect's exactly, but its patterns are compiled
(:mod:`.crawlers`) into one Hyperscan database over a folded copy of the text, not run
as crawlerdetect runs them (one backtracking alternation of 1,460 branches,
a median of 350 us, tens of milliseconds for a crafted text). Only the
first :data:`_CLASSIFIED_CHARS` characters are read, where every crawler
token seen in the wild stands. The verdict is also cached (:data:`CACHE_SIZE`
entries), which saves a repeated user agent even that work, but nothing
relies on the cache for speed: a flood of random user agents costs about what
a flood of one does.
"""
from __future__ import annotations

import argparse
import bisect
import ipaddress
import sys
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

from . import crawlers
from ...core.events import DecodeError, Event

#: Every value ``context.pixel.agent`` takes.
AGENTS = ("browser", "gmail_proxy", "yahoo_proxy", "apple_mpp", "bot", "prefetch", "link_scanner")
#: The agents whose fetch is no evidence that a person acted (``context.pixel.machine``).
MACHINE_AGENTS = frozenset({"apple_mpp", "bot", "prefetch", "link_scanner"})
#: Distinct user agents whose verdict is kept.
CACHE_SIZE = 4096
#: Apple's published list of iCloud Private Relay egress prefixes (CSV, prefix first).
APPLE_EGRESS_URL = "https://mask-api.icloud.com/egress-ip-ranges.csv"
RANGES_FILE = Path(__file__).with_name("data") / "apple_proxy_ranges.txt"

_MPP_USER_AGENT = "Mozilla/5.0"
#: Mail clients a person runs that the crawler list mistakes for bots (its
#: "Microsoft Office" pattern is meant for Office's link previews, but
#: Outlook for Windows fetches a message's images with that user agent).
_MAIL_CLIENTS = ("Microsoft Outlook",)
#: crawlerdetect's ``is_crawler``, compiled from the installed package's patterns (:mod:`.crawlers`).
_is_crawler = crawlers.build()
#: How much of a user agent is classified.
_CLASSIFIED_CHARS = 512


def _load_ranges(path: Path) -> Tuple[Tuple[List[int], List[int]], Tuple[List[int], List[int]]]:
    """Sorted, merged (starts, ends) per IP version, for a bisect per lookup."""
    spans: dict = {4: [], 6: []}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            net = ipaddress.ip_network(line, strict=False)
            spans[net.version].append((int(net.network_address), int(net.broadcast_address)))
    merged = []
    for version in (4, 6):
        starts: List[int] = []
        ends: List[int] = []
        for start, end in sorted(spans[version]):
            if ends and start <= ends[-1] + 1:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        merged.append((starts, ends))
    return merged[0], merged[1]


_RANGES = _load_ranges(RANGES_FILE)


def is_apple_proxy(address: str) -> bool:
    """Whether ``address`` lies in one of Apple's proxy networks (IPv4-mapped IPv6 as IPv4)."""
    try:
        ip: Any = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    starts, ends = _RANGES[0] if ip.version == 4 else _RANGES[1]
    value = int(ip)
    i = bisect.bisect_right(starts, value) - 1
    return i >= 0 and value <= ends[i]


@lru_cache(maxsize=CACHE_SIZE)
def _by_user_agent(user_agent: str, click: bool) -> str:
    if "GoogleImageProxy" in user_agent:
        return "gmail_proxy"
    if "YahooMailProxy" in user_agent:
        return "yahoo_proxy"
    if user_agent == _MPP_USER_AGENT:
        return _MPP_USER_AGENT  # decided by the address, which is not cached
    if any(client in user_agent for client in _MAIL_CLIENTS):
        return "browser"
    if _is_crawler(user_agent):
        return "link_scanner" if click else "bot"
    return "browser"


_PREFETCH_HEADERS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_MOZ", "HTTP_X_PURPOSE")


def _prefetch(environ: Mapping[str, Any]) -> bool:
    for header in _PREFETCH_HEADERS:
        if header in environ:
            value = environ[header].lower()
            if "prefetch" in value or "preview" in value:
                return True
    return False


def classify(environ: Mapping[str, Any], click: bool = False) -> str:
    """The agent (one of :data:`AGENTS`) that sent the WSGI request ``environ``.

    ``click`` says the request is on the click route, where a known machine
    is a ``link_scanner`` rather than a ``bot``.
    """
    if _prefetch(environ):
        return "prefetch"
    # Only the head is read: the matcher's time grows with the text, and every
    # crawler token seen in the wild stands in the first few hundred characters.
    agent = _by_user_agent((environ.get("HTTP_USER_AGENT") or "")[:_CLASSIFIED_CHARS], click)
    if agent is _MPP_USER_AGENT:
        return "apple_mpp" if is_apple_proxy(environ.get("REMOTE_ADDR") or "") else "browser"
    return agent


class AgentStep:
    """The pipeline step noting ``context.pixel.agent`` and ``.machine``.

    :param machine_events: ``"keep"`` records machine fetches flagged;
        ``"drop"`` rejects them with reason ``machine``.
    """

    def __init__(self, machine_events: str = "keep") -> None:
        if machine_events not in ("keep", "drop"):
            raise ValueError(f"machine_events must be 'keep' or 'drop', not {machine_events!r}")
        self._drop = machine_events == "drop"

    def __call__(self, event: Event, hit: Any) -> None:
        agent = classify(hit.environ, hit.match.route.click)
        machine = agent in MACHINE_AGENTS
        if machine and self._drop:
            raise DecodeError("machine", f"fetched by a machine ({agent})")
        context = event["context"]
        pixel = context.get("pixel")
        if pixel is None:
            context["pixel"] = {"agent": agent, "machine": machine}
        else:
            pixel["agent"] = agent
            pixel["machine"] = machine


def refresh(url: str = APPLE_EGRESS_URL, path: Optional[Path] = None) -> int:
    """Rewrite the ranges file with 17.0.0.0/8 and the prefixes of Apple's egress CSV at ``url``.

    Returns how many prefixes were written. Every line is checked to be a
    network before the file is replaced, so a bad download changes nothing.
    """
    path = path or RANGES_FILE
    with urllib.request.urlopen(url, timeout=60) as answer:
        text = answer.read().decode("utf-8")
    prefixes = {"17.0.0.0/8"}
    for line in text.splitlines():
        prefix = line.split(",", 1)[0].strip()
        if prefix:
            prefixes.add(str(ipaddress.ip_network(prefix, strict=False)))
    header = [line for line in path.read_text().splitlines() if line.startswith("#") and "Refreshed from" not in line]
    header.append(f"# Refreshed from {url}")
    path.write_text("\n".join(header + sorted(prefixes)) + "\n")
    return len(prefixes)


def _main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixel_middleware.pipeline.steps.agents")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("refresh", help="download Apple's proxy egress ranges into the package's data file")
    command.add_argument("--url", default=APPLE_EGRESS_URL)
    command.add_argument("--file", type=Path, default=RANGES_FILE)
    args = parser.parse_args(argv)
    count = refresh(args.url, args.file)
    print(f"{count} prefixes written to {args.file}; restart the collector to use them", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
