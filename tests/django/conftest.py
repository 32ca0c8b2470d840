"""A real Django project (``pixeltest``) set up once per test process, its database migrated.

No ``__init__.py`` here on purpose: a ``tests/django`` package would shadow Django itself.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
_before = os.environ.get("DJANGO_SETTINGS_MODULE")
os.environ["DJANGO_SETTINGS_MODULE"] = "pixeltest.settings"

import django  # noqa: E402

django.setup()
# Settings are loaded now; the variable must not leak into other tests' subprocesses (the examples' manage.py).
if _before is None:
    del os.environ["DJANGO_SETTINGS_MODULE"]
else:
    os.environ["DJANGO_SETTINGS_MODULE"] = _before


@pytest.fixture(scope="session", autouse=True)
def database() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@pytest.fixture
def pixel() -> Iterator[object]:
    """The process's pixel state, its memory sink emptied for the test."""
    from pixel_middleware.django import state

    current = state()
    current.collector.sink.events.clear()
    yield current
