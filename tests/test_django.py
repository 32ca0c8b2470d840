"""A real Django project wrapped in PixelMiddleware: pixels are caught, Django's pages still answer."""
from __future__ import annotations

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from werkzeug.test import Client  # noqa: E402

from pixel_middleware import MemorySink, PixelMiddleware, build_pixel_url  # noqa: E402

django_hits = []


def home(request):
    django_hits.append(request.path)
    return HttpResponse(f"django home {request.GET.get('q', '')}")


def shadowed(request):
    django_hits.append(request.path)
    return HttpResponse("django answered a pixel route")


def echo(request):
    django_hits.append(request.path)
    return JsonResponse({"method": request.method, "body": request.body.decode()})


urlpatterns = [
    path("", home),
    path("api/echo", echo),
    path("v1/pixel/track", shadowed),
]


@pytest.fixture(scope="module")
def django_app():
    overrides = dict(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        USE_TZ=True,
    )
    from django.test.utils import override_settings

    if not settings.configured:
        settings.configure(INSTALLED_APPS=[], **overrides)
        django.setup()
    # Configured already (tests/django set up its project in this process): this module's URLs and middleware.
    with override_settings(**overrides):
        from django.core.wsgi import get_wsgi_application

        yield get_wsgi_application()


def test_django_wrapped(django_app):
    sink = MemorySink()
    client = Client(PixelMiddleware(django_app, sink=sink, write_keys={"k"}))
    django_hits.clear()

    response = client.get(build_pixel_url("http://localhost", "Email Opened", user_id="u1", write_key="k"))
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert [e["event"] for e in sink.events] == ["Email Opened"]
    assert django_hits == []  # the pixel never reached Django, although Django has a view there

    response = client.get("/?q=hello")
    assert response.status_code == 200 and response.text == "django home hello"
    response = client.post("/api/echo", data=b"payload", content_type="text/plain")
    assert response.json == {"method": "POST", "body": "payload"}
    assert client.get("/missing").status_code == 404
    assert client.get("/v1/pixel/trackers").status_code == 404  # Django's 404, not a pixel
    assert django_hits == ["/", "/api/echo"]
    assert len(sink.events) == 1
