"""Every option of every front door, defined once: the options table.

Why one table: the collector, the WSGI middleware, the Flask extension and
``serve`` (flags, environment, ``--print-config``) each used to read the same
options with their own defaults and checks, and a blank value that one of
them missed could switch a protection off without a word (an empty
signing-key fallback let anyone sign URLs). Here each option is one
:class:`Option` row: its Python keyword, kind, default, documentation,
``PIXEL_*`` name (the Flask/Django config key and the environment variable
alike), ``serve`` flag, and whether it is a secret. Every front door reads
the table through :func:`resolve`, which checks every value the same way:

- ``None`` is "not set": the option's default.
- A value that would weaken or silently switch off a feature is a
  :class:`ValueError` naming the option as the user wrote it (the keyword,
  the config key, or ``--flag / PIXEL_*``), never a default: a blank or
  whitespace-only signing key or fallback, a blank or unrecognised boolean
  (only ``1/true/yes/on`` and ``0/false/no/off``, any case), a dedup window
  that is not a finite number above 0 (the option's or a Redis URL's
  ``window``), a number outside its bounds, an unknown choice, a blank value
  where a value is needed.
- Values that come as text (the environment, a config file) are parsed here
  too, so ``PIXEL_DEDUP=3600`` and ``dedup=3600`` are one value.

Compared with gunicorn's ``config.py``, which this follows (one ``Setting``
registry behind the flags, the environment and the docs): the rows are data,
not classes; the same row serves four front doors, not one; and a row's
check runs on every value from every source, so no front door can skip it.
Adding an option is one row here; ``pixel-middleware options`` prints the
README's option tables from the rows, and a test holds the README to them.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from .kinds import CHECKS, Invalid

__all__ = ["OPTIONS", "Option", "option", "resolve"]

class Option(NamedTuple):
    """One row of the table.

    ``scope`` says which front doors read it: ``"pipeline"`` (the
    :class:`~pixel_middleware.Collector` and every adapter over it),
    ``"urls"`` (the URL-building template helpers of Flask and Django), or
    ``"server"`` (``serve`` only). ``key`` is both the ``PIXEL_*`` config key
    and the environment variable; ``None`` for an option only Python code can
    give (a callable, the signals' sender). ``flag`` is ``serve``'s, if it has one.
    """

    name: str
    kind: str
    default: Any
    doc: str
    scope: str = "pipeline"
    key: Optional[str] = None
    flag: Optional[str] = None
    secret: bool = False
    choices: Tuple[str, ...] = ()
    #: The smallest and largest number allowed (``None``: unbounded); ``above`` makes the low bound exclusive.
    bounds: Tuple[Optional[float], Optional[float]] = (None, None)
    above: bool = False
    #: ``serve``'s default where it differs from the library's (metrics are on in a standalone collector).
    serve_default: Any = None
    #: How the default reads in the docs, where the value alone would not say it.
    default_doc: Optional[str] = None

    def check(self, value: Any, label: Optional[str] = None) -> Any:
        """``value`` checked and in its canonical form, or a :class:`ValueError` naming ``label``.

        ``None`` stays ``None`` (not set); text is parsed as the
        environment gives it.
        """
        if value is None:
            return None
        try:
            return CHECKS[self.kind](self, value)
        except Invalid as problem:
            raise ValueError(f"{label or self.name} {problem}") from None

    @property
    def env(self) -> Optional[str]:
        return self.key


_O = Option
#: Every option, in the order the docs list them.
OPTIONS: Tuple[Option, ...] = (
    # -- the pipeline: the Collector and every front door over it
    _O("sink", "sink", None, "a sink object, a sink URL (`log:`, `file:PATH`, `memory:`, `kafka://host:9092/topic`, "
       "`http(s)://...`) or a list of either (fan-out)", key="PIXEL_SINK", flag="--sink", default_doc='`"log:"`'),
    _O("write_keys", "write_keys", None, "write keys the routes accept: a list, comma-separated text, or a function "
       "`key -> bool`; unset accepts any key (a request must still carry one); an empty list is an error",
       key="PIXEL_WRITE_KEYS", flag="--write-key", secret=True),
    _O("dialects", "dialects", None, "the dialects whose routes answer, by name (or `Dialect` objects)",
       key="PIXEL_DIALECTS", flag="--dialect", default_doc="all"),
    _O("prefix", "path", "", "mount the vendor routes under this path (`/t` gives `/t/v1/pixel/track`)",
       key="PIXEL_PREFIX", flag="--prefix"),
    _O("signing_key", "secret", None, "verify a URL's `sig` with this key (and sign built URLs); a blank key is an "
       "error, never \"no signing\"", key="PIXEL_SIGNING_KEY", flag="--signing-key", secret=True),
    _O("signing_key_fallbacks", "secrets", None, "older keys still accepted (rotation); a blank one is an error",
       key="PIXEL_SIGNING_KEY_FALLBACKS", flag="--signing-key-fallback", secret=True),
    _O("require_signature", "bool", False, "reject unsigned pixel and click URLs (`missing_signature`); needs a "
       "signing key", key="PIXEL_REQUIRE_SIGNATURE", flag="--require-signature"),
    _O("signature_max_age", "seconds", None, "reject URLs signed longer ago than this many seconds "
       "(`signature_expired`)", key="PIXEL_SIGNATURE_MAX_AGE", flag="--signature-max-age", bounds=(0, None),
       above=True),
    _O("click_allowed_hosts", "hosts", None, "hosts `/v1/click` redirects to without a valid signature "
       "(`*.example.com` for its subdomains)", key="PIXEL_CLICK_ALLOWED_HOSTS", flag="--click-allowed-host"),
    _O("machine_events", "choice", "keep", "`keep` records fetches by machines (Apple MPP, bots, prefetch, link "
       "scanners) flagged `context.pixel.machine`; `drop` rejects them (`machine`)", key="PIXEL_MACHINE_EVENTS",
       flag="--machine-events", choices=("keep", "drop")),
    _O("dedup", "dedup", None, "one event per message: a window in seconds (in memory, per process) or a "
       "`redis://host:port/db?window=SECONDS` URL (shared)", key="PIXEL_DEDUP", flag="--dedup"),
    _O("ip", "choice", "full", "keep the client address, `anonymize` it or `drop` it", key="PIXEL_IP", flag="--ip",
       choices=("full", "anonymize", "drop")),
    _O("privacy_signals", "choice", "anonymize", "what a request with `Sec-GPC: 1` gets: `anonymize`, `drop` "
       "(`opted_out`) or `ignore`", key="PIXEL_PRIVACY_SIGNALS", flag="--privacy-signals",
       choices=("anonymize", "drop", "ignore")),
    _O("dnt", "bool", False, "treat `DNT: 1` like `Sec-GPC: 1`", key="PIXEL_DNT", flag="--dnt"),
    _O("metrics", "bool", False, "count events, rejections and sink health for Prometheus (the `metrics` extra)",
       key="PIXEL_METRICS", flag="--metrics", serve_default=True),
    _O("sender", "object", None, "the signals' sender (the middleware, the Flask app)", default_doc="the front door"),
    _O("after_response", "bool", False, "record each event once its GIF is written, as the server closes the "
       "response (`serve` does)"),
    # -- building URLs: the template helpers of Flask and Django
    _O("write_key", "text", None, "the write key put in every URL the helpers build; they raise without it",
       scope="urls", key="PIXEL_WRITE_KEY", secret=True),
    _O("url_dialect", "dialect", "compact", "the dialect of built URLs; must be among the enabled dialects",
       scope="urls", key="PIXEL_URL_DIALECT"),
    _O("base_url", "base_url", None, "the app's external root URL (`https://www.example.com`) for every built URL, "
       "inside a request too", scope="urls", key="PIXEL_BASE_URL",
       default_doc="the request's root, else `SERVER_NAME`"),
    _O("cache_buster", "bool", True, "add a random `cb` parameter to each built URL (`RANDOM` in `amp_pixel`)",
       scope="urls", key="PIXEL_CACHE_BUSTER"),
    _O("user_resolver", "callable", None, "a function `user -> id or None` replacing the built-in `user` rules",
       scope="urls", key="PIXEL_USER_RESOLVER"),
    _O("user_traits", "traits", None, "attribute or key names (a list or comma-separated text) copied from `user` "
       "into traits, or a function `user -> dict`", scope="urls", key="PIXEL_USER_TRAITS", default_doc="none"),
    # -- the standalone server
    _O("host", "address", "127.0.0.1", "address of the public pixel listener", scope="server", key="PIXEL_HOST",
       flag="--host"),
    _O("port", "int", 8000, "port of the public pixel listener", scope="server", key="PIXEL_PORT", flag="--port",
       bounds=(1, 65535)),
    _O("workers", "int", None, "worker processes", scope="server", key="PIXEL_WORKERS", flag="--workers",
       bounds=(1, None), default_doc="one per core"),
    _O("threads", "int", 1, "Python threads per worker running the pipeline (one holds the GIL best; more only "
       "helps a sink or dedup that blocks)", scope="server", key="PIXEL_THREADS", flag="--threads", bounds=(1, None)),
    _O("backpressure", "int", 4096, "connections one worker serves at once, idle keep-alive ones included; more "
       "wait, unread, in the listen queue",
       scope="server", key="PIXEL_BACKPRESSURE", flag="--backpressure", bounds=(1, None)),
    _O("header_timeout", "float", 15.0, "seconds a client may take to send a request's headers, and that an idle "
       "keep-alive connection stays open", scope="server", key="PIXEL_HEADER_TIMEOUT", flag="--header-timeout",
       bounds=(0, None), above=True),
    _O("max_header_size", "int", 16384, "bytes a request line and headers may take together (more: 431)",
       scope="server", key="PIXEL_MAX_HEADER_SIZE", flag="--max-header-size", bounds=(8192, None)),
    _O("tls_cert", "text", None, "PEM certificate chain file: serve HTTPS (with `--tls-key`)", scope="server",
       key="PIXEL_TLS_CERT", flag="--tls-cert", default_doc="none: HTTP"),
    _O("tls_key", "text", None, "PEM private key file of `--tls-cert`", scope="server", key="PIXEL_TLS_KEY",
       flag="--tls-key", default_doc="none"),
    _O("drain", "float", 5.0, "seconds after SIGTERM that `/readyz` answers 503 while pixels are still answered, "
       "before the server stops (0: stop at once)", scope="server", key="PIXEL_DRAIN", flag="--drain",
       bounds=(0, None)),
    _O("ops_host", "address", "127.0.0.1", "address of the ops listener (`/healthz`, `/readyz`, `/metrics`)",
       scope="server", key="PIXEL_OPS_HOST", flag="--ops-host"),
    _O("ops_port", "int", None, "port of the ops listener", scope="server", key="PIXEL_OPS_PORT",
       flag="--ops-port", bounds=(1, 65535), default_doc="none"),
    _O("ops_allowed_hosts", "hosts", None, "host names the ops port answers besides IP addresses and `localhost` "
       "(a scraper using a service name; `*.svc.cluster.local` for any under it)", scope="server",
       key="PIXEL_OPS_ALLOWED_HOSTS", flag="--ops-allowed-host"),
    _O("ready_grace", "float", 30.0, "seconds a sink may fail before `/readyz` answers 503", scope="server",
       key="PIXEL_READY_GRACE", flag="--ready-grace", bounds=(0, None)),
    _O("debug_page", "bool", False, "serve the debug page (last events, decode a URL) at `/` of the ops port",
       scope="server", key="PIXEL_DEBUG_PAGE", flag="--debug-page"),
    _O("proxies", "int", 0, "trust `X-Forwarded-For`/`-Proto`/`-Host` from this many proxies in front "
       "(werkzeug's ProxyFix)", scope="server", key="PIXEL_PROXIES", flag="--proxies", bounds=(0, None)),
    _O("shutdown_timeout", "float", 10.0, "seconds a stopping worker may spend delivering before it spools the rest",
       scope="server", key="PIXEL_SHUTDOWN_TIMEOUT", flag="--shutdown-timeout", bounds=(0, None)),
)
del _O

_BY_NAME: Dict[str, Option] = {o.name: o for o in OPTIONS}


def option(name: str) -> Option:
    """The row of ``name``."""
    return _BY_NAME[name]


def names(*scopes: str) -> List[str]:
    """The options of ``scopes``, in table order."""
    return [o.name for o in OPTIONS if o.scope in scopes]


def python_label(o: Option) -> str:
    return o.name


def serve_label(o: Option) -> str:
    return f"{o.flag} / {o.key}" if o.flag else (o.key or o.name)


def resolve(
    given: Mapping[str, Any],
    scopes: Iterable[str] = ("pipeline",),
    *,
    label: Callable[[Option], str] = python_label,
    defaults: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Every option of ``scopes``, from ``given`` (unset: the default), each checked, then checked together.

    ``given`` maps option names to values as the front door read them;
    ``label`` names an option in errors as that front door's user wrote it.
    ``defaults`` replaces a row's default (``serve``'s metrics). An unknown
    name is a :class:`TypeError`, as an unknown keyword argument is.
    """
    scopes = tuple(scopes)
    wanted = names(*scopes)
    unknown = sorted(set(given) - set(wanted))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(wanted)}")
    settings: Dict[str, Any] = {}
    for name in wanted:
        row = _BY_NAME[name]
        value = row.check(given.get(name), label(row))
        if value is None:  # the default, in the same canonical form (a dialect's name becomes the dialect)
            value = row.check((defaults or {}).get(name, row.default))
        settings[name] = value
    _together(settings, label)
    return settings


def from_config(
    config: Mapping[str, Any],
    given: Optional[Mapping[str, Any]] = None,
    *,
    label: Callable[[str], str] = lambda name: name,
) -> Dict[str, Any]:
    """The pipeline and URL options of a framework's config (Flask's ``app.config``, Django's settings).

    Each option from ``given`` (keywords, named in errors by ``label``),
    else its ``PIXEL_*`` key in ``config``, checked by :func:`resolve`. The
    frameworks' shared conventions on top: the signing key defaults to
    ``SECRET_KEY`` (and its fallbacks to ``SECRET_KEY_FALLBACKS``), checked
    under those names: a blank ``SECRET_KEY`` is an error, a config without
    one signs nothing. ``PIXEL_SIGNING_KEY = False`` turns signing off.
    Unset ``PIXEL_WRITE_KEYS`` with a ``PIXEL_WRITE_KEY`` accepts that key
    only, rather than any.
    """
    given = given or {}
    values: Dict[str, Any] = {}
    labels: Dict[str, str] = {}
    for o in OPTIONS:
        if not o.key or o.scope not in ("pipeline", "urls"):
            continue
        if o.name in given:
            values[o.name], labels[o.name] = given[o.name], label(o.name)
        else:
            values[o.name], labels[o.name] = config.get(o.key), o.key
    if values["signing_key"] is None:
        values["signing_key"], labels["signing_key"] = config.get("SECRET_KEY"), "SECRET_KEY"
        if values["signing_key_fallbacks"] is None:
            values["signing_key_fallbacks"] = config.get("SECRET_KEY_FALLBACKS")
            labels["signing_key_fallbacks"] = "SECRET_KEY_FALLBACKS"
    elif values["signing_key"] is False:
        values["signing_key_fallbacks"] = None
    settings = resolve(values, ("pipeline", "urls"), label=lambda o: labels.get(o.name, o.key or o.name))
    if settings["write_keys"] is None and settings["write_key"]:
        # The app's own key only, rather than any key: set PIXEL_WRITE_KEYS to widen it.
        settings["write_keys"] = [settings["write_key"]]
    return settings


def _together(settings: Mapping[str, Any], label: Callable[[Option], str]) -> None:
    """What no single value shows: options that contradict each other."""
    if settings.get("require_signature") and not settings.get("signing_key"):
        raise ValueError(f"{label(_BY_NAME['require_signature'])} needs {label(_BY_NAME['signing_key'])} "
                         "to check signatures with")
    if "write_key" in settings:
        key, keys = settings["write_key"], settings["write_keys"]
        if key and keys is not None and not callable(keys) and key not in keys:
            raise ValueError(f"{label(_BY_NAME['write_key'])} is not among {label(_BY_NAME['write_keys'])}: "
                             "every URL the app builds would be rejected")
    if "url_dialect" in settings and "dialects" in settings:
        dialect, dialects = settings["url_dialect"], settings["dialects"]
        if dialects is not None and dialect.name not in {d.name for d in dialects}:
            raise ValueError(f"{label(_BY_NAME['url_dialect'])} {dialect.name!r} is not enabled in "
                             f"{label(_BY_NAME['dialects'])}: the site would build URLs it does not answer")
    if "tls_cert" in settings and bool(settings["tls_cert"]) != bool(settings["tls_key"]):
        given, missing = ("tls_cert", "tls_key") if settings["tls_cert"] else ("tls_key", "tls_cert")
        raise ValueError(f"{label(_BY_NAME[given])} needs {label(_BY_NAME[missing])}: HTTPS takes both")
    if "debug_page" in settings and settings["debug_page"] and not settings["ops_port"]:
        raise ValueError(f"{label(_BY_NAME['debug_page'])} is served on the ops port: set "
                         f"{label(_BY_NAME['ops_port'])}")
    if settings.get("ops_port") and settings.get("ops_port") == settings.get("port"):
        raise ValueError(f"{label(_BY_NAME['ops_port'])} must differ from {label(_BY_NAME['port'])}")


def docstring(*scopes: str) -> str:
    """The ``:param:`` lines of ``scopes``' options, for the docstrings of the classes that take them."""
    lines = []
    for o in OPTIONS:
        if o.scope in scopes:
            default = o.default_doc or f"``{o.default!r}``"
            text = re.sub(r"`([^`]+)`", r"``\1``", o.doc)
            lines.append(f"    :param {o.name}: {text} (default {default}{f'; ``{o.key}``' if o.key else ''}).")
    return "\n".join(lines)


def default_text(o: Option, serve: bool = False) -> str:
    """How the docs and ``--help`` read ``o``'s default (``serve``'s, with ``serve``)."""
    if o.default_doc:
        return o.default_doc
    value = o.serve_default if serve and o.serve_default is not None else o.default
    if value is None:
        return "unset"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def markdown(table: str) -> str:
    """One of the README's option tables: ``"config"`` (Flask and Django keys) or ``"serve"`` (flags and environment)."""
    if table == "config":
        rows = ["| key | default | meaning |", "| --- | --- | --- |"]
        rows += [f"| `{o.key}` | {default_text(o)} | {o.doc}{' (a secret: never shown)' if o.secret else ''}. |"
                 for o in OPTIONS if o.key and o.scope in ("pipeline", "urls")]
    elif table == "serve":
        rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
        rows += [f"| `{o.flag}` | `{o.key}` | {default_text(o, serve=True)} | {o.doc}. |"
                 for o in OPTIONS if o.flag]
    else:
        raise ValueError(f"no table {table!r}: 'config' or 'serve'")
    return "\n".join(rows)
