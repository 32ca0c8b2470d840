"""ASGI apps as users deploy them, for real servers (uvicorn, granian) to import: FastAPI, Starlette, Django.

Every app wraps its framework in :class:`~pixel_middleware.PixelASGIMiddleware` with :func:`options`:
``PIXEL_TEST_EVENTS`` is the file sink's path, ``PIXEL_TEST_BATCH`` the lines it may hold until
closed (``1``: each line written at once), ``PIXEL_TEST_DEDUP`` an optional ``dedup`` value.
"""
from __future__ import annotations

import os
from typing import Any, Dict

from pixel_middleware import FileSink

WRITE_KEY = "asgi-test-write-key-7f3a"
SIGNING_KEY = "asgi-test-signing-key"
ALLOWED_HOST = "good.example"


def options() -> Dict[str, Any]:
    """The middleware's options, the same for every app."""
    return {
        # Held lines stay held (no linger runs out) until an event comes after them or the server stops.
        "sink": FileSink(os.environ["PIXEL_TEST_EVENTS"], batch=int(os.environ.get("PIXEL_TEST_BATCH", "1")),
                         linger=3600),
        "write_keys": [WRITE_KEY],
        "signing_key": SIGNING_KEY,
        "click_allowed_hosts": [ALLOWED_HOST],
        "dedup": os.environ.get("PIXEL_TEST_DEDUP") or None,
    }
