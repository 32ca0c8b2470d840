"""One page, carrying a pixel built with pixel_middleware.build_pixel_url."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import format_html

from pixel_middleware import build_pixel_url
def home(request: HttpRequest) -> HttpResponse:
    url = build_pixel_url(
        request.build_absolute_uri("/"), "Home", type="page", anonymous_id="django-visitor",
        write_key=settings.PIXEL_WRITE_KEYS[0],
    )
    # format_html escapes the URL: & becomes &amp; in the attribute.
    return HttpResponse(format_html('<!doctype html><h1>Django behind PixelMiddleware</h1>'
                                    '<img src="{}" width="1" height="1" alt="" hidden>', url))


urlpatterns = [path("", home)]
