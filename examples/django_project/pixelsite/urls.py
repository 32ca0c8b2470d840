"""The home page (its pixel and links built by {% load pixel %}) and the opens per campaign."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path

from campaigns.models import CampaignOpens


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


def stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dict(CampaignOpens.objects.values_list("campaign_id", "opens")))


urlpatterns = [path("", home), path("stats.json", stats)]
