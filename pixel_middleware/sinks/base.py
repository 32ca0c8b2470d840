"""The sink contract: where accepted events go.

The middleware calls :meth:`Sink.emit` on the request thread, so ``emit``
must return at once: a sink that delivers over the network hands the event
to a background worker. Whatever ``emit`` raises is logged and counted by
the middleware and never reaches the client.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from ..core.events import Event

def url_label(url: str) -> str:
    """A URL as a sink's name shows it (metric labels, ``/readyz``, logs, ``--print-config``).

    Scheme and hosts (with their ports), a Kafka URL's topic, and a short
    digest of the endpoint's path and query, so that two sinks stay apart
    and the same sink gets the same name wherever it is shown. Why not more:
    userinfo and query values carry passwords and keys, and so do paths
    (a webhook's token is its path: ``/services/T000/B000/SECRET``).
    A URL with no host (``log:``, ``file:/var/log/pixels.jsonl``) names
    nothing secret and is shown as it is.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "url #" + _digest(url)
    if not parts.netloc:
        return url
    hosts = parts.netloc.rpartition("@")[2]
    topic = parts.path if parts.scheme == "kafka" else ""
    shown = f"{parts.scheme}://{hosts}{topic}"
    # The endpoint as the sink calls it: neither the userinfo (credentials, which a sink sends
    # apart) nor the fragment (the sink's options) changes which endpoint this is.
    endpoint = f"{shown}{'' if topic else parts.path}{'?' + parts.query if parts.query else ''}"
    return shown if endpoint == shown or endpoint == shown + "/" else f"{shown} #{_digest(endpoint)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

try:  # optional (the "fast" extra): the same lines at an eighth of the cost
    import orjson

    _fast = orjson.dumps
    # Datetimes and dataclasses have no JSON form in the standard encoder: keep it that way.
    _FAST_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
except ImportError:  # pragma: no cover - depends on the installation
    _fast = None


def event_line(event: Event) -> str:
    """The event as one compact JSON line: the one encoding every built-in sink writes.

    Valid, finite, UTF-8-encodable JSON or an exception (``ValueError`` for
    NaN or infinity, ``TypeError`` for a value JSON has no form for,
    ``UnicodeEncodeError`` for a lone surrogate), so that a bad event fails
    alone, where it is encoded, and never takes a batch down with it. The
    Unicode line separators U+2028, U+2029 and U+0085, which JSON leaves raw,
    are escaped: ``str.splitlines()`` and many log shippers split lines there.
    """
    if _fast is not None:
        return encode_event(event).decode("utf-8")
    return _standard_line(event)


def _standard_line(event: Event) -> str:
    text = _dumps(event)
    if not text.isascii():
        text.encode("utf-8")  # a lone surrogate raises here
        if "\u2028" in text or "\u2029" in text or "\x85" in text:
            text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
    return text


def encode_event(event: Event) -> bytes:
    """:func:`event_line` as UTF-8 bytes, for sinks that send bytes.

    With orjson installed, orjson writes them; whatever it refuses (a lone
    surrogate, an integer beyond 64 bits, a key that is not a string) and
    any line holding ``null`` (orjson writes NaN and infinity as ``null``
    where the standard encoder raises) goes through the standard encoder, so
    that the answer, line or exception, is the same either way.
    """
    if _fast is not None:
        try:
            data = _fast(event, option=_FAST_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError
            data = b"null"
        if b"null" not in data:
            if not data.isascii() and (b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data or b"\xc2\x85" in data):
                data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
                data = data.replace(b"\xc2\x85", b"\\u0085")
            return data
    return _standard_line(event).encode("utf-8")


class Sink:
    """Base class for sinks. Subclasses implement :meth:`emit`.

    ``emit(event, **meta)`` receives the canonical event and, beside it,
    ``dialect`` (the dialect's name) and ``write_key`` (the key the request
    was authenticated with, for sinks that forward to Segment or RudderStack;
    ``None`` where there was none). Accept ``**meta`` so that keys added
    later do not break a sink.
    """

    def emit(self, event: Event, **meta: Any) -> None:
        raise NotImplementedError

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is pending, waiting at most ``timeout`` seconds.

        Returns whether everything pending was delivered (or, for delivering
        sinks, safely spooled).
        """
        return True

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush, then release resources. Events emitted afterwards may be refused."""
        self.flush(timeout)

    def health(self) -> List[Dict[str, Any]]:
        """How each sink behind this one is doing, one dict per sink, for metrics and readiness.

        Keys: ``sink`` (a name without credentials), ``delivered``,
        ``failed_batches``, ``dead_lettered`` (counts since start),
        ``queue_depth`` (events waiting in memory), ``spool_bytes``,
        ``spool_max_bytes``, ``oldest_spooled_seconds``, and ``down_since``
        (``time.time()`` when deliveries began failing, ``None`` while they
        succeed). A sink that delivers in place, like :class:`LogSink`,
        reports zeros and is never down.
        """
        return [{"sink": self.name, "delivered": 0, "failed_batches": 0, "dead_lettered": 0, "queue_depth": 0,
                 "spool_bytes": 0, "spool_max_bytes": 0, "oldest_spooled_seconds": 0.0, "down_since": None}]

    @property
    def name(self) -> str:
        """A short label for metrics and health pages: never credentials."""
        return type(self).__name__.lower().replace("sink", "") or "sink"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    @classmethod
    def from_url(cls, url: str) -> "Sink":
        """Build the sink from its URL (``log:``, ``memory:`` ...)."""
        return cls()
