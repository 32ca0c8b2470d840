"""Email open tracking with flask_pixel: preview an email, open it, watch the count go up.

Start it (from the repository root, after ``pip install -e ".[flask]"``)::

    python examples/flask_app/app.py

then open http://127.0.0.1:5000/ . Options: ``--host``, ``--port``. The sink
and keys come from the environment (the ``PIXEL_*`` config keys of the same
names), for example ``PIXEL_SINK=log: PIXEL_WRITE_KEY=demo-key``; with
nothing set, events are logged as JSON lines on stderr.

What it shows:

* ``/emails/<campaign>/preview`` renders an email with ``pixel_tag``; loading
  it in a browser fetches the pixel, as a mail client would. Its newsletter
  body goes through ``track_links``: each web link becomes a signed click URL
  (signed with ``SECRET_KEY``) that records ``Email Link Clicked`` and
  redirects to the shop's page, ``/shop/...``.
* a receiver of ``event_received`` counts opens per campaign, shown on
  ``/stats`` (and ``/stats.json``): opens by people and by machines (Apple
  Mail Privacy Protection, bots, prefetch: ``context.pixel.machine``)
  separately, and unique opens (recipients opened by a person at least once).
* ``flask --app examples/flask_app/app.py render-email spring-sale`` renders
  the email with no request, as a background job sending it would: the
  pixel URL then comes from ``PIXEL_BASE_URL``.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
from collections import Counter
from typing import Any, Dict, Mapping, Optional

import click
from flask import Flask, abort, jsonify, render_template, request

from flask_pixel import Pixel
from pixel_middleware import event_received
from pixel_middleware.server.serve import RedactingFilter

CAMPAIGNS: Dict[str, Dict[str, str]] = {
    "spring-sale": {"subject": "Spring sale: 20% off everything", "body": "Our spring sale starts today."},
    "welcome": {"subject": "Welcome aboard", "body": "Thanks for signing up & welcome!"},
}
USERS: Dict[str, Dict[str, str]] = {
    "u-1001": {"id": "u-1001", "name": "Ada"},
    "u-1002": {"id": "u-1002", "name": "Grace"},
}

#: Settings read from the environment when set there (the same names as the config keys).
ENVIRONMENT_KEYS = (
    "PIXEL_SINK", "PIXEL_WRITE_KEY", "PIXEL_WRITE_KEYS", "PIXEL_BASE_URL", "PIXEL_URL_DIALECT", "SECRET_KEY",
    "PIXEL_MACHINE_EVENTS", "PIXEL_DEDUP", "PIXEL_IP", "PIXEL_PRIVACY_SIGNALS",
)

pixel = Pixel()


class OpenCounter:
    """Counts ``Email Opened`` events per campaign; receivers run on request threads, hence the lock.

    An open by a machine (``context.pixel.machine``: Apple's MPP proxy
    fetching every image, a bot, a prefetch) is counted apart from an open
    by a person; unique opens are the recipients a person opened for.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._machines: Counter = Counter()
        self._readers: Dict[str, set] = {}

    def __call__(self, sender: Flask, event: Mapping[str, Any], **extra: Any) -> None:
        if event.get("event") == "Email Opened":
            campaign = (event.get("properties") or {}).get("campaign_id")
            if campaign is not None:
                machine = event.get("context", {}).get("pixel", {}).get("machine", False)
                reader = event.get("userId") or event.get("anonymousId")
                with self._lock:
                    self._counts[str(campaign)] += 1
                    if machine:
                        self._machines[str(campaign)] += 1
                    else:
                        self._readers.setdefault(str(campaign), set()).add(reader)

    def counts(self) -> Dict[str, int]:
        """All opens per campaign."""
        with self._lock:
            return dict(self._counts)

    def breakdown(self) -> Dict[str, Dict[str, int]]:
        """Per campaign: opens by ``people``, by ``machines``, and ``unique`` opens by people."""
        with self._lock:
            return {
                campaign: {
                    "people": total - self._machines[campaign],
                    "machines": self._machines[campaign],
                    "unique": len(self._readers.get(campaign, ())),
                }
                for campaign, total in self._counts.items()
            }


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """The app factory: defaults, then the environment, then ``config`` (tests pass a sink here)."""
    # The email's images (static/) are served where its links lead, under the shop's pages.
    app = Flask(__name__, static_url_path="/shop/static")
    # SECRET_KEY signs the pixel and click URLs too: set a real one (environment) outside a demo.
    app.config.update(
        PIXEL_SINK="log:", PIXEL_WRITE_KEY="demo-key", PIXEL_BASE_URL="http://127.0.0.1:5000", SECRET_KEY="demo-only-secret"
    )
    app.config.update({key: os.environ[key] for key in ENVIRONMENT_KEYS if key in os.environ})
    app.config.update(config or {})
    pixel.init_app(app)

    counter = OpenCounter()
    app.extensions["open_counter"] = counter
    # connect_via keeps a strong reference to the receiver, so a closure works too;
    # the sender is the app, so another app's opens are not counted here.
    event_received.connect_via(app)(counter)

    @app.get("/")
    def index() -> str:
        return render_template("index.html", campaigns=CAMPAIGNS, users=USERS)

    @app.get("/emails/<campaign>/preview")
    def preview(campaign: str) -> str:
        if campaign not in CAMPAIGNS:
            abort(404)
        user = USERS.get(request.args.get("user", "u-1001"))
        return render_email_html(campaign, user)

    def render_email_html(campaign: str, user: Optional[Mapping[str, str]]) -> str:
        # The shop's links are absolute, from the configured base URL (never the request's Host).
        shop_url = app.config["PIXEL_BASE_URL"].rstrip("/") + "/shop"
        return render_template(
            "email.html", campaign_id=campaign, campaign=CAMPAIGNS[campaign], user=user, shop_url=shop_url
        )

    @app.get("/shop/")
    @app.get("/shop/<path:page>")
    def shop(page: str = "") -> str:
        """Where the newsletter's links lead: a stand-in for the shop's own pages."""
        return render_template("shop.html", page=page)

    @app.get("/stats")
    def stats() -> str:
        return render_template("stats.html", counts=counter.counts(), breakdown=counter.breakdown(), campaigns=CAMPAIGNS)

    @app.get("/stats.json")
    def stats_json() -> Any:
        return jsonify(counter.counts())

    @app.get("/stats/opens.json")
    def opens_json() -> Any:
        return jsonify(counter.breakdown())

    @app.cli.command("render-email")
    @click.argument("campaign")
    @click.option("--user", default="u-1001")
    def render_email(campaign: str, user: str) -> None:
        """Print a campaign's email as a background job would render it: no request."""
        click.echo(render_email_html(campaign, USERS[user]))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="flask_pixel example: email open tracking")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    config = {}
    if "PIXEL_BASE_URL" not in os.environ:
        config["PIXEL_BASE_URL"] = f"http://{args.host}:{args.port}"
    # werkzeug's access log prints each request line, and pixel URLs carry write keys: hidden.
    logging.getLogger("werkzeug").addFilter(RedactingFilter())
    create_app(config).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
