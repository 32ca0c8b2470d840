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
:mod:`pixel_middleware.server.ops`). Requests are told apart by the port they
arrived on, so none of these answers on the public pixel port.

``--dev`` runs werkzeug's reloading development server instead, for local
work. No server prints query strings: pixel URLs carry write keys.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .. import options as table
from ..middleware import PixelMiddleware
from ..options import OPTIONS, Option
from ..sinks.base import url_label
from ..sinks.file import FileSink

_log = logging.getLogger("pixel_middleware")

_MASK = "********"
#: serve's options: every row with a flag, the collector's and the server's own.
SERVE_OPTIONS: Tuple[Option, ...] = tuple(o for o in OPTIONS if o.flag)
#: Defaults of serve's own where the library's differ: metrics on, two workers a core.
_DEFAULTS = {"metrics": True}


def _default_workers() -> int:
    return 2 * (os.cpu_count() or 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every option, defaulting to ``None`` so that the environment can fill what is not given.

    Values are taken as text and checked by the options table, as the
    environment's are, so a flag and its variable fail the same way. Each
    help line names the option's variable: ``serve --help`` is where an
    operator looks for it.
    """
    for option in SERVE_OPTIONS:
        _add_argument(parser, option)
    parser.add_argument("--dev", action="store_true", help="werkzeug's reloading development server instead of gunicorn")
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
    return {name: value for name, (value, _) in _resolve(args, environ, wanted).items() if name in wanted}


def _resolve(args: argparse.Namespace, environ: Optional[Dict[str, str]] = None,
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


def _masked(text: str, settings: Dict[str, Any]) -> str:
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


def _print_config(settings: Dict[str, Tuple[Any, str]], out: Any = None) -> None:
    """The effective configuration, one option a line: variable, value (secrets masked), source."""
    out = out or sys.stdout
    for option in SERVE_OPTIONS:
        value, source = settings[option.name]
        print(f"{option.env:<30} {_shown(option, value):<40} ({source})", file=out)


#: gunicorn's sync worker, telling the app when no request is waiting (see :mod:`._worker`).
SYNC_WORKER = "pixel_middleware.server._worker.SyncWorker"
#: Lines a file sink holds, under serve's sync workers, before one write carries them.
_HELD_LINES = 16


def _build(settings: Dict[str, Any], idle_calls: bool = False) -> "_Collecting":
    """The WSGI app one worker serves: the collector, and on the ops port the ops app.

    ``idle_calls``: the server calls the app's ``idle()`` whenever no request
    is waiting (:data:`SYNC_WORKER` does), so file sinks may hold lines until then.
    """
    options = {name: settings[name] for name in _collector_options()}
    # The GIF first, the event as the server closes the response: gunicorn's sync workers
    # wait for the client to close the connection, and the event is recorded meanwhile.
    middleware = PixelMiddleware(None, after_response=True, **options)
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
                from ..pipeline.metrics import metrics_app as make_metrics_app

                metrics_app = make_metrics_app()
            self.ops = ops.ops_app(status_dir, ready_grace=settings["ready_grace"],
                                   debug_page=bool(settings.get("debug_page")), metrics_app=metrics_app,
                                   explain=_explainer(settings), allowed_hosts=settings.get("ops_allowed_hosts") or ())

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

    options = {name: settings[name] for name in _collector_options() if name not in ("sink", "metrics", "dedup")}
    return lambda url: explain(url, **options)


def _collector_options() -> List[str]:
    """The collector's options that serve takes (its flags): all but the Python-only ones."""
    return [o.name for o in SERVE_OPTIONS if o.scope == "pipeline"]


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
            from ..pipeline.metrics import mark_process_dead

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
    if settings["metrics"] and importlib.util.find_spec("prometheus_client") is None:
        settings["metrics"] = False  # without the extra: no /metrics, the rest works
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # werkzeug's access log (--dev) prints whole URLs, and pixel URLs carry write keys; its
    # error for a malformed request line (a warning or worse) quotes the line: hidden as in gunicorn's.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").addFilter(RedactingFilter())
    settings["state_dir"] = tempfile.mkdtemp(prefix="pixel-serve-")
    os.makedirs(os.path.join(settings["state_dir"], "status"))
    sinks = ", ".join(url_label(url) for url in settings["sink"] or ["log:"])
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
