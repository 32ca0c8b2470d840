"""``pixel-middleware serve`` runs a standalone collector; ``url`` builds a pixel URL; ``decode`` explains one.

``serve`` runs the collector on gunicorn, configured by flags or ``PIXEL_*``
variables (see :mod:`pixel_middleware.server`). ``url`` takes
``--signing-key``, by default ``PIXEL_SIGNING_KEY`` from the environment
(better there than on a command line, which other users of the machine can
read). ``decode`` takes serve's signature options, read and checked as
serve reads them, so that its verdict is the routes' verdict.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from .middleware import PixelMiddleware
from .urls import build_click_url, build_pixel_url

#: What ``--help`` says of the program: plain text (argparse prints it as it is).
DESCRIPTION = ("Tracking-pixel collector tools: 'serve' runs a standalone collector, 'url' builds a pixel "
               "or click URL, 'decode' shows what a pixel URL records.")
#: serve's options that decode takes too, so that it gives the verdict the routes would give.
DECODE_OPTIONS = ("signing_key", "signing_key_fallbacks", "require_signature", "signature_max_age")
#: serve's option that url --click takes, to refuse building a click URL the route would refuse.
URL_OPTIONS = ("click_allowed_hosts",)


def make_app(sink: Optional[List[str]] = None, write_keys: Optional[List[str]] = None,
             dialects: Optional[List[str]] = None, **options: Any) -> PixelMiddleware:
    """A collector with nothing behind it: pixel routes answer, everything else is 404.

    Takes :class:`~pixel_middleware.PixelMiddleware`'s keywords; ``None`` or
    an empty list leaves an option at its default.
    """
    given = {name: value for name, value in options.items() if value is not None and value != []}
    return PixelMiddleware(None, sink=sink or None, write_keys=write_keys or None, dialects=dialects or None, **given)


def _fail(command: str, message: str) -> int:
    """One line on stderr and exit status 2, as argparse answers a bad argument."""
    print(f"pixel-middleware {command}: {message}", file=sys.stderr)
    return 2


def _url(args: argparse.Namespace) -> int:
    from . import server

    base = urlsplit(args.base_url)
    if base.scheme not in ("http", "https") or not base.netloc:
        # Not echoed: a base URL may carry credentials. A relative one suits a web page, never an email.
        return _fail("url", "the base URL must be absolute, http:// or https://, such as https://example.com")
    if args.signing_key == "":
        return _fail("url", "--signing-key / PIXEL_SIGNING_KEY is empty: give a key, or leave it unset")
    for item in args.property:
        if "=" not in item:
            return _fail("url", "-p/--property takes KEY=VALUE")
    properties = dict(item.split("=", 1) for item in args.property)
    try:
        if args.click:
            hosts = server.resolve_shared(args, URL_OPTIONS)["click_allowed_hosts"]
            url = build_click_url(args.base_url, args.click, args.event or "Email Link Clicked", user_id=args.user_id,
                                  anonymous_id=args.anonymous_id, properties=properties or None,
                                  write_key=args.write_key, signing_key=args.signing_key, allowed_hosts=hosts)
        else:
            url = build_pixel_url(args.base_url, args.event, type=args.type, user_id=args.user_id,
                                  anonymous_id=args.anonymous_id, properties=properties or None,
                                  write_key=args.write_key, dialect=args.dialect, signing_key=args.signing_key)
    except ValueError as error:  # what the builder cannot build, named by setting (never a key)
        return _fail("url", str(error))
    print(url)
    return 0


def _decode(args: argparse.Namespace) -> int:
    """Run ``args.url`` through the collector's pipeline into memory: nothing is sent anywhere."""
    from . import server
    from .explain import explain

    try:
        signing: Dict[str, Any] = server.resolve_shared(args, DECODE_OPTIONS)
    except ValueError as error:
        return _fail("decode", str(error))
    if signing["require_signature"] and not signing["signing_key"]:
        return _fail("decode", "--require-signature needs --signing-key or PIXEL_SIGNING_KEY")
    event, reason = explain(args.url, dialects=args.dialect or None, write_keys=args.write_key or None,
                            prefix=args.prefix, **signing)
    if event is None:
        print(reason, file=sys.stderr)
        return 1
    print(json.dumps(event, indent=2, sort_keys=True, default=str))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from . import server  # imports this module: kept out of its import time

    from . import __version__

    parser = argparse.ArgumentParser(prog="pixel-middleware", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a pixel collector (gunicorn; --dev: werkzeug)",
                                description="Run a standalone pixel collector on gunicorn (--dev: werkzeug's "
                                            "reloading server). Every flag has a PIXEL_* environment variable; "
                                            "a flag wins over it.")
    server.add_arguments(serve)
    serve.set_defaults(run=server.serve)

    url = commands.add_parser("url", help="print a pixel URL", description="Print a pixel URL, or with --click a "
                              "click URL, that the collector at BASE_URL records.")
    url.add_argument("base_url", help="where the pixel routes are mounted: an absolute http(s) URL")
    url.add_argument("event", nargs="?")
    url.add_argument("--type", default="track")
    url.add_argument("--user-id")
    url.add_argument("--anonymous-id")
    url.add_argument("--write-key", required=True)
    url.add_argument("--dialect", default="compact")
    url.add_argument("-p", "--property", action="append", default=[], metavar="KEY=VALUE")
    url.add_argument("--signing-key", default=os.environ.get("PIXEL_SIGNING_KEY"),
                     help="sign the URL with this key (default: $PIXEL_SIGNING_KEY)")
    url.add_argument("--click", metavar="TARGET_URL", help="build a click URL redirecting here instead of a pixel URL; "
                     "unsigned, its host must be one the collector allows")
    server.add_shared_arguments(url, URL_OPTIONS)
    url.set_defaults(run=_url)

    decode = commands.add_parser("decode", help="print the event a pixel URL decodes to, sending nothing",
                                 description="Print the event a pixel URL records (exit 0), or why the collector "
                                             "would reject it (exit 1), sending nothing anywhere.")
    decode.add_argument("url")
    decode.add_argument("--write-key", action="append", help="accepted write key, repeatable (default: any)")
    decode.add_argument("--dialect", action="append", help="dialect to answer, repeatable (default: all)")
    decode.add_argument("--prefix", default="", help="the pixel routes' mount prefix")
    server.add_shared_arguments(decode, DECODE_OPTIONS)
    decode.set_defaults(run=_decode)

    args = parser.parse_args(argv)
    return args.run(args)
