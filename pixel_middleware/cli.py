"""``pixel-middleware serve`` runs a standalone collector; ``url`` builds a pixel URL; ``decode`` explains one.

``serve`` runs the collector on gunicorn, configured by flags or ``PIXEL_*``
variables (see :mod:`pixel_middleware.server`). ``url`` takes
``--signing-key``, by default ``PIXEL_SIGNING_KEY`` from the environment
(better there than on a command line, which other users of the machine can
read).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from .urls import build_click_url, build_pixel_url


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
    from .explain import explain

    event, reason = explain(args.url, dialects=args.dialect or None, write_keys=args.write_key or None,
                            prefix=args.prefix)
    if event is None:
        print(reason, file=sys.stderr)
        return 1
    print(json.dumps(event, indent=2, sort_keys=True, default=str))
    return 0


def _options(args: argparse.Namespace) -> int:
    from .options import markdown

    print("\n\n".join(markdown(table) for table in args.table or ["config", "serve"]))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from . import server  # imports this module: kept out of its import time

    parser = argparse.ArgumentParser(prog="pixel-middleware", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a pixel collector (gunicorn; --dev: werkzeug)")
    server.add_arguments(serve)
    serve.set_defaults(run=server.serve)

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

    options = commands.add_parser("options", help="print the options table (Markdown), as the README shows it")
    options.add_argument("table", nargs="*", choices=["config", "serve"], help="config keys, or serve's flags")
    options.set_defaults(run=_options)

    args = parser.parse_args(argv)
    return args.run(args)
