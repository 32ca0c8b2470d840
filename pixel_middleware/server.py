"""``pixel-middleware serve``: the standalone collector on gunicorn, configured by flags or ``PIXEL_*`` variables.

Every option has a flag and an environment variable named like the Flask
config key (``--sink`` and ``PIXEL_SINK``, ``--write-key`` and
``PIXEL_WRITE_KEYS``...); lists in the environment are comma-separated, and
a flag wins over the environment. ``serve --print-config`` shows what is in
effect and where it came from, secrets masked.

The collector runs on gunicorn (the ``server`` extra), one collector per
worker, each built after the fork (sinks hold threads and sockets, which a
fork does not carry over). On SIGTERM or SIGINT gunicorn stops the workers
from taking requests, and each worker closes its collector: events in
memory are delivered, or spooled for the next start, never dropped.

``--ops-port`` opens a second listener, meant for the cluster's network
only (``--ops-host``, default 127.0.0.1), answering ``/healthz``,
``/readyz``, ``/metrics`` and, with ``--debug-page``, the debug page (see
:mod:`pixel_middleware.ops`). Requests are told apart by the port they
arrived on, so none of these answers on the public pixel port.

``--dev`` runs werkzeug's reloading development server instead, for local
work. No server prints query strings: pixel URLs carry write keys.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any, Callable, Collection, Dict, Iterable, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .cli import make_app
from .middleware import PixelMiddleware
from .sinks.delivery import as_bool
from .sinks.file import FileSink

_log = logging.getLogger("pixel_middleware")

_MASK = "********"
#: Query parameters of a sink URL whose values are credentials (``sig``: SAS URLs; ``code``: function keys).
_SECRET_NAMES = re.compile(r"pass|pwd|secret|token|key|auth|credential|sasl|sig|code", re.IGNORECASE)
#: Where a comma in PIXEL_SINK starts the next sink (Kafka URLs hold commas of their own).
_NEXT_SINK = re.compile(r",(?=\s*(?:log|file|memory|kafka|https?):)")


class Option(NamedTuple):
    """One ``serve`` option: its flag, its environment variable, how to read it."""

    name: str
    flag: str
    env: str
    kind: str  # "str", "int", "float", "bool", "list" or "choice"
    default: Any
    help: str
    choices: Tuple[str, ...] = ()
    secret: bool = False
    #: A keyword of the collector (:func:`make_app`), rather than of the server.
    collector: bool = True
    #: The smallest and largest number allowed (``None``: no bound); numbers must be finite.
    bounds: Tuple[Optional[float], Optional[float]] = (None, None)


def _default_workers() -> int:
    return 2 * (os.cpu_count() or 1)


OPTIONS: Tuple[Option, ...] = (
    Option("host", "--host", "PIXEL_HOST", "str", "127.0.0.1", "address of the public pixel listener", collector=False),
    Option("port", "--port", "PIXEL_PORT", "int", 8000, "port of the public pixel listener", collector=False, bounds=(1, 65535)),
    Option("workers", "--workers", "PIXEL_WORKERS", "int", None, "gunicorn worker processes (default: 2 x cores)",
           collector=False, bounds=(1, None)),
    Option("threads", "--threads", "PIXEL_THREADS", "int", 1, "threads per worker (more than 1: gthread workers)",
           collector=False, bounds=(1, None)),
    Option("ops_host", "--ops-host", "PIXEL_OPS_HOST", "str", "127.0.0.1",
           "address of the ops listener (/healthz, /readyz, /metrics)", collector=False),
    Option("ops_port", "--ops-port", "PIXEL_OPS_PORT", "int", None, "port of the ops listener (default: none)",
           collector=False, bounds=(1, 65535)),
    Option("ready_grace", "--ready-grace", "PIXEL_READY_GRACE", "float", 30.0,
           "seconds a sink may fail before /readyz answers 503", collector=False,
           bounds=(0, None)),
    Option("debug_page", "--debug-page", "PIXEL_DEBUG_PAGE", "bool", False,
           "serve the debug page (last events, decode a URL) at / of the ops port", collector=False),
    Option("proxies", "--proxies", "PIXEL_PROXIES", "int", 0,
           "trust X-Forwarded-For/-Proto/-Host from this many proxies in front (werkzeug ProxyFix)", collector=False,
           bounds=(0, None)),
    Option("shutdown_timeout", "--shutdown-timeout", "PIXEL_SHUTDOWN_TIMEOUT", "float", 10.0,
           "seconds a stopping worker may spend delivering before it spools the rest", collector=False,
           bounds=(0, None)),
    Option("sink", "--sink", "PIXEL_SINK", "list", None, "sink URL, repeatable (default: log:)"),
    Option("write_keys", "--write-key", "PIXEL_WRITE_KEYS", "list", None,
           "accepted write key, repeatable (default: any)", secret=True),
    Option("dialects", "--dialect", "PIXEL_DIALECTS", "list", None, "dialect to answer, repeatable (default: all)"),
    Option("prefix", "--prefix", "PIXEL_PREFIX", "str", "", "mount the pixel routes under this path"),
    Option("signing_key", "--signing-key", "PIXEL_SIGNING_KEY", "str", None,
           "verify signed URLs with this key (better in the environment: command lines are visible)", secret=True),
    Option("signing_key_fallbacks", "--signing-key-fallback", "PIXEL_SIGNING_KEY_FALLBACKS", "list", None,
           "an older key still accepted, repeatable", secret=True),
    Option("require_signature", "--require-signature", "PIXEL_REQUIRE_SIGNATURE", "bool", False,
           "reject unsigned URLs"),
    Option("signature_max_age", "--signature-max-age", "PIXEL_SIGNATURE_MAX_AGE", "float", None,
           "reject URLs signed longer ago (seconds)", bounds=(0, None)),
    Option("click_allowed_hosts", "--click-allowed-host", "PIXEL_CLICK_ALLOWED_HOSTS", "list", None,
           "host /v1/click redirects to without a signature, repeatable (*.example.com: subdomains)"),
    Option("machine_events", "--machine-events", "PIXEL_MACHINE_EVENTS", "choice", "keep",
           "record fetches by machines (Apple MPP, bots, prefetch) flagged, or drop them", ("keep", "drop")),
    Option("dedup", "--dedup", "PIXEL_DEDUP", "str", None,
           "one event per message: a window in seconds (in memory) or a redis:// URL"),
    Option("ip", "--ip", "PIXEL_IP", "choice", "full", "how much of the client address to keep",
           ("full", "anonymize", "drop")),
    Option("privacy_signals", "--privacy-signals", "PIXEL_PRIVACY_SIGNALS", "choice", "anonymize",
           "what a request with Sec-GPC: 1 gets", ("anonymize", "drop", "ignore")),
    Option("dnt", "--dnt", "PIXEL_DNT", "bool", False, "treat DNT: 1 like Sec-GPC: 1"),
    Option("metrics", "--metrics", "PIXEL_METRICS", "bool", True,
           "count events, rejections and sink health for /metrics (prometheus_client)"),
)
_BY_NAME = {option.name: option for option in OPTIONS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every option, defaulting to ``None`` so that the environment can fill what is not given.

    Each help line names the option's variable: ``serve --help`` is where an
    operator looks for it.
    """
    for option in OPTIONS:
        _add_argument(parser, option)
    parser.add_argument("--dev", action="store_true", help="werkzeug's reloading development server instead of gunicorn")
    parser.add_argument("--print-config", action="store_true", help="print the effective configuration and exit")


def _add_argument(parser: argparse.ArgumentParser, option: Option) -> None:
    kwargs: Dict[str, Any] = {"dest": option.name, "default": None, "help": f"{option.help} (${option.env})"}
    if option.kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif option.kind == "list":
        kwargs["action"] = "append"
    elif option.kind == "choice":
        kwargs["choices"] = option.choices
    elif option.kind in ("int", "float"):
        kwargs["type"] = int if option.kind == "int" else float
    parser.add_argument(option.flag, **kwargs)


# -- serve's options in other commands (decode, url) -----------------------------------
# The one door other commands use to OPTIONS: re-point these two when the table moves.


def add_shared_arguments(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add the flags of serve's options ``names`` to another command's ``parser``, as serve has them."""
    for name in names:
        _add_argument(parser, _BY_NAME[name])


def resolve_shared(args: argparse.Namespace, names: Iterable[str],
                   environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The values of serve's options ``names``, read and checked as serve reads them (flag, else variable).

    Raises :class:`ValueError` naming the flag or variable, never the value.
    """
    wanted = set(names)
    return {name: value for name, (value, _) in _resolve(args, environ, wanted).items()}


def _from_env(option: Option, text: str) -> Any:
    """``text`` from the environment as the option's kind; a bad value names the variable, never the value."""
    if option.kind == "list":
        parts = _NEXT_SINK.split(text) if option.name == "sink" else text.split(",")
        return [part.strip() for part in parts if part.strip()] or None
    if option.kind == "bool":
        try:
            return as_bool(text.strip())  # as sink URL options read them
        except ValueError:
            raise ValueError(f"{option.env} must be one of 1/true/yes/on or 0/false/no/off") from None
    if option.kind in ("int", "float"):
        try:
            return (int if option.kind == "int" else float)(text)
        except ValueError:
            raise ValueError(f"{option.env} must be {'an integer' if option.kind == 'int' else 'a number'}") from None
    if option.kind == "choice" and text not in option.choices:
        raise ValueError(f"{option.env} must be one of {', '.join(option.choices)}")
    return text


def _resolve(args: argparse.Namespace, environ: Optional[Dict[str, str]] = None,
             names: Optional[Collection[str]] = None) -> Dict[str, Tuple[Any, str]]:
    """Each option's value (of ``names``, default all) and where it came from (``flag``, ``env`` or ``default``); flags win."""
    environ = os.environ if environ is None else environ
    settings: Dict[str, Tuple[Any, str]] = {}
    for option in OPTIONS:
        if names is not None and option.name not in names:
            continue
        value = getattr(args, option.name, None)
        if value is not None:
            settings[option.name] = (value, "flag")
        elif environ.get(option.env) is not None:
            settings[option.name] = (_from_env(option, environ[option.env]), "env")
        else:
            default = _default_workers() if option.name == "workers" else option.default
            settings[option.name] = (default, "default")
        _check_bounds(option, settings[option.name][0])
        if option.name in ("host", "ops_host") and not settings[option.name][0].strip():
            # gunicorn binds an empty host to every interface: PIXEL_OPS_HOST= left blank by a
            # template would publish /metrics, /readyz and the debug page to the world.
            raise ValueError(f"{option.flag} / {option.env} must name an address (0.0.0.0: every interface)")
        value = settings[option.name][0]
        if option.secret and (value == "" or (isinstance(value, list) and "" in value)):
            # A template's blank PIXEL_SIGNING_KEY= would otherwise turn signature checks off without a word.
            raise ValueError(f"{option.flag} / {option.env} is empty: give a key, or leave it unset")
    return settings


def _check_bounds(option: Option, value: Any) -> None:
    """A number out of the option's range is an error naming the flag and the variable, as a bad value is."""
    if option.kind not in ("int", "float") or value is None:
        return
    low, high = option.bounds
    if not math.isfinite(value):
        raise ValueError(f"{option.flag} / {option.env} must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        wanted = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{option.flag} / {option.env} must be {wanted}")


def _mask_url(url: str) -> str:
    """A sink URL fit to print: the userinfo's password and credential-like query values masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:{_MASK}@{host}" if ":" in userinfo else f"{_MASK}@{host}"
        query, fragment = _mask_pairs(parts.query), _mask_pairs(parts.fragment)
        if netloc == parts.netloc and query == parts.query and fragment == parts.fragment:
            return url  # nothing to hide
        return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    except ValueError:
        return _MASK


def _mask_pairs(text: str) -> str:
    """A query, or an HTTP sink's ``#option=value`` fragment, with credential-like values masked.

    Every ``header.NAME`` value counts as one: the HTTP sink sends it as a
    request header, and which header carries a key is the endpoint's choice.
    """
    pairs = parse_qsl(text, keep_blank_values=True)
    secret = [bool(_SECRET_NAMES.search(name)) or name.startswith("header.") for name, _ in pairs]
    if not any(secret):
        return text
    return urlencode([(name, _MASK if hidden else value) for (name, value), hidden in zip(pairs, secret)], safe="*,:/")


def _shown(option: Option, value: Any) -> str:
    if value is None:
        return "-"
    if option.secret:
        return ", ".join(_MASK for _ in value) if isinstance(value, list) else _MASK
    if option.name == "sink":
        return ", ".join(_mask_url(url) for url in value)
    if option.name == "dedup":
        return _mask_url(value)  # redis://:password@host
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def _masked(text: str, settings: Dict[str, Any]) -> str:
    """``text`` (an error's) with every configured URL masked and every secret value hidden."""
    for url in [*(settings.get("sink") or []), settings.get("dedup") or ""]:
        if url:
            text = text.replace(url, _mask_url(url))
    for option in OPTIONS:
        value = settings.get(option.name)
        if option.secret and value:
            for secret in value if isinstance(value, list) else [value]:
                text = text.replace(secret, _MASK)
    return text


def _print_config(settings: Dict[str, Tuple[Any, str]], out: Any = None) -> None:
    """The effective configuration, one option a line: variable, value (secrets masked), source."""
    out = out or sys.stdout
    for option in OPTIONS:
        value, source = settings[option.name]
        print(f"{option.env:<30} {_shown(option, value):<40} ({source})", file=out)


#: gunicorn's sync worker, telling the app when no request is waiting (see :mod:`._worker`).
SYNC_WORKER = "pixel_middleware._worker.SyncWorker"
#: Lines a file sink holds, under serve's sync workers, before one write carries them.
_HELD_LINES = 16


def _build(settings: Dict[str, Any], idle_calls: bool = False) -> "_Collecting":
    """The WSGI app one worker serves: the collector, and on the ops port the ops app.

    ``idle_calls``: the server calls the app's ``idle()`` whenever no request
    is waiting (:data:`SYNC_WORKER` does), so file sinks may hold lines until then.
    """
    options = {o.name: settings[o.name] for o in OPTIONS if o.collector}
    if not options["metrics"]:
        del options["metrics"]  # off is the middleware's default
    # The GIF first, the event as the server closes the response: gunicorn's sync workers
    # wait for the client to close the connection, and the event is recorded meanwhile.
    middleware = make_app(after_response=True, **options)
    return _Collecting(middleware, settings, idle_calls)


def _file_sinks(sink: Any) -> List[FileSink]:
    """The file sinks in ``sink``, a fan-out's included."""
    if isinstance(sink, FileSink):
        return [sink]
    return [found for inner in getattr(sink, "sinks", ()) for found in _file_sinks(inner)]


class _Collecting:
    """The app ``serve`` runs in each worker: pixels on the public port, the ops app on the ops port."""

    def __init__(self, middleware: PixelMiddleware, settings: Dict[str, Any], idle_calls: bool = False) -> None:
        self.middleware = middleware
        self.public: Callable = middleware
        if settings.get("proxies"):
            from werkzeug.middleware.proxy_fix import ProxyFix

            n = settings["proxies"]
            self.public = ProxyFix(middleware, x_for=n, x_proto=n, x_host=n)
        self.ops: Optional[Callable] = None
        self.ops_port = str(settings["ops_port"]) if settings.get("ops_port") else None
        #: File sinks holding lines until the worker waits for requests (it calls idle()).
        self._holding: List[FileSink] = _file_sinks(middleware.sink) if idle_calls else []
        for sink in self._holding:
            sink.batch = _HELD_LINES
        self.reporter: Any = None
        state = settings.get("state_dir")
        if self.ops_port and state:
            from . import ops

            status_dir = os.path.join(state, "status")
            self.reporter = ops.StatusReporter(middleware.collector, status_dir,
                                               recent=100 if settings.get("debug_page") else 0)
            metrics_app = None
            if settings.get("metrics"):
                from .metrics import metrics_app as make_metrics_app

                metrics_app = make_metrics_app()
            self.ops = ops.ops_app(status_dir, ready_grace=settings["ready_grace"],
                                   debug_page=bool(settings.get("debug_page")), metrics_app=metrics_app,
                                   explain=_explainer(settings))

    def start(self) -> None:
        """Start what runs beside the requests in this process (after the fork)."""
        if self.reporter is not None:
            self.reporter.start()

    def idle(self) -> None:
        """No request is waiting (the sync worker says so): write the lines the file sinks hold."""
        for sink in self._holding:
            try:
                sink.flush()
            except Exception:  # the worker's loop must go on: log, and write them with the next event
                _log.exception("file sink %s failed to write its held lines", sink.path)

    def __call__(self, environ: Dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        # gunicorn sets SERVER_PORT from the listening socket: a header cannot move a request across.
        if self.ops is not None and environ.get("SERVER_PORT") == self.ops_port:
            return self.ops(environ, start_response)
        return self.public(environ, start_response)

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the status reporter, then deliver or spool what the collector holds."""
        if self.reporter is not None:
            self.reporter.stop()
        self.middleware.close(timeout)


def _explainer(settings: Dict[str, Any]) -> Callable[[str], Any]:
    """The paste box's decoding, with the collector's own settings (but dedup: see explain())."""
    from .explain import explain

    options = {o.name: settings[o.name] for o in OPTIONS if o.collector and o.name not in ("sink", "metrics", "dedup")}
    return lambda url: explain(url, **options)


class RedactingFilter(logging.Filter):
    """Hides write keys in gunicorn's error log: a malformed request line holding one is logged whole.

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


def _gunicorn_logger() -> type:
    from gunicorn.glogging import Logger

    class RedactingLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.addFilter(RedactingFilter())

    return RedactingLogger


def _address(host: str, port: int) -> str:
    """``host:port`` as gunicorn's bind and a URL read it: an IPv6 address (``::1``, ``::``) in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _run_gunicorn(settings: Dict[str, Any]) -> None:
    try:
        from gunicorn.app.base import BaseApplication
        from gunicorn.arbiter import Arbiter
        from gunicorn.errors import HaltServer
    except ImportError:
        raise SystemExit('serve needs gunicorn: pip install "pixel-middleware[server]" (or serve --dev)') from None

    binds = [_address(settings["host"], settings["port"])]
    if settings.get("ops_port"):
        binds.append(_address(settings["ops_host"], settings["ops_port"]))
    shutdown = float(settings["shutdown_timeout"])
    metrics_dir = os.path.join(settings["state_dir"], "metrics")

    def post_worker_init(worker: Any) -> None:
        # Ctrl-C reaches every process of the group: a worker finishes its request and
        # closes its collector, as on SIGTERM, rather than exiting in the middle of it.
        signal.signal(signal.SIGINT, worker.handle_exit)
        worker.wsgi.start()

    def worker_exit(server: Any, worker: Any) -> None:
        app = getattr(worker, "wsgi", None)
        if isinstance(app, _Collecting):
            app.close(shutdown)

    def child_exit(server: Any, worker: Any) -> None:
        if settings.get("metrics"):
            from .metrics import mark_process_dead

            mark_process_dead(worker.pid)
        try:
            os.unlink(os.path.join(settings["state_dir"], "status", f"{worker.pid}.json"))
        except OSError:
            pass

    config = {
        "bind": binds,
        "workers": settings["workers"],
        "threads": settings["threads"],
        "worker_class": "gthread" if settings["threads"] > 1 else SYNC_WORKER,
        "graceful_timeout": int(shutdown) + 20,
        # gunicorn's largest bounded request line (its default is 4094): long Segment
        # pixels fit, and a longer line still gets its 414 rather than unbounded memory.
        "limit_request_line": 8190,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": _gunicorn_logger(),
        "proc_name": "pixel-collector",
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "child_exit": child_exit,
    }
    if settings.get("metrics"):
        os.makedirs(metrics_dir, exist_ok=True)
        # Read by prometheus_client when a worker first imports it: set before the fork.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in config.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn 27: one per user, shared by every server
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:  # in each worker, after the fork
            try:
                return _build(settings, idle_calls=settings["threads"] == 1)  # then SYNC_WORKER runs it
            except Exception as error:
                # gunicorn would log the traceback and print the error, and sink errors quote
                # their URL, credentials and all: one masked line, and the master stops.
                print(f"pixel-middleware serve: cannot start: {type(error).__name__}: {_masked(str(error), settings)}",
                      file=sys.stderr, flush=True)
                sys.exit(Arbiter.WORKER_BOOT_ERROR)

        def run(self) -> None:
            try:
                _GracefulArbiter(self).run()
            except RuntimeError as error:
                raise SystemExit(f"pixel-middleware serve: {error}") from None
            except HaltServer as error:
                # Raised again out of gunicorn's own halt when a second worker fails to boot
                # while the master stops for the first: its reason, not a traceback.
                print(f"pixel-middleware serve: {error.reason}", file=sys.stderr, flush=True)
                raise SystemExit(error.exit_status) from None

    class _GracefulArbiter(Arbiter):
        def handle_int(self) -> None:
            """SIGINT stops gracefully, as SIGTERM does (gunicorn's own is immediate): no event is dropped."""
            self.handle_term()

    Application().run()


def _run_dev(settings: Dict[str, Any]) -> None:
    from werkzeug.serving import is_running_from_reloader, make_server, run_simple

    if not is_running_from_reloader():
        # This process only watches the files and restarts the one that serves: no sink here.
        run_simple(settings["host"], settings["port"], _not_served, use_reloader=True)
        return
    app = _build(settings)
    app.start()
    if app.ops is not None:
        ops_server = make_server(settings["ops_host"], settings["ops_port"], app.ops, threaded=True)
        threading.Thread(target=ops_server.serve_forever, daemon=True, name="pixel-ops").start()
    try:
        run_simple(settings["host"], settings["port"], app.public, threaded=True, use_reloader=True)
    finally:
        app.close(settings["shutdown_timeout"])


def _not_served(environ: Dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    raise RuntimeError("the reloader's watching process serves nothing")


def serve(args: argparse.Namespace) -> int:
    """Run the collector as ``args`` and the environment say."""
    try:
        resolved = _resolve(args)
    except ValueError as error:
        print(f"pixel-middleware serve: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        _print_config(resolved)
        return 0
    settings = {name: value for name, (value, _) in resolved.items()}
    if settings["require_signature"] and not settings["signing_key"]:
        print("pixel-middleware serve: --require-signature needs --signing-key or PIXEL_SIGNING_KEY", file=sys.stderr)
        return 2
    if settings["debug_page"] and not settings["ops_port"]:
        print("pixel-middleware serve: --debug-page is served on the ops port: set --ops-port", file=sys.stderr)
        return 2
    if settings["ops_port"] and settings["ops_port"] == settings["port"]:
        print("pixel-middleware serve: --ops-port must differ from --port", file=sys.stderr)
        return 2
    if settings["metrics"] and importlib.util.find_spec("prometheus_client") is None:
        settings["metrics"] = False  # without the extra: no /metrics, the rest works
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # werkzeug's access log (--dev) prints whole URLs, and pixel URLs carry write keys; its
    # error for a malformed request line (a warning or worse) quotes the line: hidden as in gunicorn's.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").addFilter(RedactingFilter())
    settings["state_dir"] = tempfile.mkdtemp(prefix="pixel-serve-")
    os.makedirs(os.path.join(settings["state_dir"], "status"))
    sinks = ", ".join(_mask_url(url) for url in settings["sink"] or ["log:"])
    ops = f"; ops on http://{_address(settings['ops_host'], settings['ops_port'])}/" if settings["ops_port"] else ""
    print(f"pixel collector on http://{_address(settings['host'], settings['port'])}/ (sink: {sinks}{ops})",
          file=sys.stderr, flush=True)
    owner = os.getpid()
    try:
        if args.dev:
            _run_dev(settings)
        else:
            _run_gunicorn(settings)
    finally:
        # gunicorn forks its workers in here, and a worker that stops (SIGTERM, HUP, TTOU)
        # leaves through this block too: only the master may remove what all workers share.
        if os.getpid() == owner:
            shutil.rmtree(settings["state_dir"], ignore_errors=True)
    return 0
