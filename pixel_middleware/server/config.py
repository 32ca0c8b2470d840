"""serve's options: its flags, the ``PIXEL_*`` environment, and what of them may be shown.

Every option has a flag and an environment variable named like the Flask
config key (``--sink`` and ``PIXEL_SINK``, ``--write-key`` and
``PIXEL_WRITE_KEYS``...); lists in the environment are comma-separated, and
a flag wins over the environment. Values are checked by the options table
(:mod:`pixel_middleware.options`), so a flag and its variable fail alike.
Secrets never leave here unmasked: ``--print-config`` masks them, and error
text and server logs pass through :func:`masked` and :class:`RedactingFilter`.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any, Dict, Iterable, Optional, Tuple

from .. import options as table
from ..options import OPTIONS, Option
from ..sinks.base import url_label

_MASK = "********"
#: serve's options: every row with a flag, the collector's and the server's own.
SERVE_OPTIONS: Tuple[Option, ...] = tuple(o for o in OPTIONS if o.flag)
#: Defaults of serve's own where the library's differ: metrics on, a worker a core.
_DEFAULTS = {"metrics": True}


def _default_workers() -> int:
    return os.cpu_count() or 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every option, defaulting to ``None`` so that the environment can fill what is not given.

    Values are taken as text and checked by the options table, as the
    environment's are, so a flag and its variable fail the same way. Each
    help line names the option's variable: ``serve --help`` is where an
    operator looks for it.
    """
    for option in SERVE_OPTIONS:
        _add_argument(parser, option)
    parser.add_argument("--dev", action="store_true", help="werkzeug's reloading development server instead of granian")
    parser.add_argument("--print-config", action="store_true", help="print the effective configuration and exit")


def _add_argument(parser: argparse.ArgumentParser, option: Option) -> None:
    default = table.default_text(option, serve=True).replace("`", "")
    kwargs: Dict[str, Any] = {"dest": option.name, "default": None,
                              "help": f"{option.doc.replace('`', '')} (default: {default}; ${option.env})"}
    if option.kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif option.kind in ("sink", "write_keys", "dialects", "secrets", "hosts"):
        kwargs["action"] = "append"
    if option.choices:
        kwargs["metavar"] = "{" + ",".join(option.choices) + "}"
    parser.add_argument(option.flag, **kwargs)


# -- serve's options in other commands (decode, url) -----------------------------------


def add_shared_arguments(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add the flags of serve's options ``names`` to another command's ``parser``, as serve has them."""
    for name in names:
        _add_argument(parser, table.option(name))


def resolve_shared(args: argparse.Namespace, names: Iterable[str],
                   environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The values of serve's options ``names``, read and checked as serve reads them (flag, else variable).

    Raises :class:`ValueError` naming the flag and variable, never the value.
    """
    wanted = set(names)
    return {name: value for name, (value, _) in resolve(args, environ, wanted).items() if name in wanted}


def resolve(args: argparse.Namespace, environ: Optional[Dict[str, str]] = None,
             names: Optional[Iterable[str]] = None) -> Dict[str, Tuple[Any, str]]:
    """Each option's value and where it came from (``flag``, ``env`` or ``default``); flags win.

    Every value goes through the options table (:func:`pixel_middleware.options.resolve`):
    a blank or bad one is a :class:`ValueError` naming the flag and the variable.
    ``names``: read only these from the flags and environment (another command's).
    """
    environ = os.environ if environ is None else environ
    given: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    for option in SERVE_OPTIONS:
        if names is not None and option.name not in names:
            continue
        value = getattr(args, option.name, None)
        if value is not None:
            given[option.name], sources[option.name] = value, "flag"
        elif environ.get(option.env) is not None:
            given[option.name], sources[option.name] = environ[option.env], "env"
    settings = table.resolve(given, ("pipeline", "server"), label=table.serve_label,
                             defaults={**_DEFAULTS, "workers": _default_workers()})
    return {o.name: (settings[o.name], sources.get(o.name, "default")) for o in SERVE_OPTIONS}


def _shown(option: Option, value: Any) -> str:
    if value is None or value == []:
        return "unset"
    if option.secret:
        return ", ".join(_MASK for _ in value) if isinstance(value, list) else _MASK
    if option.name == "sink":
        return ", ".join(url_label(url) for url in value)
    if option.name == "dedup" and isinstance(value, str):
        return url_label(value)  # redis://:password@host
    if option.name == "dialects":
        return ", ".join(dialect.name for dialect in value)
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def masked(text: str, settings: Dict[str, Any]) -> str:
    """``text`` (an error's) with every configured URL shown as its label and every secret value hidden."""
    for url in [*(settings.get("sink") or []), settings.get("dedup") or ""]:
        if isinstance(url, str) and url:
            text = text.replace(url, url_label(url))
    for option in SERVE_OPTIONS:
        value = settings.get(option.name)
        if option.secret and value:
            for secret in value if isinstance(value, list) else [value]:
                text = text.replace(secret, _MASK)
    return text


def print_config(settings: Dict[str, Tuple[Any, str]], out: Any = None) -> None:
    """The effective configuration, one option a line: variable, value (secrets masked), source."""
    out = out or sys.stdout
    for option in SERVE_OPTIONS:
        value, source = settings[option.name]
        print(f"{option.env:<30} {_shown(option, value):<40} ({source})", file=out)


class RedactingFilter(logging.Filter):
    """Hides write keys in a server's log: a malformed request line holding one is logged whole.

    Most dialects carry the key in the query string; mParticle's carries it in
    the path (``/v1/{api_key}/Pixel``), which is hidden too. Public, for any
    development server's access log (the examples' use it).
    """

    #: A query has at least one character: "Perhaps out of memory?" (a killed worker) hides nothing.
    _QUERY = re.compile(r"\?[^\s'\"]+")
    _PATH_KEY = re.compile(r"/v1/[^/\s'\"?]+/Pixel", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message or "/v1/" in message:
            message = self._PATH_KEY.sub("/v1/[key hidden]/Pixel", message)
            record.msg, record.args = self._QUERY.sub("?[query hidden]", message), None
        return True


def address(host: str, port: int) -> str:
    """``host:port`` as a URL reads it: an IPv6 address (``::1``, ``::``) in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
