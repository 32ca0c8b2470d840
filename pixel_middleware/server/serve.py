"""``pixel-middleware serve``: the standalone collector on granian, configured by flags or ``PIXEL_*`` variables.

The options, their flags and variables, and what may be shown of them are
in :mod:`pixel_middleware.server.config` (``serve --print-config`` shows
what is in effect and where it came from, secrets masked). The collector
runs on granian, one collector per worker process, built in the worker
(:mod:`pixel_middleware.server.worker`); the main process answers the ops
port and drains at stop (:mod:`pixel_middleware.server.supervisor`).

``--ops-port`` opens a second listener, meant for the cluster's network
only (``--ops-host``, default 127.0.0.1), answering ``/healthz``,
``/readyz``, ``/metrics`` and, with ``--debug-page``, the debug page (see
:mod:`pixel_middleware.server.ops`). None of these answers on the public
pixel port.

``--dev`` runs werkzeug's reloading development server instead, for local
work. No server prints query strings: pixel URLs carry write keys.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, Iterable

from ..sinks.base import url_label
from .config import RedactingFilter, address, print_config, resolve

__all__ = ["RedactingFilter", "serve"]


def _run_dev(settings: Dict[str, Any]) -> None:
    from werkzeug.serving import is_running_from_reloader, run_simple

    from .supervisor import ops_listener
    from .worker import WorkerApp

    if not is_running_from_reloader():
        # This process only watches the files and restarts the one that serves: no sink here.
        run_simple(settings["host"], settings["port"], _not_served, use_reloader=True)
        return
    app = WorkerApp(settings)
    app.start()
    ops = ops_listener(settings, lambda: False) if settings.get("ops_port") else None
    try:
        run_simple(settings["host"], settings["port"], app.public, threaded=True, use_reloader=True)
    finally:
        if ops is not None:
            ops.shutdown()
        app.close(settings["shutdown_timeout"])


def _not_served(environ: Dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    raise RuntimeError("the reloader's watching process serves nothing")


def serve(args: argparse.Namespace) -> int:
    """Run the collector as ``args`` and the environment say."""
    try:
        resolved = resolve(args)
    except ValueError as error:
        print(f"pixel-middleware serve: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print_config(resolved)
        return 0
    settings = {name: value for name, (value, _) in resolved.items()}
    if settings["metrics"] and importlib.util.find_spec("prometheus_client") is None:
        settings["metrics"] = False  # without the extra: no /metrics, the rest works
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # werkzeug's access log (--dev, and the ops port) prints whole URLs, and pixel URLs carry write
    # keys; its error for a malformed request line (a warning or worse) quotes the line: hidden.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").addFilter(RedactingFilter())
    settings["state_dir"] = tempfile.mkdtemp(prefix="pixel-serve-")
    os.makedirs(os.path.join(settings["state_dir"], "status"))
    sinks = ", ".join(url_label(url) for url in settings["sink"] or ["log:"])
    scheme = "https" if settings.get("tls_cert") and not args.dev else "http"
    ops = f"; ops on http://{address(settings['ops_host'], settings['ops_port'])}/" if settings["ops_port"] else ""
    print(f"pixel collector on {scheme}://{address(settings['host'], settings['port'])}/ (sink: {sinks}{ops})",
          file=sys.stderr, flush=True)
    owner = os.getpid()
    try:
        if args.dev:
            _run_dev(settings)
            return 0
        from .supervisor import run

        return run(settings)
    finally:
        # Workers are forked from this process, and leave through here too:
        # only the main process may remove what all of them share.
        if os.getpid() == owner:
            shutil.rmtree(settings["state_dir"], ignore_errors=True)
