"""A Django project's ``asgi.py`` with the pixel routes: ``tests.asgi_apps.django_app:application``."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.asgi_apps.django_settings")

from django.core.asgi import get_asgi_application  # noqa: E402

from pixel_middleware import PixelASGIMiddleware  # noqa: E402
from tests.asgi_apps import options  # noqa: E402

application = PixelASGIMiddleware(get_asgi_application(), **options())
