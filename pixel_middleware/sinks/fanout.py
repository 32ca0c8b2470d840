"""FanoutSink: hands each event to several sinks.

Delivery is each sink's own. One sink raising does not keep the event from
the others; the error is logged.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional

from ..core.events import Event
from .base import Sink

_log = logging.getLogger("pixel_middleware")


class FanoutSink(Sink):
    """Emit to every sink in ``sinks``, in order."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event, **meta: Any) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event, **meta)
            except Exception:
                _log.exception("sink %r failed to take an event", sink)

    def health(self) -> List[Dict[str, Any]]:
        # Names are labels in metrics and readiness: two sinks alike (two log sinks, one
        # endpoint with two tokens) must not add up under one, so a repeat is numbered.
        entries = [entry for sink in self.sinks for entry in sink.health()]
        seen: Dict[str, int] = {}
        for entry in entries:
            name = entry["sink"]
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                entry["sink"] = f"{name}#{seen[name]}"
        return entries

    def flush(self, timeout: Optional[float] = None) -> bool:
        return all([sink.flush(timeout) for sink in self.sinks])

    def close(self, timeout: Optional[float] = None) -> None:
        for sink in self.sinks:
            try:
                sink.close(timeout)
            except Exception:
                _log.exception("sink %r failed to close", sink)
