"""``pixel-middleware serve`` runs a standalone collector; ``url`` builds a pixel URL; ``decode`` explains one.

``serve`` runs the collector on granian, configured by flags or ``PIXEL_*``
variables (see :mod:`pixel_middleware.server.serve`). ``url`` takes
``--signing-key``, by default ``PIXEL_SIGNING_KEY`` from the environment
(better there than on a command line, which other users of the machine can
read). ``decode`` takes serve's signature options, read and checked as
serve reads them, so that its verdict is the routes' verdict.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from ..pipeline.urls import build_click_url, build_pixel_url

#: What ``--help`` says of the program: plain text (argparse prints it as it is).
DESCRIPTION = ("Tracking-pixel collector tools: 'serve' runs a standalone collector, 'url' builds a pixel "
               "or click URL, 'decode' shows what a pixel URL records.")
#: serve's options that decode takes too, so that it gives the verdict the routes would give.
DECODE_OPTIONS = ("signing_key", "signing_key_fallbacks", "require_signature", "signature_max_age")
#: serve's options that url takes: its key, and the hosts --click may lead to unsigned (else refused, as the route would).
URL_OPTIONS = ("signing_key", "click_allowed_hosts")


def _fail(command: str, message: str) -> int:
    """One line on stderr and exit status 2, as argparse answers a bad argument."""
    print(f"pixel-middleware {command}: {message}", file=sys.stderr)
    return 2


def _url(args: argparse.Namespace) -> int:
    from . import config

    base = urlsplit(args.base_url)
    if base.scheme not in ("http", "https") or not base.netloc:
        # Not echoed: a base URL may carry credentials. A relative one suits a web page, never an email.
        return _fail("url", "the base URL must be absolute, http:// or https://, such as https://example.com")
    for item in args.property:
        if "=" not in item:
            return _fail("url", "-p/--property takes KEY=VALUE")
    properties = dict(item.split("=", 1) for item in args.property)
    try:
        shared = config.resolve_shared(args, URL_OPTIONS)  # a blank key is refused here, named as given
        if args.click:
            url = build_click_url(args.base_url, args.click, args.event or "Email Link Clicked", user_id=args.user_id,
                                  anonymous_id=args.anonymous_id, properties=properties or None,
                                  write_key=args.write_key, signing_key=shared["signing_key"],
                                  allowed_hosts=shared["click_allowed_hosts"])
        else:
            url = build_pixel_url(args.base_url, args.event, type=args.type, user_id=args.user_id,
                                  anonymous_id=args.anonymous_id, properties=properties or None,
                                  write_key=args.write_key, dialect=args.dialect, signing_key=shared["signing_key"])
    except ValueError as error:  # what the builder cannot build, named by setting (never a key)
        return _fail("url", str(error))
    print(url)
    return 0


def _decode(args: argparse.Namespace) -> int:
    """Run ``args.url`` through the collector's pipeline into memory: nothing is sent anywhere."""
    from . import config
    from .explain import explain

    try:
        signing: Dict[str, Any] = config.resolve_shared(args, DECODE_OPTIONS)
    except ValueError as error:
        return _fail("decode", str(error))
    event, reason = explain(args.url, dialects=args.dialect or None, write_keys=args.write_key or None,
                            prefix=args.prefix, **signing)
    if event is None:
        print(reason, file=sys.stderr)
        return 1
    print(json.dumps(event, indent=2, sort_keys=True, default=str))
    return 0


def _options(args: argparse.Namespace) -> int:
    from ..options import markdown

    print("\n\n".join(markdown(table) for table in args.table or ["config", "serve"]))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from . import config
    from .serve import serve as run_serve

    from .._version import __version__

    parser = argparse.ArgumentParser(prog="pixel-middleware", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a pixel collector (granian; --dev: werkzeug)",
                                description="Run a standalone pixel collector on granian (--dev: werkzeug's "
                                            "reloading server). Every flag has a PIXEL_* environment variable; "
                                            "a flag wins over it.")
    config.add_arguments(serve)
    serve.set_defaults(run=run_serve)

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
    url.add_argument("--click", metavar="TARGET_URL", help="build a click URL redirecting here instead of a pixel URL; "
                     "unsigned, its host must be one the collector allows")
    config.add_shared_arguments(url, URL_OPTIONS)
    url.set_defaults(run=_url)

    decode = commands.add_parser("decode", help="print the event a pixel URL decodes to, sending nothing",
                                 description="Print the event a pixel URL records (exit 0), or why the collector "
                                             "would reject it (exit 1), sending nothing anywhere.")
    decode.add_argument("url")
    decode.add_argument("--write-key", action="append", help="accepted write key, repeatable (default: any)")
    decode.add_argument("--dialect", action="append", help="dialect to answer, repeatable (default: all)")
    decode.add_argument("--prefix", default="", help="the pixel routes' mount prefix")
    config.add_shared_arguments(decode, DECODE_OPTIONS)
    decode.set_defaults(run=_decode)

    options = commands.add_parser("options", help="print the options table (Markdown), as the README shows it")
    options.add_argument("table", nargs="*", choices=["config", "serve"], help="config keys, or serve's flags")
    options.set_defaults(run=_options)

    args = parser.parse_args(argv)
    return args.run(args)
