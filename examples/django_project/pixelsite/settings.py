"""Settings of the example: no database, no apps, one view; the pixel settings at the end."""
from __future__ import annotations

import os

SECRET_KEY = "example-only-not-secret"
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "pixelsite.urls"
WSGI_APPLICATION = "pixelsite.wsgi.application"
INSTALLED_APPS: list = []
DATABASES: dict = {}
USE_TZ = True

#: Where events go: a sink URL (log:, kafka://host:9092/topic, https://...), read by wsgi.py.
PIXEL_SINK = os.environ.get("PIXEL_SINK", "log:")
#: The write keys the pixel routes accept.
PIXEL_WRITE_KEYS = [key.strip() for key in os.environ.get("PIXEL_WRITE_KEYS", "demo-key").split(",") if key.strip()]

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
