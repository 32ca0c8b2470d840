"""The least a Django project needs to serve ``tests.asgi_apps.django_app``."""
SECRET_KEY = "django-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.asgi_apps.django_urls"
INSTALLED_APPS: list = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
USE_TZ = True
