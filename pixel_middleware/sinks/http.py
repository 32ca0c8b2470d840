"""HttpSink: batched POSTs of events to an HTTP endpoint, at least once.

::

    PixelMiddleware(app, sink=HttpSink("https://api.segment.io/v1/batch", format="segment"))
    PixelMiddleware(app, sink="https://collector.example.com/events#format=json&gzip=1&spool_dir=/var/spool/pixel")

Formats:

* ``segment`` (default): ``POST {"batch": [...], "sentAt": "..."}`` with the
  request's write key as the HTTP Basic user (empty password), one batch per
  write key, as Segment's and RudderStack's ``/v1/batch`` expect. The write
  key is never put in the events; it travels beside them, and is kept in the
  spool (mode 0600) so that spooled events can still be delivered.
* ``json``: a plain JSON array of events, with optional extra ``headers``.

Delivery guarantee: at-least-once. A batch counts as delivered on a 2xx
answer. Connection errors, timeouts, 408, 429 and 5xx are retried
``retries`` times with exponential backoff and jitter, a ``Retry-After``
header taking the backoff's place; then the batch goes to the on-disk spool
and is replayed once the endpoint answers again and at the next start (a
``Retry-After`` longer than ``retry_backoff_max`` sends the batch to the spool
at once, replayed no sooner than asked). Any other answer (3xx, 4xx) means
the endpoint will never take that batch: it goes to the dead-letter file with
the status and the response body, and is not retried. ``close()`` and
interpreter exit flush within a timeout and spool the rest. Lost: what is in
memory when the process is killed without a chance to close (SIGKILL, OOM),
and what the spool's disk cap refuses (counted and logged). Duplicates (same ``messageId``, which
Segment and RudderStack deduplicate on): a batch the endpoint accepted but
answered too late or not at all, a spool file replayed again after part of it
was delivered.

Requires the ``http`` extra (urllib3): ``pip install "pixel-middleware[http]"``.
"""
from __future__ import annotations

import base64
import gzip as gzip_module
import logging
import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from .._version import __version__
from ..core.events import now
from .base import url_label
from .delivery import DeliveringSink, Item, as_bool, backoff_delay, split_options

_log = logging.getLogger("pixel_middleware.http")

try:
    import urllib3
except ImportError:  # pragma: no cover - exercised where the extra is missing
    urllib3 = None  # type: ignore[assignment]

FORMATS = ("segment", "json")
#: An item with its event's JSON bytes.
Encoded = Tuple[Item, bytes]
#: Answers worth retrying; any other non-2xx answer is dead-lettered.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504} | set(range(505, 600)))


def _require_urllib3() -> Any:
    if urllib3 is None:
        raise ImportError("HttpSink needs urllib3: install the http extra, pip install 'pixel-middleware[http]'")
    return urllib3


class HttpSink(DeliveringSink):
    """POST events in batches to ``url``; retry, spool or dead-letter what is not taken.

    :param url: the endpoint, ``http://`` or ``https://``.
    :param format: ``segment`` (default) or ``json``; see the module docstring.
    :param headers: extra request headers (both formats).
    :param auth: ``user:password`` for HTTP Basic where a batch has no write
        key (all batches in ``json`` format).
    :param gzip: compress request bodies (``Content-Encoding: gzip``).
    :param timeout: seconds for connecting and for reading the answer (default 10).
    :param retries: immediate retries of a batch before it is spooled (default 3).
    :param retry_delay: first wait between those retries, doubled each time,
        with jitter (default 0.5 s); a ``Retry-After`` header overrides it.
    :param max_batch_bytes: a body bigger than this is split (default 500 KB,
        Segment's limit).
    :param pool: options for urllib3's ``PoolManager`` (``maxsize``,
        ``ca_certs``, ``cert_reqs``...).

    The options of :class:`~pixel_middleware.sinks.delivery.DeliveringSink`
    (``spool_dir``, ``spool_max_bytes``, ``queue_size``, ``batch_size``
    (default here 100), ``linger`` (default here 0.5), ``retry_backoff``,
    ``retry_backoff_max``, ``rescan``, ``exit_timeout``, ``dead_letter``)
    apply as well.
    """

    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        format: str = "segment",
        headers: Optional[Mapping[str, str]] = None,
        auth: Optional[str] = None,
        gzip: bool = False,
        timeout: float = 10.0,
        retries: int = 3,
        retry_delay: float = 0.5,
        max_batch_bytes: int = 500_000,
        pool: Optional[Mapping[str, Any]] = None,
        **options: Any,
    ) -> None:
        lib = _require_urllib3()
        if format not in FORMATS:
            raise ValueError(f"HttpSink format={format!r}: choose one of {', '.join(FORMATS)}")
        if not url.startswith(("http://", "https://")):
            # The URL is not quoted back: it may hold credentials, and errors end up in logs.
            raise ValueError("HttpSink needs an http:// or https:// URL")
        self.url = url
        self.format = format
        self.keeps_write_key = format == "segment"
        self.gzip = bool(gzip)
        self.retries = int(retries)
        self.retry_delay = float(retry_delay)
        self.max_batch_bytes = int(max_batch_bytes)
        self.headers: Dict[str, str] = {
            "Content-Type": "application/json",
            "User-Agent": f"pixel-middleware/{__version__}",
            **(headers or {}),
        }
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"
        self.auth = auth
        self._timeout = lib.Timeout(connect=float(timeout), read=float(timeout))
        self._pool = lib.PoolManager(**{"maxsize": 2, **(pool or {})})
        options.setdefault("batch_size", 100)
        options.setdefault("linger", 0.5)
        super().__init__(url, **options)

    @property
    def name(self) -> str:
        return url_label(self.url)

    def __repr__(self) -> str:
        return f"<HttpSink {self.name}>"

    @classmethod
    def from_url(cls, url: str) -> "HttpSink":
        """``https://[user:password@]host/path?query#format=json&gzip=1&header.X-Name=value&spool_dir=...``.

        Sink options go in the fragment, which is never sent, so the
        endpoint's own query string stays the endpoint's. ``header.NAME``
        adds a request header; credentials in the URL become ``auth``.
        """
        parts = urlsplit(url)
        options, rest = split_options(
            parse_qsl(parts.fragment, keep_blank_values=True),
            {
                "format": str,
                "gzip": as_bool,
                "timeout": float,
                "retries": int,
                "retry_delay": float,
                "max_batch_bytes": int,
                "auth": str,
            },
        )
        headers = {}
        for name, value in rest.items():
            if not name.startswith("header."):
                raise ValueError(f"HTTP sink URL option {name!r} is unknown (options go in the #fragment)")
            headers[name[len("header.") :]] = value
        if parts.username is not None:
            options.setdefault("auth", f"{unquote(parts.username)}:{unquote(parts.password or '')}")
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        endpoint = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        return cls(endpoint, headers=headers, **options)

    # -- the worker thread -------------------------------------------------

    def _deliver(self, items: Sequence[Item]) -> List[Item]:
        groups: Dict[Optional[str], List[Encoded]] = {}
        for item, data in self._encoded(items):
            groups.setdefault(item[2] if self.keeps_write_key else None, []).append((item, data))
        failed: List[Item] = []
        for write_key, group in groups.items():
            for start in range(0, len(group), self._worker.batch_size):
                chunk = group[start : start + self._worker.batch_size]
                if failed:
                    failed.extend(item for item, _ in chunk)  # the endpoint is failing: do not hammer it
                else:
                    failed.extend(self._post(chunk, write_key))
        return failed

    def _post(self, chunk: List[Encoded], write_key: Optional[str]) -> List[Item]:
        """POST one batch with retries; return its items if they should be spooled, ``[]`` otherwise."""
        body = self._body(chunk)
        if len(body) > self.max_batch_bytes and len(chunk) > 1:
            half = len(chunk) // 2
            first = self._post(chunk[:half], write_key)
            return first + [item for item, _ in chunk[half:]] if first else self._post(chunk[half:], write_key)
        items = [item for item, _ in chunk]
        headers = dict(self.headers)
        credentials = write_key + ":" if write_key else self.auth
        if credentials:
            # UTF-8, not urllib3's latin-1: a write key is whatever the pixel URL carried.
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode("utf-8", "replace")).decode()
        if self.gzip:
            body = gzip_module.compress(body, 6)
        attempt = 0
        while True:
            try:
                response = self._pool.request(
                    "POST", self.url, body=body, headers=headers, timeout=self._timeout, retries=False, redirect=False
                )
            except urllib3.exceptions.HTTPError as error:
                status, wait, why = None, None, f"{type(error).__name__}: {error}"
            else:
                status = response.status
                if 200 <= status < 300:
                    return []
                if status not in RETRY_STATUSES:
                    self._dead_letter(
                        items,
                        url=self.url,
                        status=status,
                        response=response.data[:2000].decode("utf-8", "replace"),
                    )
                    return []
                wait = _retry_after(response.headers.get("Retry-After"))
                why = f"HTTP {status}"
            if attempt >= self.retries:
                _log.warning("%r: batch of %d failed after %d tries (%s)", self, len(chunk), attempt + 1, why)
                return items
            delay = backoff_delay(attempt, self.retry_delay, self.retry_backoff_max)
            if wait is not None:
                if wait > self.retry_backoff_max:
                    # Longer than we ever wait in line: spool, and replay no sooner than
                    # we would wait at most, however long was asked for.
                    self._not_before = time.monotonic() + self.retry_backoff_max
                    _log.warning("%r: %s with Retry-After %.0f s; batch of %d spooled", self, why, wait, len(chunk))
                    return items
                delay = wait
            attempt += 1
            _log.info("%r: %s; retry %d in %.2f s", self, why, attempt, delay)
            if not self._sleep(delay):
                return items

    def _body(self, chunk: Sequence[Encoded]) -> bytes:
        """The request body, joined from each event's own encoding (one bad event never spoils a body)."""
        events = b"[" + b",".join(data for _, data in chunk) + b"]"
        if self.format == "segment":
            return b'{"batch":' + events + b',"sentAt":"' + now().encode() + b'"}'
        return events

    def _release(self, timeout: Optional[float]) -> None:
        self._pool.clear()


#: The longest ``Retry-After`` read, in seconds; the sink waits at most ``retry_backoff_max``.
_RETRY_AFTER_MAX = 10**9


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds asked for by a ``Retry-After`` header, 0 to 10**9; ``None`` if absent or unreadable.

    Strictly RFC 9110: ASCII digits (``"²"`` is a digit to ``str.isdigit``,
    not to HTTP) or an HTTP date. The sink caps the wait at
    ``retry_backoff_max``, because an endpoint asking for a day (or 400
    digits of seconds) must not stop delivery for good.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(_RETRY_AFTER_MAX) if len(value) > 9 else float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    return min(max(moment.timestamp() - time.time(), 0.0), float(_RETRY_AFTER_MAX))
