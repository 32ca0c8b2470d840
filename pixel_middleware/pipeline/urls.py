"""Building pixel URLs: the other direction of each dialect's decode.

A URL built here decodes, through the same dialect object, to an event with
the fields it was built from, within what the dialect can carry: flat
dialects carry strings and numbers (a string that looks like a number comes
back a number), ``segment`` carries any JSON, ``mparticle`` strings without
commas. What a dialect cannot carry raises :class:`ValueError`.
"""
from __future__ import annotations

import secrets
import warnings
from datetime import datetime, timezone
from typing import Any, Collection, Mapping, Optional, Union
from urllib.parse import quote, urlencode

from .dialects import DialectSpec, get_dialect
from .dialects.base import Pairs
from ..core.events import CLICK_EVENT
from .clicks import allowed_hosts as host_list, target_host
from ..core.events import Event, parse_timestamp
from ..core.query import MAX_QUERY_BYTES
from .steps.signing import Key, signed_query
from ..options import option

#: Longest URL that email clients and browsers are known to keep intact.
URL_WARN_LENGTH = 2000


class PixelUrlWarning(UserWarning):
    """A built pixel URL is longer than some clients keep intact."""


def _timestamp(value: Union[datetime, int, str]) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc).isoformat()
    return parse_timestamp(value)


def build_pixel_url(
    base_url: str,
    event: Optional[str] = None,
    *,
    type: str = "track",
    user_id: Optional[str] = None,
    anonymous_id: Optional[str] = None,
    group_id: Optional[str] = None,
    previous_id: Optional[str] = None,
    properties: Optional[Mapping[str, Any]] = None,
    traits: Optional[Mapping[str, Any]] = None,
    context: Optional[Mapping[str, Any]] = None,
    message_id: Optional[str] = None,
    timestamp: Union[datetime, int, str, None] = None,
    write_key: Optional[str] = None,
    dialect: DialectSpec = "compact",
    cache_buster: Union[bool, str] = True,
    signing_key: Optional[Key] = None,
) -> str:
    """A pixel URL that records one event when fetched.

    :param base_url: where the pixel routes are mounted, e.g.
        ``https://example.com`` (with the middleware's ``prefix``, if any).
    :param event: the event name on track; the page or screen name otherwise.
    :param write_key: the key the collector accepts; it ends up in the URL,
        so treat the URL as a credential.
    :param dialect: the URL format; ``compact`` gives the shortest URLs.
    :param cache_buster: add a random ``cb`` parameter (or this string), so
        that no client or proxy answers a second open from its cache.
    :param signing_key: sign the URL (a ``sig`` parameter) with this key, so
        that a collector holding the key detects any change to it.

    Warns with :class:`PixelUrlWarning` past 2,000 characters; raises
    :class:`ValueError` past the collector's 32 KB query limit.
    """
    signing_key = _key(signing_key)
    fields: Event = {"type": type}
    fields["event" if type == "track" else "name"] = event
    for key, value in (
        ("userId", user_id),
        ("anonymousId", anonymous_id),
        ("groupId", group_id),
        ("previousId", previous_id),
        ("messageId", message_id),
        ("properties", properties),
        ("traits", traits),
        ("context", context),
    ):
        if value is not None:
            fields[key] = value
    if timestamp is not None:
        fields["timestamp"] = _timestamp(timestamp)
    path, pairs = get_dialect(dialect).encode(fields, write_key)
    return _finish(base_url, path, pairs, cache_buster, signing_key)


def build_click_url(
    base_url: str,
    target_url: str,
    event: str = CLICK_EVENT,
    *,
    user_id: Optional[str] = None,
    anonymous_id: Optional[str] = None,
    properties: Optional[Mapping[str, Any]] = None,
    write_key: Optional[str] = None,
    signing_key: Optional[Key] = None,
    message_id: Optional[str] = None,
    allowed_hosts: Optional[Collection[str]] = None,
) -> str:
    """A click URL: fetching it records ``event`` (``properties.link_url`` = the target) and redirects there.

    :param target_url: where the click leads; an absolute ``http``/``https``
        URL. The collector follows it only when the URL is signed (pass
        ``signing_key``) or the target's host is in its ``click_allowed_hosts``.
    :param allowed_hosts: the collector's ``click_allowed_hosts`` (a string
        is one host), for an unsigned URL: one whose target host is not
        among them raises :class:`ValueError` now, since every click on it
        would be answered "This link cannot be followed".

    Click URLs carry no cache buster: each click is a new request anyway.
    """
    signing_key = _key(signing_key)
    host = target_host(target_url)
    if host is None:
        raise ValueError("the click target must be an absolute http(s) URL the click route will follow")
    if not signing_key and host not in host_list(allowed_hosts):  # the click route's own test
        raise ValueError(
            f"an unsigned click URL to {host!r} would never be followed (the click route answers 400): sign it "
            "(signing_key; PIXEL_SIGNING_KEY or --signing-key; in Flask, SECRET_KEY) or allow its host "
            "(click_allowed_hosts; PIXEL_CLICK_ALLOWED_HOSTS or --click-allowed-host)"
        )
    fields: Event = {"type": "track", "event": event}
    for key, value in (("userId", user_id), ("anonymousId", anonymous_id), ("messageId", message_id)):
        if value is not None:
            fields[key] = value
    if properties:
        fields["properties"] = properties
    _, pairs = get_dialect("compact").encode(fields, write_key)
    if event == CLICK_EVENT:
        pairs = [pair for pair in pairs if pair[0] != "e"]  # the route's default: a shorter URL
    pairs.append(("url", target_url))
    return _finish(base_url, "/v1/click", pairs, False, signing_key)


def _key(signing_key: Optional[Key]) -> Optional[Key]:
    """A blank key is an error, not "unsigned": the routes refuse it too (see :mod:`pixel_middleware.options`)."""
    return option("signing_key").check(signing_key)


def _finish(base_url: str, path: str, pairs: Pairs, cache_buster: Union[bool, str], signing_key: Optional[Key]) -> str:
    query = signed_query(signing_key, path, pairs) if signing_key else urlencode(pairs)
    if cache_buster:
        cb = urlencode([("cb", cache_buster if isinstance(cache_buster, str) else secrets.token_hex(4))])
        query = f"{query}&{cb}" if query else cb
    if len(query) > MAX_QUERY_BYTES:
        raise ValueError(f"the pixel URL's query is over the collector's {MAX_QUERY_BYTES}-byte limit")
    # Signed as the collector reads it (decoded), written encoded: an mParticle key in the path
    # may hold a space, "%", "?" or "#".
    url = f"{base_url.rstrip('/')}{quote(path)}?{query}"
    if len(url) > URL_WARN_LENGTH:
        warnings.warn(
            f"pixel URL is {len(url)} characters; some email clients cut URLs past {URL_WARN_LENGTH}",
            PixelUrlWarning,
            stacklevel=3,
        )
    return url


__all__ = ["PixelUrlWarning", "build_click_url", "build_pixel_url"]
