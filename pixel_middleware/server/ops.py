"""Health, readiness and a debug page for a collector running in several worker processes.

``serve --ops-port 9100`` answers these on a listener of their own, never on
the public pixel port:

``GET /healthz``
    200 while the process answers: for a liveness probe.
``GET /readyz``
    200 when every sink of every live worker is delivering; 503 with a JSON
    body naming the sink and why when one has been failing for longer than
    ``ready_grace`` seconds (a broker or endpoint unreachable) or its spool
    is over 80% of its disk cap. Also 503 until a worker has reported, and
    while the server drains before it stops (``serve --drain``). For a
    readiness probe: a load balancer then sends pixels to collectors that
    can deliver them.
``GET /metrics``
    Prometheus metrics (see :mod:`pixel_middleware.pipeline.metrics`).
``GET /`` (``--debug-page`` only)
    The last 100 events and rejections across workers, newest first, IPs
    anonymised, and a box to paste a pixel URL into and see what it decodes
    to (:func:`~pixel_middleware.explain.explain`), which is sent to
    ``POST /explain`` (a pasted URL carries its write key, which a GET would
    put in the address bar and in logs; other methods get 405 with
    ``Allow: POST``). A small script fetches the table's rows (``GET /rows``)
    every two seconds and replaces only them, so that what is typed in the
    box stays. Events hold personal data: keep the ops port on the
    cluster's network.

Every path answers only a ``Host`` that is an IP address, ``localhost`` or
one of ``--ops-allowed-host`` (403 otherwise): probes and scrapers address a
pod by its IP, an SSH tunnel or ``kubectl port-forward`` sends
``localhost``, and a web page that points its own domain at the collector
(DNS rebinding) sends that domain, so it can read neither the debug page
nor ``/metrics`` and ``/readyz``.

Workers share what they know through a directory: each runs a
:class:`StatusReporter` thread writing ``<pid>.json`` every second (its
sinks' :meth:`~pixel_middleware.Sink.health` and, for the debug page, its
recent events), and the process that answers the ops port (``serve``'s main
process) reads them all.
"""
from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from ..pipeline.clicks import HostList
from ..core.events import DecodeError, epoch_ms
from ..pipeline.steps.privacy import anonymize_ip
from ..core.signals import event_received, event_rejected

_log = logging.getLogger("pixel_middleware")

#: A status file older than this many reporting intervals is a dead worker's.
_STALE_INTERVALS = 5
#: Readiness fails when a spool holds more than this share of its cap.
SPOOL_FULL = 0.8
_PAGE_EVENTS = 100


class StatusReporter:
    """Writes this worker's sinks' health, and optionally its recent events, to ``<status_dir>/<pid>.json``.

    :param collector: the :class:`~pixel_middleware.Collector` to report on.
    :param interval: seconds between writes.
    :param recent: how many recent events and rejections to keep for the
        debug page; 0 keeps none and adds nothing to the request path.
    """

    def __init__(self, collector: Any, status_dir: str, *, interval: float = 1.0, recent: int = 0) -> None:
        self.collector = collector
        self.status_dir = status_dir
        self.interval = interval
        self._recent: Deque[Dict[str, Any]] = deque(maxlen=recent or 1)
        self._keep_recent = recent > 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start reporting from this process (call it after a fork, in the worker)."""
        os.makedirs(self.status_dir, exist_ok=True)
        if self._keep_recent:
            sender = self.collector.sender
            event_received.connect(self._on_event, sender=sender, weak=False)
            event_rejected.connect(self._on_rejected, sender=sender, weak=False)
        self._stop.clear()
        self.write()
        self._thread = threading.Thread(target=self._run, name="pixel-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last write, marked stopped: readiness counts this worker out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._keep_recent:
            event_received.disconnect(self._on_event, sender=self.collector.sender)
            event_rejected.disconnect(self._on_rejected, sender=self.collector.sender)
        self.write(stopped=True)

    # The request thread: a reference appended, nothing copied or formatted.
    def _on_event(self, sender: Any, event: Dict[str, Any], dialect: str, **_: Any) -> None:
        self._recent.append({"at": time.time(), "dialect": dialect, "event": event})

    def _on_rejected(self, sender: Any, reason: str, detail: str, dialect: Optional[str],
                     received_at: Optional[str] = None, **_: Any) -> None:
        self._recent.append({"at": time.time(), "dialect": dialect, "rejected": reason, "detail": detail,
                             "received_at": received_at})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def write(self, stopped: bool = False) -> None:
        """Write the status file now (atomically: readers never see half of one)."""
        try:
            sinks = list(getattr(self.collector.sink, "health", list)())
        except Exception:
            _log.exception("reading the sinks' health failed")
            sinks = []
        status = {"pid": os.getpid(), "time": time.time(), "interval": self.interval, "stopped": stopped, "sinks": sinks,
                  "recent": [_shown(entry) for entry in list(self._recent)] if self._keep_recent else []}
        try:
            data = json.dumps(status, default=str, allow_nan=False)
        except ValueError:
            status["recent"] = []
            data = json.dumps(status, default=str)
        try:
            fd, temp = tempfile.mkstemp(dir=self.status_dir, prefix=".status-")
            with os.fdopen(fd, "w") as file:
                file.write(data)
            os.replace(temp, os.path.join(self.status_dir, f"{os.getpid()}.json"))
        except OSError:
            _log.exception("writing the status file in %s failed", self.status_dir)


def _shown(entry: Dict[str, Any]) -> Dict[str, Any]:
    """A recent entry as the debug page may show it: the client's address anonymised.

    An event is dated by its ``receivedAt``, a rejection by the ``received_at``
    its signal carried, both the request's arrival: a worker that records
    after answering may record two workers' requests in the other order.
    """
    shown = {key: value for key, value in entry.items() if key != "received_at"}
    event = entry.get("event")
    if event is not None:
        context = event.get("context")
        if isinstance(context, dict) and context.get("ip"):
            shown["event"] = {**event, "context": {**context, "ip": anonymize_ip(str(context["ip"])) or "-"}}
    try:  # else the time it was recorded, which entry["at"] already holds
        shown["at"] = epoch_ms(event["receivedAt"] if event is not None else entry["received_at"]) / 1000
    except (KeyError, DecodeError):
        pass
    return shown


def read_statuses(status_dir: str) -> List[Dict[str, Any]]:
    """Every status file in ``status_dir``, each with ``live`` telling whether its worker still reports."""
    found = []
    try:
        names = os.listdir(status_dir)
    except OSError:
        return []
    now = time.time()
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            with open(os.path.join(status_dir, name)) as file:
                status = json.load(file)
        except (OSError, ValueError):
            continue
        fresh = now - float(status.get("time", 0)) <= _STALE_INTERVALS * float(status.get("interval", 1.0)) + 1
        status["live"] = fresh and not status.get("stopped") and alive(int(status.get("pid", 0)))
        found.append(status)
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a worker that exited but is not yet reaped (a zombie) has not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (not Linux): os.kill's word


def readiness(statuses: List[Dict[str, Any]], ready_grace: float, now: Optional[float] = None) -> Tuple[bool, Dict[str, Any]]:
    """Whether the live workers' sinks are all delivering, and the JSON body that says so or why not."""
    now = time.time() if now is None else now
    live = [status for status in statuses if status.get("live")]
    if not statuses:
        return False, {"ready": False, "reason": "no worker has reported yet"}
    if not live:
        return False, {"ready": False, "reason": "no live worker: every one has stopped, died or hung"}
    problems: Dict[str, str] = {}
    names = set()
    for status in live:
        for sink in status.get("sinks", []):
            name = str(sink.get("sink"))
            names.add(name)
            down_since = sink.get("down_since")
            if down_since is not None and now - float(down_since) > ready_grace:
                problems[name] = f"unreachable for {now - float(down_since):.0f} s"
            cap = sink.get("spool_max_bytes") or 0
            if cap and sink.get("spool_bytes", 0) > SPOOL_FULL * cap:
                problems.setdefault(name, f"spool {100 * sink['spool_bytes'] / cap:.0f}% full")
    if problems:
        return False, {"ready": False, "sinks": [{"sink": n, "reason": r} for n, r in sorted(problems.items())]}
    return True, {"ready": True, "workers": len(live), "sinks": sorted(names)}


_STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
.rejected{color:#a00}.machine{color:#777}code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
td.json{width:40%}input[type=text]{width:70%}"""
#: Replaces the table's rows with the server's every two seconds; the rows are escaped by the server,
#: and the rest of the page (the decode box and what is typed in it) is left alone.
_SCRIPT = """setInterval(function () {
  fetch("/rows", {cache: "no-store", credentials: "omit"}).then(function (r) { return r.ok ? r.text() : null; })
    .then(function (rows) {
      if (rows === null) return;
      document.getElementById("rows").innerHTML = rows;
      document.getElementById("refreshed").textContent = new Date().toISOString().slice(11, 19);
    }).catch(function () {});
}, 2000);"""


def _digest(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# Only this one style sheet and this one script (by their hashes), fetching only this server:
# whatever an event holds, it cannot run, restyle the page or send anything anywhere.
_CSP = (f"default-src 'none'; style-src 'sha256-{_digest(_STYLE)}'; script-src 'sha256-{_digest(_SCRIPT)}'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def _page(title: str, body: str, script: bool = False) -> Response:
    code = f"<script>{_SCRIPT}</script>" if script else ""
    text = (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}{code}</body></html>")
    return _secured(Response(text, mimetype="text/html"))


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _json(value: Any, limit: int = 600) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return html.escape(text if len(text) <= limit else text[:limit] + " ...")


#: The table's columns: what a person scans a row for first, then the whole event.
_HEAD = ("<tr><th>time (UTC)</th><th>dialect</th><th>type</th><th>event or name</th><th>user</th><th>agent</th>"
         "<th>event</th></tr>")


def _row(entry: Dict[str, Any]) -> str:
    at = time.strftime("%H:%M:%S", time.gmtime(float(entry.get("at", 0))))
    dialect = html.escape(str(entry.get("dialect") or "-"))
    if "rejected" in entry:
        return (f'<tr class="rejected"><td>{at}</td><td>{dialect}</td><td>rejected</td>'
                f'<td><b>{html.escape(str(entry["rejected"]))}</b></td><td>-</td><td>-</td>'
                f'<td class="json"><code>{html.escape(str(entry.get("detail", "")))}</code></td></tr>')
    event = entry.get("event") or {}
    name = event.get("event") or event.get("name") or ""
    user = event.get("userId") or event.get("anonymousId") or ""
    context = event.get("context")
    pixel = context.get("pixel") if isinstance(context, dict) else None
    pixel = pixel if isinstance(pixel, dict) else {}
    agent = html.escape(str(pixel.get("agent") or "-"))
    if pixel.get("machine"):
        agent = f'<span class="machine">{agent} (machine)</span>'
    return (f'<tr class="event"><td>{at}</td><td>{dialect}</td><td>{html.escape(str(event.get("type", "")))}</td>'
            f"<td><b>{html.escape(str(name))}</b></td><td>{html.escape(str(user))}</td><td>{agent}</td>"
            f'<td class="json"><code>{_json(event)}</code></td></tr>')


# POST: a pasted URL carries its write key, which a GET would put in the address bar and in logs.
_FORM = ('<form method="post" action="/explain"><label>Pixel URL <input type="text" name="url" '
         'autocomplete="off" required></label> <button type="submit">Decode</button></form>')


def ops_app(
    status_dir: str,
    *,
    ready_grace: float = 30.0,
    debug_page: bool = False,
    metrics_app: Optional[Callable] = None,
    explain: Optional[Callable[[str], Tuple[Optional[Dict[str, Any]], Optional[str]]]] = None,
    allowed_hosts: Iterable[str] = (),
    draining: Callable[[], bool] = lambda: False,
) -> Callable:
    """The ops WSGI app over the status files in ``status_dir`` (see the module's docstring).

    ``allowed_hosts``: names answered besides IP addresses and ``localhost``
    (a scraper that uses the service's DNS name; ``*.svc.cluster.local`` for
    any under it). ``draining``: whether the server is stopping, when
    ``/readyz`` answers 503 whatever the sinks say (``serve --drain``).
    """
    names = HostList(allowed_hosts)

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Any:
        path = request.path
        # Every path: /metrics and /readyz name sinks and counts, and a web page the operator
        # visits could read them as it could the debug page (DNS rebinding).
        if not _local_name(request.host) and _host_name(request.host) not in names:
            return Response("the ops port answers an IP address or localhost only\n", status=403, mimetype="text/plain")
        if debug_page and path == "/explain" and explain is not None:
            if request.method != "POST":
                return Response("method not allowed\n", status=405, headers={"Allow": "POST"})
            request.max_content_length = 128 * 1024
            return _explain_page(request.form.get("url", ""), explain)
        if request.method not in ("GET", "HEAD"):
            return Response("method not allowed\n", status=405, headers={"Allow": "GET, HEAD"})
        if path == "/healthz":
            return Response("ok\n", mimetype="text/plain")
        if path == "/readyz":
            if draining():
                ready, body = False, {"ready": False, "reason": "draining: the collector is stopping"}
            else:
                ready, body = readiness(read_statuses(status_dir), ready_grace)
            return Response(json.dumps(body) + "\n", status=200 if ready else 503, mimetype="application/json")
        if path == "/metrics" and metrics_app is not None:
            return metrics_app
        if debug_page and path == "/":
            return _debug_page(status_dir)
        if debug_page and path == "/rows":
            return _secured(Response(_rows(_recent(status_dir)), mimetype="text/html"))
        return Response("not found\n", status=404, mimetype="text/plain")

    return app


def _host_name(host: str) -> Optional[str]:
    try:
        return urlsplit(f"//{host}").hostname
    except ValueError:
        return None


def _local_name(host: str) -> bool:
    """Whether a ``Host`` header names this server by address or as ``localhost``.

    Guards the debug page, which shows people's events, against DNS
    rebinding: a web page the operator visits can point its own domain at
    127.0.0.1 and read what the browser fetches from there, but the browser
    then sends that domain, never an address or ``localhost``, as the host.
    An SSH tunnel or ``kubectl port-forward`` sends ``localhost``.
    """
    name = _host_name(host) or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _recent(status_dir: str) -> Tuple[List[Dict[str, Any]], int]:
    """The newest events and rejections across workers, newest first, and how many workers are live."""
    statuses = read_statuses(status_dir)
    entries = sorted((entry for status in statuses for entry in status.get("recent", [])),
                     key=lambda entry: float(entry.get("at", 0)), reverse=True)[:_PAGE_EVENTS]
    return entries, sum(1 for status in statuses if status.get("live"))


def _rows(recent: Tuple[List[Dict[str, Any]], int]) -> str:
    """The table's body: the header, a line on the workers, and a row per entry (what /rows answers)."""
    entries, live = recent
    rows = "".join(_row(entry) for entry in entries) or '<tr><td colspan="7">no events yet</td></tr>'
    return (f'{_HEAD}<tr><td colspan="7">{live} live worker(s); the last {len(entries)} events and rejections, '
            f"newest first</td></tr>{rows}")


def _debug_page(status_dir: str) -> Response:
    body = (f'<h1>pixel collector</h1><p>The table refreshes every 2 s (last: <span id="refreshed">at load</span>); '
            f"IP addresses anonymised, write keys never shown.</p>{_FORM}"
            f'<table id="events"><tbody id="rows">{_rows(_recent(status_dir))}</tbody></table>')
    return _page("pixel collector", body, script=True)


def _explain_page(url: str, explain: Callable[[str], Tuple[Optional[Dict[str, Any]], Optional[str]]]) -> Response:
    if not url:
        result = "<p>Paste a pixel URL.</p>"
    else:
        try:
            event, reason = explain(url)
        except Exception:  # explain never raises; a page must answer anyway
            _log.exception("explaining a URL failed")
            event, reason = None, "internal_error: the URL could not be decoded"
        if event is not None:
            result = f'<h2>accepted</h2><pre id="event">{html.escape(json.dumps(event, indent=2, sort_keys=True, default=str))}</pre>'
        else:
            result = f'<h2 class="rejected">rejected</h2><pre id="reason">{html.escape(str(reason))}</pre>'
    body = f'<h1>decode a pixel URL</h1>{_FORM}{result}<p><a href="/">back to the events</a></p>'
    return _page("decode a pixel URL", body)
