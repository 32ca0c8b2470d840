"""LogSink: one JSON line per event through :mod:`logging`.

The default sink: events are visible with no infrastructure, and any log
shipper can pick them up. Delivery is what the logging handlers give: the
line is written before the response is sent, nothing is retried. Each line
is one valid UTF-8 JSON object (:func:`~pixel_middleware.sinks.base.event_line`);
an event that has no such form is refused, never half-written.
"""
from __future__ import annotations

import logging
from typing import Any, Union

from ..core.events import Event
from .base import Sink, event_line


class LogSink(Sink):
    """Log each event as one compact JSON line.

    :param logger: a logger or a logger name (default ``pixel_middleware.core.events``).
    :param level: the level events are logged at (default ``INFO``).

    If the logger has no handler anywhere up its hierarchy, a stderr handler
    printing the bare line is added, and its level is set so that the lines
    show: as Flask does for ``app.logger``, because an unconfigured Python
    logging setup would otherwise swallow every event in silence.
    """

    def __init__(self, logger: Union[str, logging.Logger, None] = None, level: int = logging.INFO) -> None:
        if not isinstance(logger, logging.Logger):
            logger = logging.getLogger(logger or "pixel_middleware.core.events")
        if not logger.hasHandlers():
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        if not logger.isEnabledFor(level) and logger.level == logging.NOTSET:
            logger.setLevel(level)
        self._log = logger.log
        self._level = level

    def emit(self, event: Event, **meta: Any) -> None:
        """Log the event's line; an event with no valid JSON form raises here, before
        :mod:`logging` sees it (the collector counts it as ``sink_error``)."""
        self._log(self._level, "%s", event_line(event))

    @classmethod
    def from_url(cls, url: str) -> "LogSink":
        """``log:`` or ``log:LOGGER_NAME``."""
        name = url.partition(":")[2].strip("/")
        return cls(name or None)
