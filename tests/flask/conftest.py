"""Fixtures for the Flask extension's tests: an app factory, its sink, a signal recorder.

No ``__init__.py`` here on purpose: a package named ``flask`` under
``tests/`` would shadow the real Flask.
"""
from __future__ import annotations

import html
import re
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from blinker import Signal
from flask import Flask

from flask_pixel import Pixel
from pixel_middleware import MemorySink
WRITE_KEY = "test-key"


@contextmanager
def recording(signal: Signal, sender: Any = None) -> Iterator[List[Tuple[Any, Dict[str, Any]]]]:
    """Record one signal, optionally from one sender only."""
    calls: List[Tuple[Any, Dict[str, Any]]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append((sender, kwargs))

    with signal.connected_to(receiver, **({} if sender is None else {"sender": sender})):
        yield calls


def src_of(markup: str) -> str:
    """The URL in the first ``src="..."`` attribute of rendered HTML, unescaped as a browser does."""
    found = re.search(r'src="([^"]*)"', markup)
    assert found, markup
    return html.unescape(found.group(1))


@pytest.fixture
def pixel_sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def make_app(pixel_sink: MemorySink) -> Callable[..., Flask]:
    """Build a Flask app with ``Pixel`` on it; keyword arguments go to ``app.config``."""

    def make(**config: Any) -> Flask:
        app = Flask(__name__)
        app.config.update({"TESTING": True, "PIXEL_SINK": pixel_sink, "PIXEL_WRITE_KEY": WRITE_KEY, **config})
        Pixel(app)
        return app

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()
