"""``pixel-middleware serve`` runs a standalone collector; ``url`` builds a pixel URL; ``decode`` explains one.

Both take ``--signing-key``, by default ``PIXEL_SIGNING_KEY`` from the
environment (better there than on a command line, which other users of the
machine can read).

``serve`` wraps a 404 app in :class:`~pixel_middleware.PixelMiddleware` and
serves it with werkzeug's threaded server: right for trying things out and
for small loads. In production, serve ``pixel_middleware.cli:make_app()``
with a WSGI server such as gunicorn, or wrap your own app.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional

from .middleware import PixelMiddleware
from .urls import build_click_url, build_pixel_url


def make_app(sink: Optional[List[str]] = None, write_keys: Optional[List[str]] = None,
             dialects: Optional[List[str]] = None, prefix: str = "", signing_key: Optional[str] = None,
             signing_key_fallbacks: Optional[List[str]] = None, require_signature: bool = False,
             signature_max_age: Optional[float] = None,
             click_allowed_hosts: Optional[List[str]] = None, machine_events: str = "keep",
             dedup: Optional[str] = None, ip: str = "full", privacy_signals: str = "anonymize",
             dnt: bool = False) -> PixelMiddleware:
    """A collector with nothing behind it: pixel routes answer, everything else is 404."""
    return PixelMiddleware(None, sink=sink or None, write_keys=write_keys or None,
                           dialects=dialects or None, prefix=prefix, signing_key=signing_key or None,
                           signing_key_fallbacks=signing_key_fallbacks or (), require_signature=require_signature,
                           signature_max_age=signature_max_age, click_allowed_hosts=click_allowed_hosts,
                           machine_events=machine_events, dedup=dedup, ip=ip, privacy_signals=privacy_signals,
                           dnt=dnt)


def _serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # werkzeug's access log prints whole URLs, and pixel URLs carry write keys.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = make_app(args.sink, args.write_key, args.dialect, args.prefix, args.signing_key,
                   args.signing_key_fallback, args.require_signature, args.signature_max_age,
                   args.click_allowed_host, args.machine_events, args.dedup, args.ip, args.privacy_signals,
                   args.dnt)
    print(f"pixel collector on http://{args.host}:{args.port}/ (sink: {app.sink!r})", file=sys.stderr, flush=True)
    try:
        run_simple(args.host, args.port, app, threaded=True)
    finally:
        app.close(timeout=10)
    return 0


def _url(args: argparse.Namespace) -> int:
    properties = dict(item.split("=", 1) for item in args.property)
    if args.click:
        print(build_click_url(args.base_url, args.click, args.event or "Email Link Clicked", user_id=args.user_id,
                              anonymous_id=args.anonymous_id, properties=properties or None,
                              write_key=args.write_key, signing_key=args.signing_key or None))
        return 0
    print(build_pixel_url(args.base_url, args.event, type=args.type, user_id=args.user_id,
                          anonymous_id=args.anonymous_id, properties=properties or None,
                          write_key=args.write_key, dialect=args.dialect, signing_key=args.signing_key or None))
    return 0


def _decode(args: argparse.Namespace) -> int:
    """Run ``args.url`` through the collector's pipeline into memory: nothing is sent anywhere."""
    from urllib.parse import urlsplit

    from werkzeug.test import EnvironBuilder

    from .collector import Collector
    from .signals import event_rejected
    from .sinks import MemorySink

    collector = Collector(sink=MemorySink(), dialects=args.dialect or None,
                          write_keys=args.write_key or None, prefix=args.prefix)
    parts = urlsplit(args.url)
    environ = EnvironBuilder(path=parts.path or "/", query_string=parts.query,
                             base_url=f"{parts.scheme or 'http'}://{parts.netloc or 'localhost'}").get_environ()
    match = collector.match(environ["PATH_INFO"])
    if match is None:
        print("not_a_pixel_route: no dialect answers this path", file=sys.stderr)
        return 1
    rejected: List[str] = []

    def note(sender: object, reason: str, detail: str, **_: object) -> None:
        rejected.append(f"{reason}: {detail}")

    event_rejected.connect(note, sender=collector)
    # The verdict goes to stdout/stderr below; the collector's own warning would repeat it.
    log = logging.getLogger("pixel_middleware")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        event = collector.collect(environ, match)
    finally:
        log.setLevel(level)
        event_rejected.disconnect(note, sender=collector)
        collector.close(timeout=1)
    if event is None:
        print(rejected[0] if rejected else "rejected", file=sys.stderr)
        return 1
    print(json.dumps(event, indent=2, sort_keys=True, default=str))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pixel-middleware", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a pixel collector")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--sink", action="append", help="sink URL, repeatable (default: log:)")
    serve.add_argument("--write-key", action="append", help="accepted write key, repeatable (default: any)")
    serve.add_argument("--dialect", action="append", help="dialect to answer, repeatable (default: all)")
    serve.add_argument("--prefix", default="", help="mount the pixel routes under this path")
    serve.add_argument("--signing-key", default=os.environ.get("PIXEL_SIGNING_KEY"),
                       help="verify signed URLs with this key (default: $PIXEL_SIGNING_KEY)")
    serve.add_argument("--signing-key-fallback", action="append", help="an older key still accepted, repeatable")
    serve.add_argument("--require-signature", action="store_true", help="reject unsigned URLs")
    serve.add_argument("--signature-max-age", type=float, help="reject URLs signed longer ago (seconds)")
    serve.add_argument("--click-allowed-host", action="append",
                       help="host /v1/click redirects to without a signature, repeatable (*.example.com: subdomains)")
    serve.add_argument("--machine-events", choices=("keep", "drop"), default="keep",
                       help="record fetches by machines (Apple MPP, bots, prefetch) flagged, or drop them")
    serve.add_argument("--dedup", help="one event per message: a window in seconds (in memory) or a redis:// URL")
    serve.add_argument("--ip", choices=("full", "anonymize", "drop"), default="full", help="how much of the client address to keep")
    serve.add_argument("--privacy-signals", choices=("anonymize", "drop", "ignore"), default="anonymize",
                       help="what a request with Sec-GPC: 1 gets")
    serve.add_argument("--dnt", action="store_true", help="treat DNT: 1 like Sec-GPC: 1")
    serve.set_defaults(run=_serve)

    url = commands.add_parser("url", help="print a pixel URL")
    url.add_argument("base_url")
    url.add_argument("event", nargs="?")
    url.add_argument("--type", default="track")
    url.add_argument("--user-id")
    url.add_argument("--anonymous-id")
    url.add_argument("--write-key", required=True)
    url.add_argument("--dialect", default="compact")
    url.add_argument("-p", "--property", action="append", default=[], metavar="KEY=VALUE")
    url.add_argument("--signing-key", default=os.environ.get("PIXEL_SIGNING_KEY"),
                     help="sign the URL with this key (default: $PIXEL_SIGNING_KEY)")
    url.add_argument("--click", metavar="TARGET_URL", help="build a click URL redirecting here instead of a pixel URL")
    url.set_defaults(run=_url)

    decode = commands.add_parser("decode", help="print the event a pixel URL decodes to, sending nothing")
    decode.add_argument("url")
    decode.add_argument("--write-key", action="append", help="accepted write key, repeatable (default: any)")
    decode.add_argument("--dialect", action="append", help="dialect to answer, repeatable (default: all)")
    decode.add_argument("--prefix", default="", help="the pixel routes' mount prefix")
    decode.set_defaults(run=_decode)

    args = parser.parse_args(argv)
    if getattr(args, "require_signature", False) and not args.signing_key:
        parser.error("--require-signature needs --signing-key or PIXEL_SIGNING_KEY")
    return args.run(args)
