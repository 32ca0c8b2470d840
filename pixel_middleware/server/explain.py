"""What a pixel URL decodes to, or why it is rejected, sending nothing anywhere.

One answer for ``pixel-middleware decode URL`` and the debug page's box:
the URL runs through a real :class:`~pixel_middleware.Collector` (the same
dialects, checks and steps as a live request) into a
:class:`~pixel_middleware.MemorySink`.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple
from urllib.parse import urlsplit

from blinker import Signal

from ..core.events import Event

#: A URL too long to be a pixel URL is not parsed at all.
MAX_URL_CHARS = 64 * 1024


def explain(url: str, **collector_options: Any) -> Tuple[Optional[Event], Optional[str]]:
    """``(event, None)`` for a URL the collector would accept, ``(None, "reason: detail")`` otherwise.

    ``collector_options`` are :class:`~pixel_middleware.Collector`'s
    (``write_keys``, ``dialects``, ``prefix``, ``signing_key``...); the sink
    is always a MemorySink, and ``dedup`` is left out, so that explaining a
    URL never marks its message as seen. Nothing is logged or signalled: a
    live collector in the same process goes on logging as it did. Never
    raises for any ``url``.
    """
    from werkzeug.test import EnvironBuilder

    from ..pipeline import clicks
    from ..pipeline.collector import Collector
    from ..sinks import MemorySink

    class Explaining(Collector):
        """A collector that notes its verdict instead of logging or signalling it."""

        verdict: Optional[str] = None
        _received = Signal()  # an accepted event is announced to nobody

        def _reject(self, reason: str, detail: str, dialect: Any, match: Any, received_at: Any = None) -> None:
            self.verdict = f"{reason}: {detail}"

    if len(url) > MAX_URL_CHARS:
        return None, "query_too_long: the URL is too long to be a pixel URL"
    try:
        parts = urlsplit(url.strip())
        environ = EnvironBuilder(path=parts.path or "/", query_string=parts.query,
                                 base_url=f"{parts.scheme or 'http'}://{parts.netloc or 'localhost'}").get_environ()
    except (ValueError, UnicodeError):
        return None, "invalid_url: this is not a URL"
    options = {name: value for name, value in collector_options.items() if value is not None and name != "dedup"}
    collector = Explaining(sink=MemorySink(), **options)
    try:
        match = collector.match(environ["PATH_INFO"])
        if match is None:
            return None, "not_a_pixel_route: no dialect answers this path"
        if match.route.click and clicks.safe_target(collector, environ) is None:
            return None, ": ".join(clicks.UNSAFE)  # the route answers 400 and records nothing
        event = collector.collect(environ, match)
    finally:
        collector.close(timeout=1)
    if event is None:
        return None, collector.verdict or "rejected"
    return event, None
