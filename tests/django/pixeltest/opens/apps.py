from django.apps import AppConfig


class OpensConfig(AppConfig):
    name = "pixeltest.opens"
    label = "opens"

    def ready(self) -> None:
        from pixel_middleware import event_received
        from pixel_middleware.django import PixelMiddleware

        from .models import count_open

        event_received.connect(count_open, sender=PixelMiddleware)
