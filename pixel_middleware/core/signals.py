"""Signals sent for every pixel request, accepted or not.

Receivers run on the request thread, so keep them quick. An exception raised
by a receiver is logged on the ``pixel_middleware`` logger and goes no further:
the client still gets its GIF, the sink still gets the event and the other
receivers still run (blinker's own ``send`` would stop at the first error).
"""
from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

_signals = Namespace()

#: Sent when a pixel request decoded to an accepted event, before the event is
#: handed to the sink (a receiver may still add to it). Sender: the
#: :class:`~pixel_middleware.PixelMiddleware`, or the Flask app for routes
#: registered by :mod:`flask_pixel`. Keyword arguments: ``event`` (the
#: canonical event dict) and ``dialect`` (its dialect's name).
event_received = _signals.signal("event-received")

#: Sent when a pixel request was answered with the GIF but its event was
#: dropped. Same sender as :data:`event_received`. Keyword arguments:
#: ``reason`` (a short stable code such as ``"missing_identity"``), ``detail``
#: (a sentence for humans; never the write key) and ``dialect`` (``None`` when
#: the request was dropped before a dialect was chosen).
event_rejected = _signals.signal("event-rejected")

_log = logging.getLogger("pixel_middleware")


def send_safely(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Call each receiver in turn, logging instead of raising what it raises."""
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            _log.exception("a receiver of %s raised; ignored", signal.name)
