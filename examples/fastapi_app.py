"""Email open and click tracking in a FastAPI app: ``PixelASGIMiddleware`` and the Jinja template helpers.

Start it (from the repository root, after ``pip install -e ".[test]"``, or
``pip install -e . fastapi uvicorn jinja2``)::

    python examples/fastapi_app.py

then open http://127.0.0.1:8000/ and preview an email. ``--host`` and
``--port`` change where it listens; ``uvicorn --app-dir examples
fastapi_app:app`` serves the same app (its URLs then use ``PIXEL_BASE_URL``,
default http://127.0.0.1:8000). Environment: ``PIXEL_SINK`` (a sink URL,
default ``log:``: JSON lines on stderr), ``PIXEL_WRITE_KEY`` (default
``demo-key``), ``PIXEL_SIGNING_KEY`` (signs the pixel and click URLs;
default a demo key: set a real one outside a demo), ``PIXEL_BASE_URL``.

What it shows:

* ``app.add_middleware(PixelASGIMiddleware, ...)``: the pixel and click
  routes answer before FastAPI routes anything; every other path is
  FastAPI's (an unknown one gets FastAPI's JSON 404). At shutdown (Ctrl+C,
  SIGTERM) the lifespan closes the sink.
* ``/emails/{campaign}/preview`` renders an email from a Jinja template with
  ``pixel_tag`` and ``track_links``, put on ``Jinja2Templates(...).env`` by
  :func:`pixel_middleware.templates.install`: the same URLs the Flask
  extension builds, signed, from ``PIXEL_BASE_URL`` (an email must not take
  its links from the request's ``Host``).
* a receiver of ``event_received`` counts opens per campaign
  (``/stats.json``); ``sender=app`` makes the FastAPI app the signals'
  sender, so ``connect_via(app)`` hears this app's pixels only.
* uvicorn's access log prints each request's query string, and pixel URLs
  carry write keys: :data:`LOG_CONFIG` hides them.
"""
from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Any, Dict, Mapping

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import DictLoader, Environment, select_autoescape

from pixel_middleware import PixelASGIMiddleware, event_received
from pixel_middleware.templates import install

CAMPAIGNS: Dict[str, Dict[str, str]] = {
    "spring-sale": {"subject": "Spring sale: 20% off everything", "body": "Our spring sale starts today."},
    "welcome": {"subject": "Welcome aboard", "body": "Thanks for signing up & welcome!"},
}
USERS: Dict[str, Dict[str, str]] = {"u-1001": {"id": "u-1001", "name": "Ada"}, "u-1002": {"id": "u-1002", "name": "Grace"}}

#: The templates, inline so that the example is one file; a real app uses a directory (FileSystemLoader).
TEMPLATES = {
    "index.html": """<!doctype html><title>Emails</title><h1>Email previews</h1><ul>
{% for name, campaign in campaigns.items() %}{% for uid in users %}
  <li><a href="/emails/{{ name }}/preview?user={{ uid }}">{{ campaign.subject }} for {{ users[uid].name }}</a></li>
{% endfor %}{% endfor %}</ul><p><a href="/stats.json">open counts</a></p>""",
    "email.html": """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ campaign.subject }}</title></head>
<body>
  <h1>{{ campaign.subject }}</h1>
  <p>Hello {{ user.name }},</p>
  {# Every web link of the body becomes a signed click URL that records the click, then redirects. #}
  {% filter track_links(user, campaign_id=campaign_id) %}
  <p>{{ campaign.body }}</p>
  <p><a href="{{ shop_url }}/sale" id="cta">Shop the sale</a> or <a href="mailto:help@example.com">write to us</a>.</p>
  {% endfilter %}
  {# The open pixel: an absolute URL (emails need one), escaped for the attribute. #}
  {{ pixel_tag('Email Opened', user, campaign_id=campaign_id) }}
</body></html>""",
    "shop.html": """<!doctype html><title>Shop</title><h1>Shop: {{ page }}</h1>""",
}

#: uvicorn's logging with the query strings (write keys) of logged request lines hidden.
LOG_CONFIG: Dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"hide_queries": {"()": "pixel_middleware.server.serve.RedactingFilter"}},
    "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["hide_queries"],
                            "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}


def create_app(base_url: str) -> FastAPI:
    """The app, its URLs built on ``base_url`` (where readers of the email reach it)."""
    write_key = os.environ.get("PIXEL_WRITE_KEY", "demo-key")
    signing_key = os.environ.get("PIXEL_SIGNING_KEY", "demo-only-secret")
    app = FastAPI(title="pixel-middleware FastAPI example")
    # The routes accept the key the templates put in URLs, and check the signature they add.
    app.add_middleware(PixelASGIMiddleware, sink=os.environ.get("PIXEL_SINK", "log:"), write_keys=[write_key],
                       signing_key=signing_key, sender=app)
    templates = Jinja2Templates(env=Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape()))
    install(templates.env, base_url=base_url, write_key=write_key, signing_key=signing_key)

    opens: Counter = Counter()

    @event_received.connect_via(app)
    def count_open(sender: FastAPI, event: Mapping[str, Any], **extra: Any) -> None:
        # Runs on the event loop, as the pipeline does: quick work only.
        if event.get("event") == "Email Opened":
            opens[str((event.get("properties") or {}).get("campaign_id"))] += 1

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Any:
        return templates.TemplateResponse(request, "index.html", {"campaigns": CAMPAIGNS, "users": USERS})

    @app.get("/emails/{campaign}/preview", response_class=HTMLResponse)
    def preview(request: Request, campaign: str, user: str = "u-1001") -> Any:
        if campaign not in CAMPAIGNS or user not in USERS:
            raise HTTPException(status_code=404, detail="no such campaign or user")
        context = {"campaign_id": campaign, "campaign": CAMPAIGNS[campaign], "user": USERS[user],
                   "shop_url": f"{base_url}/shop"}
        return templates.TemplateResponse(request, "email.html", context)

    @app.get("/shop/{page}", response_class=HTMLResponse)
    def shop(request: Request, page: str) -> Any:
        """Where the email's links lead: a stand-in for the shop's own pages."""
        return templates.TemplateResponse(request, "shop.html", {"page": page})

    @app.get("/stats.json")
    def stats() -> Dict[str, int]:
        return dict(opens)

    return app


app = create_app(os.environ.get("PIXEL_BASE_URL", "http://127.0.0.1:8000").rstrip("/"))


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="PixelASGIMiddleware example: email open and click tracking")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    base_url = os.environ.get("PIXEL_BASE_URL", f"http://{args.host}:{args.port}").rstrip("/")
    uvicorn.run(create_app(base_url), host=args.host, port=args.port, log_config=LOG_CONFIG)


if __name__ == "__main__":
    main()
