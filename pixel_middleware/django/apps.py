"""The app: ``"pixel_middleware.django"`` in ``INSTALLED_APPS`` gives ``{% load pixel %}`` and the system checks."""
from __future__ import annotations

from django.apps import AppConfig


class PixelConfig(AppConfig):
    """Registers the system checks, and rebuilds the shared collector when a test overrides a setting it reads."""

    name = "pixel_middleware.django"
    label = "pixel"
    verbose_name = "Tracking pixels"

    def ready(self) -> None:
        from django.core import checks
        from django.core.signals import setting_changed

        from . import checks as pixel_checks
        from .middleware import reset_on_change

        checks.register(pixel_checks.check_settings, checks.Tags.compatibility)
        checks.register(pixel_checks.check_middleware_order, checks.Tags.compatibility)
        setting_changed.connect(reset_on_change, dispatch_uid="pixel_middleware.django.reset")
