"""Renders the campaign email with no request, as a mail-sending job does; prints it."""
from typing import Any

from django.core.management.base import BaseCommand
from django.template.loader import render_to_string


class Command(BaseCommand):
    help = "print the spring-sale email for a user"

    def handle(self, *args: Any, **options: Any) -> None:
        class Campaign:
            id = "spring-sale"

        self.stdout.write(render_to_string("email.html", {"user": "u-7", "c": Campaign(),
                                                          "body": '<a href="https://shop.example.com/">shop</a>'}))
