"""A plain WSGI app with tracking pixels: no framework, only the standard library's server.

Start it (from the repository root, after ``pip install -e .``)::

    python examples/wsgi_app.py

then fetch a pixel (``--port`` and ``--host`` change where it listens)::

    curl -s -o /dev/null "http://127.0.0.1:8080/v1/pixel/track?wk=demo-key&e=Signed+Up&uid=u-1"

and the event is logged on stderr as one JSON line. Environment:
``PIXEL_SINK`` (a sink URL, default ``log:``), ``PIXEL_WRITE_KEYS``
(comma-separated, default ``demo-key``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Iterable, List
from wsgiref.simple_server import WSGIRequestHandler, make_server

from pixel_middleware import PixelMiddleware, build_pixel_url
from pixel_middleware.server.serve import RedactingFilter

WRITE_KEYS: List[str] = [k.strip() for k in os.environ.get("PIXEL_WRITE_KEYS", "demo-key").split(",") if k.strip()]


def hello(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """The app being wrapped: a page whose pixel records a page view."""
    base = f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST', 'localhost')}"
    url = build_pixel_url(base, "Hello", type="page", anonymous_id="wsgi-visitor", write_key=WRITE_KEYS[0])
    body = f'<!doctype html><h1>Hello</h1><img src="{url.replace("&", "&amp;")}" width="1" height="1" alt="">'
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [body.encode()]


application = PixelMiddleware(hello, sink=os.environ.get("PIXEL_SINK", "log:"), write_keys=WRITE_KEYS)

#: The server's access log, query strings hidden: pixel URLs carry write keys.
access_log = logging.getLogger("wsgi_app.access")
access_log.addFilter(RedactingFilter())
access_log.propagate = False
access_log.setLevel(logging.INFO)
access_log.addHandler(logging.StreamHandler(sys.stderr))


class RequestHandler(WSGIRequestHandler):
    """wsgiref's handler, logging through :data:`access_log` instead of printing whole request lines."""

    def log_message(self, format: str, *args: Any) -> None:
        access_log.info("%s - - [%s] %s", self.address_string(), self.log_date_time_string(), format % args)


def main() -> None:
    parser = argparse.ArgumentParser(description="plain WSGI app with pixel endpoints")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    with make_server(args.host, args.port, application, handler_class=RequestHandler) as server:
        print(f"serving on http://{args.host}:{args.port}/", flush=True)
        try:
            server.serve_forever()
        finally:
            application.close(timeout=10)


if __name__ == "__main__":
    main()
