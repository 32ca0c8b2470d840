"""Django, natively: ``"pixel_middleware.django"`` in ``INSTALLED_APPS``, its middleware first in ``MIDDLEWARE``.

::

    INSTALLED_APPS = [..., "pixel_middleware.django"]
    MIDDLEWARE = ["pixel_middleware.django.PixelMiddleware", ...]   # first: before sessions, auth, CSRF
    PIXEL_WRITE_KEY = "my-write-key"
    PIXEL_BASE_URL = "https://www.example.com"                      # emails rendered outside a request

and in a template ``{% load pixel %}{% pixel_tag "Email Opened" user campaign_id=c.id %}``.

Settings are the Flask extension's ``PIXEL_*`` keys, read through the one
options table (:func:`pixel_middleware.options.from_config`), signing with
``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` unless ``PIXEL_SIGNING_KEY``
says otherwise. The middleware and the tags share one
:class:`~pixel_middleware.Collector` per process (:func:`state`), built on
first use, so a gunicorn worker builds its own after the fork. Signals are
sent by the :class:`PixelMiddleware` class::

    from pixel_middleware import event_received
    from pixel_middleware.django import PixelMiddleware
    event_received.connect(count_open, sender=PixelMiddleware)

When not to use it: pixels that must bypass Django entirely (not even its
handler) are answered by wrapping ``wsgi.py``'s application in
:class:`pixel_middleware.PixelMiddleware` instead.
"""
from __future__ import annotations

from .middleware import PixelMiddleware, PixelState, state

__all__ = ["PixelMiddleware", "PixelState", "state"]
