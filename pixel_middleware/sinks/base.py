"""The sink contract: where accepted events go.

The middleware calls :meth:`Sink.emit` on the request thread, so ``emit``
must return at once: a sink that delivers over the network hands the event
to a background worker. Whatever ``emit`` raises is logged and counted by
the middleware and never reaches the client.
"""
from __future__ import annotations

from typing import Any, Optional

from ..events import Event


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

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    @classmethod
    def from_url(cls, url: str) -> "Sink":
        """Build the sink from its URL (``log:``, ``memory:`` ...)."""
        return cls()
