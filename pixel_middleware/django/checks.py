"""System checks (``manage.py check``): pixel misconfigurations reported at start-up, not in production.

=============  ==================================================================
``pixel.E001``  a ``PIXEL_*`` setting (or ``SECRET_KEY`` as the signing key) the
                options table refuses; the message names the setting, never its value
``pixel.E002``  ``PIXEL_WRITE_KEY`` is not among ``PIXEL_WRITE_KEYS``: every URL the
                site builds would be rejected
``pixel.W001``  no ``PIXEL_BASE_URL``: emails rendered outside a request (a
                management command, a Celery task) cannot build absolute URLs
``pixel.W002``  click links no route would follow: no signing key
                (``PIXEL_SIGNING_KEY = False``) and no ``PIXEL_CLICK_ALLOWED_HOSTS``
``pixel.W003``  the middleware comes after sessions, authentication or CSRF in
                ``MIDDLEWARE``, so they run for every pixel
=============  ==================================================================
"""
from __future__ import annotations

from typing import Any, List, Optional

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from ..options import OPTIONS
from ..pipeline.dialects import get_dialects
from .middleware import _Settings, read_settings

_MIDDLEWARE = "pixel_middleware.django.PixelMiddleware"
#: Middleware that should not see pixel requests (a login check would redirect an email's pixel).
_BEFORE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
)


def _row_errors(config: _Settings) -> List[CheckMessage]:
    """Every ``PIXEL_*`` setting the table refuses, each on its own (one run names them all)."""
    errors: List[CheckMessage] = []
    for row in OPTIONS:
        if not row.key or row.scope not in ("pipeline", "urls"):
            continue
        value = config.get(row.key)
        if row.key == "PIXEL_SIGNING_KEY" and value is False:
            continue
        try:
            row.check(value, row.key)
        except (ValueError, TypeError) as problem:
            errors.append(Error(str(problem), hint=f"fix or remove settings.{row.key}", id="pixel.E001",
                                obj=f"settings.{row.key}"))
    return errors


def _write_key_error(config: _Settings) -> Optional[CheckMessage]:
    key, keys = config.get("PIXEL_WRITE_KEY"), config.get("PIXEL_WRITE_KEYS")
    if not key or keys is None or callable(keys):
        return None
    accepted = [k.strip() for k in keys.split(",")] if isinstance(keys, str) else [str(k).strip() for k in keys]
    if str(key).strip() in accepted:
        return None
    return Error("PIXEL_WRITE_KEY is not among PIXEL_WRITE_KEYS: every URL the site builds would be rejected",
                 hint="add the write key to PIXEL_WRITE_KEYS, or leave PIXEL_WRITE_KEYS unset to accept it alone",
                 id="pixel.E002", obj="settings.PIXEL_WRITE_KEY")


def check_settings(app_configs: Any = None, **kwargs: Any) -> List[CheckMessage]:
    """The pixel settings, checked by the options table, then what a site would trip over later."""
    config = _Settings(settings)
    messages = _row_errors(config)
    mismatch = _write_key_error(config)
    if mismatch is not None:
        messages.append(mismatch)
    if messages:
        return messages
    try:
        resolved = read_settings()
    except (ValueError, TypeError) as problem:  # options that contradict each other, or SECRET_KEY
        return [Error(str(problem), id="pixel.E001")]
    if not resolved["base_url"]:
        messages.append(Warning(
            "PIXEL_BASE_URL is not set: a template rendered outside a request (an email sent by a management "
            "command or a Celery task) cannot build an absolute pixel URL",
            hint="set PIXEL_BASE_URL = 'https://www.example.com' (the site's public root)", id="pixel.W001"))
    clicks = any(values.get("click") == "1" for d in get_dialects(resolved["dialects"]) for values in d.routes.values())
    if clicks and not resolved["signing_key"] and not resolved["click_allowed_hosts"]:
        messages.append(Warning(
            "click links would not be followed: without a signing key the click route redirects only to "
            "PIXEL_CLICK_ALLOWED_HOSTS, and there are none",
            hint="remove PIXEL_SIGNING_KEY = False (SECRET_KEY then signs), or set PIXEL_CLICK_ALLOWED_HOSTS",
            id="pixel.W002"))
    return messages


def check_middleware_order(app_configs: Any = None, **kwargs: Any) -> List[CheckMessage]:
    """The middleware placed after sessions, auth or CSRF: they would run (and may redirect) for every pixel."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if _MIDDLEWARE not in middleware:
        return []
    before = [m for m in middleware[: middleware.index(_MIDDLEWARE)] if m in _BEFORE]
    if not before:
        return []
    return [Warning(f"{_MIDDLEWARE} comes after {', '.join(before)} in MIDDLEWARE: those run for every pixel "
                    "request (a session lookup per email open; a login check would redirect the pixel)",
                    hint=f"put {_MIDDLEWARE} first in MIDDLEWARE", id="pixel.W003")]
