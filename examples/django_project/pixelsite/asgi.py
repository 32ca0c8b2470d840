"""The ASGI app (``uvicorn pixelsite.asgi:application``): the same middleware answers the pixel routes."""
from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pixelsite.settings")
application = get_asgi_application()
