from typing import Any

from django.db import models
from django.db.models import F


class CampaignOpens(models.Model):
    campaign_id = models.CharField(max_length=100, unique=True)
    opens = models.IntegerField(default=0)


def count_open(sender: Any, event: dict, **kwargs: Any) -> None:
    """event_received receiver: one more open for the event's campaign."""
    campaign = (event.get("properties") or {}).get("campaign_id")
    if event.get("event") == "Email Opened" and campaign:
        CampaignOpens.objects.get_or_create(campaign_id=str(campaign))
        CampaignOpens.objects.filter(campaign_id=str(campaign)).update(opens=F("opens") + 1)
