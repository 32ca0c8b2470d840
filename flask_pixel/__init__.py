"""Flask extension: pixel routes on a Flask app, and Jinja helpers that build pixel URLs.

::

    from flask import Flask
    from flask_pixel import Pixel

    app = Flask(__name__)
    app.config["PIXEL_WRITE_KEY"] = "my-key"
    pixel = Pixel(app)          # or Pixel() and pixel.init_app(app) in a factory

and in any template, also one rendered with no request (a Celery task
building an email)::

    {{ pixel_tag('Email Opened', user, campaign_id=campaign.id) }}

The extension reads ``PIXEL_*`` config and calls :mod:`pixel_middleware`; it
decodes nothing and builds no URL itself. The routes run the same
:class:`~pixel_middleware.Collector` as :class:`~pixel_middleware.PixelMiddleware`,
the helpers are the same :class:`~pixel_middleware.templates.TemplateHelpers`
every front door gives its templates, so a URL built here decodes there,
and both answer with the same GIF.

The package: :mod:`.extension` (``Pixel`` and the config it reads),
:mod:`.state` (one app's collector, routes and helpers), and here the
helpers as functions of the current app, for Python code.

When not to use it: pixel routes registered on a Flask app go through the
app's ``before_request`` hooks (a site-wide login check would redirect the
pixel). Wrap ``app.wsgi_app`` in :class:`~pixel_middleware.PixelMiddleware`
instead when the pixels must bypass the app entirely.
"""
from __future__ import annotations

from typing import Any, Optional

from markupsafe import Markup

from pixel_middleware.core.events import CLICK_EVENT
from pixel_middleware.templates import user_id

from .extension import Pixel
from .state import PixelState

__all__ = ["Pixel", "PixelState", "amp_pixel", "click_url", "pixel_tag", "pixel_url", "track_links", "user_id"]


def pixel_url(event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> str:
    """The current app's ``pixel_url`` template helper, for Python code (needs an app context)."""
    return Pixel.state().pixel_url(event, user, type=type, **properties)


def pixel_tag(event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> Markup:
    """The current app's ``pixel_tag`` template helper, for Python code (needs an app context)."""
    return Pixel.state().pixel_tag(event, user, type=type, **properties)


def amp_pixel(event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> Markup:
    """The current app's ``amp_pixel`` template helper, for Python code (needs an app context)."""
    return Pixel.state().amp_pixel(event, user, type=type, **properties)


def click_url(url: str, user: Any = None, event: str = CLICK_EVENT, **properties: Any) -> str:
    """The current app's ``click_url`` template helper, for Python code (needs an app context)."""
    return Pixel.state().click_url(url, user, event, **properties)


def track_links(html: Any, user: Any = None, **properties: Any) -> Markup:
    """The current app's ``track_links`` template filter, for Python code (needs an app context)."""
    return Pixel.state().track_links(html, user, **properties)
