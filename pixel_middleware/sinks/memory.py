"""MemorySink: keeps every event in a list, for tests and debugging.

Delivery: events are appended on the request thread, so ``.events`` holds
each accepted event as soon as the response is sent. Unbounded: not for
production.
"""
from __future__ import annotations

from typing import Any, List

from ..core.events import Event
from .base import Sink


class MemorySink(Sink):
    """Collects canonical event dicts in :attr:`events` (thread-safe appends)."""

    def __init__(self) -> None:
        #: The canonical event dicts received, oldest first.
        self.events: List[Event] = []

    def emit(self, event: Event, **meta: Any) -> None:
        self.events.append(event)
