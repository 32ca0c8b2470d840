"""Settings of the example: the pixel app and its middleware, a campaigns app counting opens; pixel settings at the end."""
from __future__ import annotations

import os

SECRET_KEY = "example-only-not-secret"
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "pixelsite.urls"
WSGI_APPLICATION = "pixelsite.wsgi.application"
INSTALLED_APPS = ["pixel_middleware.django", "campaigns"]
#: First, so that sessions, auth and CSRF (were there any) never see a pixel.
MIDDLEWARE = ["pixel_middleware.django.PixelMiddleware"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": False,
              "DIRS": [os.path.join(os.path.dirname(__file__), "templates")]}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("EXAMPLE_DB", os.path.join(os.path.dirname(__file__), "..", "db.sqlite3"))}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True

#: Where events go: a sink URL (log:, kafka://host:9092/topic, https://...).
PIXEL_SINK = os.environ.get("PIXEL_SINK", "log:")
#: The write keys the pixel routes accept.
PIXEL_WRITE_KEYS = [key.strip() for key in os.environ.get("PIXEL_WRITE_KEYS", "demo-key").split(",") if key.strip()]
#: The key the tags put in the URLs they build (the first accepted one).
PIXEL_WRITE_KEY = PIXEL_WRITE_KEYS[0]
#: Emails rendered outside a request need it (pixel.W001 says so); pages use their request's host.
PIXEL_BASE_URL = os.environ.get("PIXEL_BASE_URL") or None
# Signing needs no setting: SECRET_KEY signs every built URL (with a salt of its own).

#: runserver's access log (the django.server logger) prints each request line, and pixel URLs
#: carry write keys: the query strings are hidden, the rest is logged as Django does.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"hide_queries": {"()": "pixel_middleware.server.serve.RedactingFilter"}},
    "formatters": {
        "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"},
    },
    "handlers": {
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server", "filters": ["hide_queries"]},
    },
    "loggers": {"django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False}},
}
