"""Sinks, and the building of one from a URL, an object or a list.

URL schemes: ``log:``, ``file:/path``, ``memory:``, ``kafka://host:port/topic``,
``http://...`` and ``https://...``. Sinks whose dependencies are optional are
imported only when asked for.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Iterable, Union

from .base import Sink
from .fanout import FanoutSink
from .file import FileSink
from .log import LogSink
from .memory import MemorySink

#: URL scheme -> "module:class"; the class's ``from_url`` builds the sink.
SCHEMES: Dict[str, str] = {
    "log": "pixel_middleware.sinks.log:LogSink",
    "file": "pixel_middleware.sinks.file:FileSink",
    "memory": "pixel_middleware.sinks.memory:MemorySink",
    "kafka": "pixel_middleware.sinks.kafka:KafkaSink",
    "http": "pixel_middleware.sinks.http:HttpSink",
    "https": "pixel_middleware.sinks.http:HttpSink",
}

SinkSpec = Union[Sink, str, Iterable[Union[Sink, str]], None]


def sink_from_url(url: str) -> Sink:
    """Build a sink from a URL such as ``log:`` or ``kafka://127.0.0.1:9092/raw-events``."""
    scheme = url.partition(":")[0].lower()
    target = SCHEMES.get(scheme)
    if target is None or ":" not in url:
        known = ", ".join(f"{s}:" for s in SCHEMES)
        # The scheme only: the rest of a sink URL may hold credentials, and errors end up in logs.
        raise ValueError(f"unknown sink URL scheme {scheme[:20]!r}: the schemes are {known}")
    module, _, name = target.partition(":")
    cls: Any = getattr(importlib.import_module(module), name)
    return cls.from_url(url)


def resolve_sink(spec: SinkSpec) -> Sink:
    """A sink from a sink, a URL, or several of either (fanned out); ``None`` logs."""
    if spec is None:
        return LogSink()
    if isinstance(spec, Sink):
        return spec
    if isinstance(spec, str):
        return sink_from_url(spec)
    if hasattr(spec, "emit"):
        return spec  # type: ignore[return-value]  # duck-typed sinks are welcome
    sinks = [resolve_sink(item) for item in spec]
    return sinks[0] if len(sinks) == 1 else FanoutSink(sinks)


__all__ = ["FanoutSink", "FileSink", "LogSink", "MemorySink", "SCHEMES", "Sink", "resolve_sink", "sink_from_url"]
