"""A page rendered with its request, an email rendered without one, and a view on a pixel route (never reached)."""
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import path


class Campaign:
    id = "spring-sale"


def page(request: HttpRequest) -> HttpResponse:
    return render(request, "page.html", {"user": request.user, "c": Campaign()})


def email(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_to_string("email.html", {"user": "u-42", "c": Campaign()}))


def shadowed(request: HttpRequest) -> HttpResponse:
    return HttpResponse("django answered a pixel route", status=418)


urlpatterns = [path("", page), path("email", email), path("v1/pixel/track", shadowed)]
