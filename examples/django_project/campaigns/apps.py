from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self) -> None:
        from pixel_middleware import event_received
        from pixel_middleware.django import PixelMiddleware

        from .models import count_open

        # The sender of every event the Django middleware accepts is its class.
        event_received.connect(count_open, sender=PixelMiddleware)
