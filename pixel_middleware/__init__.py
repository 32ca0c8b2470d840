"""Tracking-pixel endpoints for any WSGI or ASGI app.

Wrap an app in :class:`PixelMiddleware` (WSGI) or :class:`PixelASGIMiddleware`
(ASGI: FastAPI, Starlette, Django's ASGI handler); pixel URLs of RudderStack, Segment,
mParticle and the compact form then decode into one canonical Segment-spec
event, announced on :data:`event_received` and handed to a sink.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .pipeline.collector import Collector
from .pipeline.dialects import Dialect
from .core.events import DecodeError
from .pipeline.metrics import metrics_app
from .middleware import PixelMiddleware
from .core.signals import event_received, event_rejected
from .sinks import FanoutSink, FileSink, LogSink, MemorySink, Sink, sink_from_url
from .pipeline.urls import PixelUrlWarning, build_click_url, build_pixel_url

from ._version import __version__  # noqa: F401 - the package's version, where tools look for it

if TYPE_CHECKING:
    from .asgi import PixelASGIMiddleware

# Loaded when first asked for: the sinks with optional dependencies, and the ASGI
# front door (asyncio costs a WSGI worker's start-up 16 ms it does not need).
_LAZY = {
    "KafkaSink": "pixel_middleware.sinks.kafka",
    "HttpSink": "pixel_middleware.sinks.http",
    "PixelASGIMiddleware": "pixel_middleware.asgi",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixel_middleware' has no attribute {name!r}")


__all__ = [
    "Collector",
    "DecodeError",
    "Dialect",
    "FanoutSink",
    "FileSink",
    "LogSink",
    "MemorySink",
    "PixelASGIMiddleware",
    "PixelMiddleware",
    "PixelUrlWarning",
    "Sink",
    "metrics_app",
    "build_click_url",
    "build_pixel_url",
    "event_received",
    "event_rejected",
    "sink_from_url",
]
