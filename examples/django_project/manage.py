#!/usr/bin/env python
"""A minimal Django project using the app: pixel_middleware.django in INSTALLED_APPS, its middleware first.

Start it (from the repository root, after ``pip install -e . django``)::

    python examples/django_project/manage.py migrate && python examples/django_project/manage.py runserver

``runserver`` serves ``WSGI_APPLICATION`` (``pixelsite.wsgi.application``),
so the pixel routes answer there exactly as under gunicorn or uWSGI with
``pixelsite.wsgi:application``. Open http://127.0.0.1:8000/ : the page
carries a pixel, and its event is logged on stderr as one JSON line.
Environment: ``PIXEL_SINK`` (default ``log:``), ``PIXEL_WRITE_KEYS``
(comma-separated; default ``demo-key``).
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pixelsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
