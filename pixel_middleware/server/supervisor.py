"""serve's main process: granian's worker processes on the public port, the ops listener, the drain at stop.

Why granian: a pixel collector faces every client on the internet, and a
server that gives a blocked thread to each connection (gunicorn's sync
workers) is stopped by a few dozen clients that send one header byte a
second. granian reads requests in Rust, on an event loop, and hands the
Python app only whole requests, so slow and idle connections cost a few
bytes each; its limits are serve's flags:

``--header-timeout`` (15 s)
    time to send a request's headers, and how long an idle keep-alive
    connection stays open: a client that dribbles its headers is cut off.
``--max-header-size`` (16 KiB)
    request line and headers together; beyond it the answer is ``431``.
``--backpressure`` (4,096)
    connections a worker serves at once, idle keep-alive ones included;
    more wait, unread, in the listen queue, so a flood queues rather than
    exhausts memory. serve raises its open-file limit to its hard limit so
    that the workers can hold them.

The main process holds no collector: it runs the ops listener (the
``/healthz``, ``/readyz``, ``/metrics`` and debug-page app of
:mod:`pixel_middleware.server.ops`, reading what the workers write to the
state directory), a sweeper that folds a dead worker's metrics into the
archive, and the drain: on SIGTERM ``/readyz`` answers 503 for ``--drain``
seconds while the workers still answer pixels, so that a load balancer
takes the collector out of rotation before its socket closes. SIGINT
(Ctrl-C at a terminal) stops at once. A worker that dies is respawned.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict

from ..pipeline.metrics import mark_process_dead, metrics_app
from . import ops
from .config import SERVE_OPTIONS, address
from .ops import alive
from .worker import BOOT_ERROR, collector_options, loader, wake_main_thread_on_stop

_log = logging.getLogger("pixel_middleware")
#: How often the main process looks for workers that died, to fold their metrics away.
_SWEEP_SECONDS = 1.0
_PID_FILE = re.compile(r"(?:\A|_)(\d+)\.(?:db|json)\Z")


def run(settings: Dict[str, Any]) -> int:
    """Serve until stopped; the exit status (0, or :data:`~.worker.BOOT_ERROR` when no worker could start)."""
    try:
        from granian.constants import Interfaces
        from granian.http import HTTP1Settings
        from granian.server import Server
    except ImportError:
        raise SystemExit('serve needs granian: pip install "pixel-middleware[server]" (or serve --dev)') from None
    _check_tls(settings)
    _raise_file_limit()
    if settings.get("metrics"):
        metrics_dir = os.path.join(settings["state_dir"], "metrics")
        os.makedirs(metrics_dir, exist_ok=True)
        # Read by prometheus_client when a worker first imports it: set before the fork.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # granian copies os.environ into every request's environ: no secret of serve's goes with it.
    for option_env in _secret_variables():
        os.environ.pop(option_env, None)
    # Each worker builds its collector from these settings in its loader, a closure: fork, not spawn.
    multiprocessing.set_start_method("fork", force=True)
    boot_failed = multiprocessing.get_context("fork").Event()
    draining = threading.Event()
    main_pid = os.getpid()

    class Supervisor(Server):  # type: ignore[misc, valid-type]
        exit_code = 0

        def signal_handler_interrupt(self, signum: int = 0, *args: Any) -> None:
            # Workers are forked with this handler: in them it must stay granian's own.
            if os.getpid() == main_pid and signum == signal.SIGTERM and settings["drain"] > 0 \
                    and not draining.is_set():
                draining.set()
                _log.info("SIGTERM: draining for %g s (/readyz answers 503), then stopping", settings["drain"])
                timer = threading.Timer(settings["drain"], super().signal_handler_interrupt)
                timer.daemon = True
                timer.start()
                return
            super().signal_handler_interrupt()

        def _respawn_workers(self, workers: Any, *args: Any, **kwargs: Any) -> None:
            if boot_failed.is_set():  # the collector cannot be built: stop, rather than respawn it forever
                self.exit_code = BOOT_ERROR
                self.interrupt_signal = True
                self.main_loop_interrupt.set()
                return
            super()._respawn_workers(workers, *args, **kwargs)

        def shutdown(self, exit_code: int = 0) -> None:
            if self.interrupt_signal and not self.exit_code:
                # Ctrl-C and a KillMode=control-group stop signal every worker too: those exits were asked for.
                self.interrupt_children.clear()
            super().shutdown(exit_code or self.exit_code)

    server = Supervisor(
        "pixel_middleware",  # a name for logs: the app comes from the loader
        address=settings["host"],
        port=settings["port"],
        interface=Interfaces.WSGI,
        workers=settings["workers"],
        blocking_threads=settings["threads"],
        backpressure=settings["backpressure"],
        http1_settings=HTTP1Settings(header_read_timeout=int(settings["header_timeout"] * 1000),
                                     max_buffer_size=settings["max_header_size"]),
        websockets=False,
        log_dictconfig=_log_config(),
        log_access=False,  # pixel URLs carry write keys
        respawn_failed_workers=True,
        workers_kill_timeout=int(settings["shutdown_timeout"]) + 20,
        process_name=None,
        ssl_cert=Path(settings["tls_cert"]) if settings.get("tls_cert") else None,
        ssl_key=Path(settings["tls_key"]) if settings.get("tls_key") else None,
    )
    # granian forks a worker whenever one must be respawned, from this multi-threaded process: a fork
    # taken while another thread holds a module's import lock leaves the new worker waiting on it for
    # ever. So what the sweeper and the ops listener load is loaded here, before either starts.
    if settings.get("metrics"):
        import prometheus_client.mmap_dict  # noqa: F401  (mark_process_dead's)
        import prometheus_client.multiprocess  # noqa: F401
    ops = ops_listener(settings, draining.is_set) if settings.get("ops_port") else None
    sweeper = threading.Thread(target=_sweep, args=(settings,), daemon=True, name="pixel-sweeper")
    sweeper.start()
    # granian's main loop too waits without a timeout: two stop signals at once (SIGTERM, then Ctrl-C)
    # must not leave the second in another thread's hands.
    wake_main_thread_on_stop()
    try:
        server.serve(target_loader=loader(settings, boot_failed), wrap_loader=False)
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        if ops is not None:
            ops.shutdown()
    return server.exit_code


def _metrics_app(settings: Dict[str, Any]) -> Any:
    return metrics_app() if settings.get("metrics") else None


def _raise_file_limit() -> None:
    """The soft open-file limit up to the hard one (often 1,024 against 2^20): every connection is a file."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass  # the limit as it is: connections beyond it wait in the listen queue


def _check_tls(settings: Dict[str, Any]) -> None:
    """A certificate and key that do not load stop serve here, named by flag (granian would print a traceback)."""
    if not settings.get("tls_cert"):
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(settings["tls_cert"], settings["tls_key"])
    except (OSError, ssl.SSLError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise SystemExit(f"pixel-middleware serve: --tls-cert / --tls-key cannot be loaded: {reason}") from None


def _secret_variables() -> Any:
    return [o.env for o in SERVE_OPTIONS if o.secret or o.name in ("sink", "dedup")]


def _log_config() -> Dict[str, Any]:
    """granian's logging, to stderr beside serve's own lines, write keys hidden (a bad request line may hold one)."""
    redact = {"()": "pixel_middleware.server.config.RedactingFilter"}
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain",
               "filters": ["redact"]}
    return {"version": 1, "disable_existing_loggers": False, "filters": {"redact": redact},
            "formatters": {"plain": {"format": "[granian] %(message)s"}}, "handlers": {"stderr": handler},
            "loggers": {"_granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                        "granian.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}}}


def ops_listener(settings: Dict[str, Any], draining: Callable[[], bool]) -> Any:
    """The ops app on its own listener in this process, a thread per connection (the cluster's network only).

    Each of its paths is answered once here, in the calling thread, before
    the listener's starts: what they import lazily is then imported before
    granian forks a worker beside them (see :func:`run`).
    """
    from werkzeug.serving import make_server
    from werkzeug.test import Client

    app = ops.ops_app(os.path.join(settings["state_dir"], "status"), ready_grace=settings["ready_grace"],
                      debug_page=bool(settings.get("debug_page")), metrics_app=_metrics_app(settings),
                      explain=_explainer(settings), allowed_hosts=settings.get("ops_allowed_hosts") or (),
                      draining=draining)
    client = Client(app)
    for path in ("/healthz", "/readyz", "/metrics", "/", "/rows"):
        client.get(path).close()
    if settings.get("debug_page"):
        client.post("/explain", data={"url": "http://localhost/v1/pixel/track?e=x"}).close()
    try:
        listener = make_server(settings["ops_host"], settings["ops_port"], app, threaded=True)
    except OSError as error:
        raise SystemExit(f"pixel-middleware serve: cannot listen on {address(settings['ops_host'], settings['ops_port'])}"
                         f" (--ops-host / --ops-port): {error.strerror}") from None
    listener.daemon_threads = True
    threading.Thread(target=listener.serve_forever, daemon=True, name="pixel-ops").start()
    return listener


def _explainer(settings: Dict[str, Any]) -> Callable[[str], Any]:
    """The paste box's decoding, with the collector's own settings (but dedup: see explain())."""
    from .explain import explain

    options = {name: value for name, value in collector_options(settings).items()
               if name not in ("sink", "metrics", "dedup")}
    return lambda url: explain(url, **options)


def _sweep(settings: Dict[str, Any], interval: float = _SWEEP_SECONDS) -> None:
    """Every ``interval``: a worker that has gone (killed, or stopped) leaves its metrics in the archive, and no status."""
    status_dir = os.path.join(settings["state_dir"], "status")
    metrics_dir = os.path.join(settings["state_dir"], "metrics") if settings.get("metrics") else None
    while True:
        time.sleep(interval)
        for directory in filter(None, (status_dir, metrics_dir)):
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for pid in {int(m.group(1)) for m in map(_PID_FILE.search, names) if m}:
                if alive(pid):
                    continue
                try:
                    if directory == metrics_dir:
                        mark_process_dead(pid)
                    else:
                        os.unlink(os.path.join(directory, f"{pid}.json"))
                except OSError:
                    pass
                except Exception:  # never the sweeper's end: the next round tries again
                    _log.exception("folding away worker %d's state failed", pid)
