"""The test project: the app, its middleware first, the example's opens counter; overrides from PIXEL_TEST_SETTINGS (JSON).

The model and receiver counting opens per campaign are the example project's
own ``campaigns`` app (examples/django_project), so these tests run it.
"""
import json
import os
import sys
import tempfile

_EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "django_project")
if os.path.abspath(_EXAMPLE) not in sys.path:
    sys.path.append(os.path.abspath(_EXAMPLE))

SECRET_KEY = "test-secret-key-not-for-production"
SECRET_KEY_FALLBACKS: list = []
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
ROOT_URLCONF = "pixeltest.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "pixel_middleware.django",
    "campaigns",
    "pixeltest.opens",
]
MIDDLEWARE = [
    "pixel_middleware.django.PixelMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [os.path.join(os.path.dirname(__file__), "templates")],
    "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ.get("PIXEL_TEST_DB") or os.path.join(tempfile.mkdtemp(prefix="pixeltest-"), "db.sqlite3"),
}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
WSGI_APPLICATION = "pixeltest.wsgi.application"

PIXEL_SINK = os.environ.get("PIXEL_TEST_SINK", "memory:")
PIXEL_WRITE_KEY = "site-key"
PIXEL_BASE_URL = "https://mail.example.com"
PIXEL_CLICK_ALLOWED_HOSTS = ["allowed.example.com"]

for _name, _value in json.loads(os.environ.get("PIXEL_TEST_SETTINGS", "{}")).items():
    if _value is None:
        globals().pop(_name, None)
    else:
        globals()[_name] = _value
