"""The alternative WSGI app: Django wrapped in the WSGI PixelMiddleware (``pixelsite.wrapped_wsgi:application``).

Pixel requests are answered by the middleware before Django sees them (no
URLconf entry, no view, no Django middleware runs for them); every other
request goes to Django unchanged. Remove ``PixelMiddleware`` from
``MIDDLEWARE`` when you serve this one.
"""
from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from pixel_middleware import PixelMiddleware
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pixelsite.settings")

application = PixelMiddleware(
    get_wsgi_application(),
    sink=settings.PIXEL_SINK,
    write_keys=settings.PIXEL_WRITE_KEYS,
)
