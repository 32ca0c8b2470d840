"""Deduplication: one event per message (or per identical event) within a time window.

The same pixel is fetched many times: each re-open, each device, each proxy
retry. With ``dedup=3600`` the collector keeps one event per key per hour in
this process's memory (an LRU of :data:`MEMORY_SIZE` keys); with
``dedup="redis://host:6379/0"`` it does the same across gunicorn workers and
hosts with one ``SET key 1 NX EX window`` per event (``?window=SECONDS``
in the URL, default 3600).

The key is the event's ``messageId`` when the URL carries one (one per
message sent), else a digest of write key, dialect, type, event name, user
or anonymous id and properties. Keys are SHA-256 digests, so neither write
keys nor ids are stored in Redis. A duplicate is rejected with reason
``duplicate``.

Signed and unsigned events are kept apart: with signing on, the key also
says whether the event's URL was signed (``context.pixel.signed``), so an
unsigned request that copies a signed URL's ``messageId`` (anyone can send
one) never makes the signed event a duplicate, and a signed event never
hides an unsigned one either; each counts once among its own kind.

What the in-memory window guarantees: one event per key per window among
the last :data:`MEMORY_SIZE` distinct keys this process saw. A client that
sends more distinct ids than that (each costs it one request) pushes the
oldest keys out, and their repeats pass again; the memory stays bounded
(measured in ``benchmarks/bench_dedup.py``). Where duplicates must stay out
whatever clients send, or across workers and hosts, use Redis.

Redis is never allowed to make a request slow or lose an event: every call
has a 50 ms timeout, and when Redis fails the event passes undeduplicated,
the outage is logged and counted once (``dedup_unavailable``), and Redis is
not asked again for :data:`RETRY_AFTER` seconds.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...core.events import DecodeError, Event

_log = logging.getLogger("pixel_middleware")

#: Keys the in-memory deduplicator remembers (about 230 bytes each: benchmarks/bench_dedup.py).
MEMORY_SIZE = 100_000
#: Seconds each Redis call may take.
REDIS_TIMEOUT = 0.05
#: Seconds Redis is left alone after a failure.
RETRY_AFTER = 5.0


def dedup_key(event: Event, hit: Any) -> str:
    """The digest naming ``event``: its URL-given ``messageId``, else what it says."""
    digest = hashlib.sha256(hit.write_key.encode("utf-8", "surrogatepass"))
    if event["context"].get("pixel", {}).get("signed"):
        digest.update(b"\0signed")  # an unsigned copy of a signed URL's id is another key
    if hit.message_id_given:
        digest.update(b"\0id\0" + event["messageId"].encode("utf-8", "surrogatepass"))
    else:
        content = (hit.dialect.name, event["type"], event.get("event") or event.get("name"),
                   event.get("userId") or event.get("anonymousId"), event.get("properties"))
        digest.update(json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


class MemoryDedup:
    """Seen keys in this process: an LRU of ``size`` keys, each forgotten after ``window`` seconds."""

    def __init__(self, window: float, size: int = MEMORY_SIZE) -> None:
        self._window = window
        self._size = size
        self._seen: "OrderedDict[str, float]" = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, event: Event, hit: Any) -> None:
        key = dedup_key(event, hit)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen < self._window:
                self._seen.move_to_end(key)
                raise DecodeError("duplicate", "an event with this key was seen within the window")
            self._seen[key] = now
            self._seen.move_to_end(key)
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)


class RedisDedup:
    """Seen keys in Redis, shared by every process that points at it.

    :param url: ``redis://host:port/db``, optionally with ``?window=SECONDS``.
    :param count: called with ``"dedup_unavailable"`` once per outage.
    """

    def __init__(self, url: str, count: Callable[[str], None]) -> None:
        try:
            import redis
        except ImportError:
            raise ImportError('dedup with Redis needs redis-py: pip install "pixel-middleware[redis]"') from None

        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        # Checked finite and above 0 by the options table; Redis counts milliseconds.
        self._window_ms = max(1, round(float(dict(query).get("window", 3600)) * 1000))
        rest = urlencode([(k, v) for k, v in query if k != "window"])
        self._redis = redis.Redis.from_url(
            urlunsplit(parts._replace(query=rest)),
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry_on_timeout=False,
        )
        self._errors = (redis.RedisError, OSError)
        self._count = count
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic time before which Redis is not asked
        self._down = False

    def __call__(self, event: Event, hit: Any) -> None:
        if self._down and time.monotonic() < self._down_until:
            return
        key = "pixel:dedup:" + dedup_key(event, hit)
        try:
            fresh = self._redis.set(key, 1, nx=True, px=self._window_ms)
        except self._errors as error:
            self._failed(error)
            return
        if self._down:
            with self._lock:
                self._down = False
            _log.warning("dedup: Redis answers again; deduplicating")
        if not fresh:
            raise DecodeError("duplicate", "an event with this key was seen within the window")

    def _failed(self, error: Exception) -> None:
        with self._lock:
            first = not self._down
            self._down = True
            self._down_until = time.monotonic() + RETRY_AFTER
        if first:
            self._count("dedup_unavailable")
            # The error's class, not its text: a Redis URL may carry a password.
            _log.warning("dedup: Redis unavailable (%s); events pass undeduplicated until it answers",
                         type(error).__name__)


def dedup_step(spec: Union[float, str], count: Callable[[str], None]) -> Callable[[Event, Any], None]:
    """The step for a ``dedup=`` option as the options table checked it: seconds, or a Redis URL."""
    if isinstance(spec, str):
        return RedisDedup(spec, count)
    return MemoryDedup(spec)
