"""The framework-free pipeline behind every pixel route: match, decode, enrich, signal, sink.

:class:`~pixel_middleware.PixelMiddleware` wraps it around a WSGI app;
:mod:`flask_pixel` mounts the same object's routes on a Flask app. Anything
else (a Django view, another framework) can call :meth:`Collector.collect`
with a WSGI environ and answer with :mod:`pixel_middleware.core.gif`.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from blinker import Signal

from .steps.agents import AgentStep
from .steps.dedup import dedup_step
from . import clicks
from .dialects import Dialect, get_dialects
from ..core.events import DecodeError, Event, enrich, now
from ..core.query import parse_query
from ..core.gif import GIF, GIF_HEADERS, respond
from .steps.privacy import PrivacyStep
from ..core.signals import event_received, event_rejected, send_safely
from ..options import docstring, resolve
from .steps.signing import Verifier
from ..sinks import resolve_sink

_log = logging.getLogger("pixel_middleware")
_VARIABLE = re.compile(r"<(?:[^>:]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


class Route(NamedTuple):
    """One URL rule and the dialects that answer it, in the order they are asked."""

    rule: str
    dialects: Tuple[Dialect, ...]
    values: Mapping[str, str]
    #: The click route (``values["click"] == "1"``): a redirect, not a GIF.
    click: bool = False


class Match(NamedTuple):
    """A request path matched to its route, with the rule's variables filled in."""

    route: Route
    values: Mapping[str, str]


class Hit(NamedTuple):
    """One decoded request, as the pipeline's steps see it beside its event."""

    environ: Mapping[str, Any]
    match: Match
    dialect: Dialect
    params: Mapping[str, str]
    write_key: str
    #: Whether the URL gave the ``messageId`` (else the server made one up).
    message_id_given: bool = False


#: Builds a Hit without NamedTuple's keyword-handling __new__ (half the cost, on every request).
_new_hit = tuple.__new__

#: A pipeline step: annotates the event (``context.pixel``) or raises
#: :class:`~pixel_middleware.DecodeError` with the reason to reject it.
Step = Callable[[Event, Hit], None]


def _routes(dialects: Iterable[Dialect], prefix: str) -> List[Route]:
    by_rule: Dict[str, List[Dialect]] = {}
    values: Dict[str, Mapping[str, str]] = {}
    for dialect in dialects:
        for rule, rule_values in dialect.routes.items():
            full = prefix + rule
            if full in values and dict(values[full]) != dict(rule_values):
                raise ValueError(f"dialects disagree about the route {full}")
            by_rule.setdefault(full, []).append(dialect)
            values[full] = rule_values
    # Selective dialects first: compact must see a request before Segment takes it.
    selective = lambda d: type(d).claims is Dialect.claims  # noqa: E731
    return [Route(rule, tuple(sorted(ds, key=selective)), values[rule], values[rule].get("click") == "1")
            for rule, ds in by_rule.items()]


def _missing_write_key(route: Route) -> DecodeError:
    """The rejection of a request without a write key, saying where the route's dialects look for one."""
    where = "; ".join(f"{d.name}: {d.write_key_param}" for d in route.dialects if d.write_key_param)
    return DecodeError("missing_write_key", f"the request carries no write key ({where})" if where else
                       "the request carries no write key")


def _compile(rule: str) -> "re.Pattern[str]":
    """``/v1/<api_key>/Pixel`` -> a pattern with a named group per variable."""
    parts, pos = [], 0
    for m in _VARIABLE.finditer(rule):
        parts += [re.escape(rule[pos : m.start()]), f"(?P<{m.group(1)}>[^/]+)"]
        pos = m.end()
    parts.append(re.escape(rule[pos:]))
    return re.compile("".join(parts) + r"\Z")


class Collector:
    """Decodes pixel requests and delivers their events.

    Options (keywords only; each a row of :mod:`pixel_middleware.options`,
    checked there, so that every front door takes the same values):

    ``write_keys`` are credentials: they are never put in events, signals or
    logs. A ``signing_key`` makes accepted events carry
    ``context.pixel.signed``, and invalid signatures are rejected
    (``bad_signature``); see :mod:`pixel_middleware.pipeline.steps.signing`. See
    :mod:`.agents` for ``machine_events``, :mod:`.dedup` for ``dedup``,
    :mod:`.privacy` for ``ip``, ``privacy_signals`` and ``dnt``, and
    :mod:`pixel_middleware.pipeline.metrics` for ``metrics``.

    ``after_response`` records a pixel's event once its GIF is written,
    when the server closes the response (PEP 3333 servers all call
    ``close()``), instead of before answering. The client gets its GIF
    sooner, and a server that waits for the client to close the
    connection (gunicorn's sync workers do) does the work meanwhile.
    The click route still decides first: its answer depends on the verdict.

    A value that would weaken a protection (a blank signing key, a blank
    boolean, a dedup window of 0) is a :class:`ValueError` naming the option.

"""

    #: Where an accepted event is announced: :data:`event_received`, but for
    #: explain()'s collector, whose events nobody may hear of (a URL pasted to
    #: look at is not an open).
    _received: Signal = event_received

    def __init__(self, **options: Any) -> None:
        settings = resolve(options)
        #: The options in effect, checked (see :mod:`pixel_middleware.options`).
        self.settings = settings
        sink, write_keys, sender = settings["sink"], settings["write_keys"], settings["sender"]
        after_response, prefix = settings["after_response"], settings["prefix"]
        signing_key, require_signature = settings["signing_key"], settings["require_signature"]
        self.sink = resolve_sink(sink)
        self._after_response = after_response
        self.sender = sender if sender is not None else self
        self.prefix = prefix
        self.routes = _routes(get_dialects(settings["dialects"]), self.prefix)
        if write_keys is None or callable(write_keys):
            self._key_ok = write_keys
        else:
            self._key_ok = frozenset(write_keys).__contains__
        #: Rejections by reason since start, e.g. ``{"missing_identity": 3}``;
        #: ``sink_error`` counts events a sink failed to take, and
        #: ``dedup_unavailable`` Redis outages (the events passed).
        self.rejections: Counter = Counter()
        self._count_lock = threading.Lock()
        #: The steps every decoded event passes, in order, after enrichment.
        self._steps: Tuple[Step, ...] = ()
        self._verifier: Optional[Verifier] = None
        if signing_key:
            self._verifier = Verifier(
                signing_key,
                settings["signing_key_fallbacks"] or (),
                prefix=self.prefix,
                required=require_signature,
                max_age=settings["signature_max_age"],
            )
            self._steps += (self._verifier,)  # first, as DESIGN.md orders the steps
        self._click_hosts = clicks.allowed_hosts(settings["click_allowed_hosts"])
        self._steps += (AgentStep(settings["machine_events"]),)
        ip, privacy_signals, dnt = settings["ip"], settings["privacy_signals"], settings["dnt"]
        if ip != "full" or privacy_signals != "ignore" or dnt:
            self._steps += (PrivacyStep(ip, privacy_signals, dnt),)
        if settings["dedup"] is not None:
            self._steps += (dedup_step(settings["dedup"], self._count),)
        self._metrics: Any = None
        if settings["metrics"]:
            from .metrics import Metrics

            self._metrics = Metrics(self.rejections, self._count_lock, getattr(self.sink, "health", list))
        self._static: Dict[str, Match] = {}
        self._dynamic: List[Tuple[str, str, Any, Route]] = []
        for route in self.routes:
            if "<" not in route.rule:
                self._static[route.rule] = Match(route, route.values)
                continue
            head = route.rule[: route.rule.index("<")]
            tail = route.rule[route.rule.rindex(">") + 1 :]
            self._dynamic.append((head, tail, _compile(route.rule), route))

    def match(self, path: str) -> Optional[Match]:
        """The pixel route ``path`` (a WSGI ``PATH_INFO``) belongs to, or ``None``."""
        found = self._static.get(path)
        if found is not None or not self._dynamic:
            return found
        for head, tail, pattern, route in self._dynamic:
            if path.endswith(tail) and path.startswith(head):
                m = pattern.match(path)
                if m is not None:
                    return Match(route, {**route.values, **{k: _from_wsgi(v) for k, v in m.groupdict().items()}})
        return None

    def respond(self, environ: Mapping[str, Any], match: Match, start_response: Callable) -> Iterable[bytes]:
        """Answer a request on a pixel route as WSGI does; every adapter answers through this.

        GET records the event; HEAD gets the same headers and records nothing;
        other methods get 405. The click route answers a 302 to its target
        instead of the GIF, or a 400 when the target is not safe to follow
        (see :mod:`pixel_middleware.pipeline.clicks`).
        """
        if match.route.click:
            return clicks.answer(self, environ, match, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET":
            if self._after_response:
                start_response("200 OK", GIF_HEADERS[:])
                return _RecordOnClose(self, environ, match)
            self.collect(environ, match)
        return respond(method, start_response)

    def collect(self, environ: Mapping[str, Any], match: Match, received_at: Optional[str] = None) -> Optional[Event]:
        """Decode the request in ``environ`` and deliver its event; never raises.

        Returns the accepted event, or ``None`` when the request was rejected
        (the reason is logged on the ``pixel_middleware`` logger, counted in
        :attr:`rejections` and sent on ``event_rejected``).

        :param received_at: when the request arrived, in ``receivedAt``'s
            format, if that was before this call (as it is when the event is
            recorded after the response); the default is now.
        """
        if received_at is None:
            received_at = now()
        dialect: Optional[Dialect] = None
        params: Optional[Dict[str, str]] = None
        try:
            params = parse_query(environ.get("QUERY_STRING", ""))
            for dialect in match.route.dialects:
                if dialect.claims(params):
                    break
            else:
                dialect = None
                raise DecodeError("unknown_dialect", "no dialect claims this request")
            event, write_key = dialect.decode(params, match.values)
            if not write_key:
                raise _missing_write_key(match.route)
            key_ok = self._key_ok
            if key_ok is not None and not key_ok(write_key):
                raise DecodeError("invalid_write_key", "the write key is not accepted")
            message_id_given = "messageId" in event
            enrich(event, environ, received_at)
            if self._steps:
                hit = _new_hit(Hit, (environ, match, dialect, params, write_key, message_id_given))
                for step in self._steps:
                    step(event, hit)
        except DecodeError as error:
            if error.reason == "missing_write_key" or (
                    params is not None
                    and not any(d.carries_write_key(params, match.values) for d in match.route.dialects)):
                error = _missing_write_key(match.route)  # named first, whatever else is wrong, and where to put it
            self._reject(error.reason, str(error), dialect, match, received_at)
            return None
        except Exception:
            _log.exception("dialect %s failed on a request; dropped", dialect and dialect.name)
            self._reject("internal_error", "the dialect raised", dialect, match, received_at)
            return None
        if event_received.receivers:  # the module's signal: no cost when nobody listens at all
            send_safely(self._received, self.sender, event=event, dialect=dialect.name)
        try:
            self.sink.emit(event, dialect=dialect.name, write_key=write_key)
        except Exception as error:
            # One line, no traceback: whatever makes an event unfit for a sink can be
            # sent by any client, as often as it likes.
            _log.error("sink %r refused event %s: %s: %.200s", self.sink, event.get("messageId"), type(error).__name__, error)
            self._count("sink_error")
            return event
        if self._metrics is not None:
            self._metrics.event(dialect.name, event["type"])
        return event

    def _count(self, reason: str) -> None:
        """Count ``reason`` in :attr:`rejections` (request threads count at once)."""
        with self._count_lock:
            self.rejections[reason] += 1

    def _reject(self, reason: str, detail: str, dialect: Optional[Dialect], match: Match,
                received_at: Optional[str] = None) -> None:
        name = dialect.name if dialect is not None else None
        self._count(reason)
        # The rule, not the path or query: both may carry the write key.
        _log.warning("pixel rejected: %s (%s) dialect=%s route=%s", reason, detail, name, match.route.rule)
        if event_rejected.receivers:
            send_safely(event_rejected, self.sender, reason=reason, detail=detail, dialect=name,
                        received_at=received_at or now())

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close the sink (then count its last figures)."""
        self.sink.close(timeout)
        if self._metrics is not None:
            self._metrics.close()


Collector.__doc__ = f"{Collector.__doc__}{docstring('pipeline')}\n    "


def _from_wsgi(text: str) -> str:
    """A piece of ``PATH_INFO`` as the client wrote it: PEP 3333 hands the path's UTF-8 bytes over as latin-1.

    mParticle's write key is a path segment; a key that is not UTF-8 stays
    as it came, and no configured key equals it.
    """
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


class _RecordOnClose:
    """The GIF as a response body whose ``close()`` records the event (``after_response``).

    Not a ``list``: granian and bjoern write a list without calling its
    ``close()``, and the event would be lost without a word. PEP 3333 makes
    every server call ``close()`` on an iterable that has one.
    """

    __slots__ = ("_pending",)

    def __init__(self, collector: Collector, environ: Mapping[str, Any], match: Match) -> None:
        # Stamped now: writing the GIF to a slow client, or a busy worker, may delay close() by any time.
        self._pending: Optional[Tuple[Collector, Mapping[str, Any], Match, str]] = (collector, environ, match, now())

    def __iter__(self) -> Iterator[bytes]:
        return iter(_BODY)

    def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:  # once, however often a server calls close()
            collector, environ, match, received_at = pending
            collector.collect(environ, match, received_at)


_BODY = (GIF,)
