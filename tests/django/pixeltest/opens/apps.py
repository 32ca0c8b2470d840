from django.apps import AppConfig


class OpensConfig(AppConfig):
    """The test project's management command (``send_campaign``); the model is the example's ``campaigns``."""

    name = "pixeltest.opens"
    label = "opens"
