"""The WSGI app: plain Django; the pixel routes are answered by ``pixel_middleware.django.PixelMiddleware``.

``wrapped_wsgi.py`` is the alternative for pixels that must bypass Django entirely.
"""
from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pixelsite.settings")
application = get_wsgi_application()
