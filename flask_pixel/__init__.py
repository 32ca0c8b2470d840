"""Flask extension: pixel routes on a Flask app, and Jinja helpers that build pixel URLs.

::

    from flask import Flask
    from flask_pixel import Pixel

    app = Flask(__name__)
    app.config["PIXEL_WRITE_KEY"] = "my-key"
    pixel = Pixel(app)          # or Pixel() and pixel.init_app(app) in a factory

and in any template, also one rendered with no request (a Celery task
building an email)::

    {{ pixel_tag('Email Opened', user, campaign_id=campaign.id) }}

The extension reads ``PIXEL_*`` config and calls :mod:`pixel_middleware`; it
decodes nothing itself. The routes run the same
:class:`~pixel_middleware.Collector` as :class:`~pixel_middleware.PixelMiddleware`,
the helpers the same :func:`~pixel_middleware.build_pixel_url`, so a URL
built here decodes there, and both answer with the same GIF.

When not to use it: pixel routes registered on a Flask app go through the
app's ``before_request`` hooks (a site-wide login check would redirect the
pixel). Wrap ``app.wsgi_app`` in :class:`~pixel_middleware.PixelMiddleware`
instead when the pixels must bypass the app entirely.
"""
from __future__ import annotations

import re
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from flask import Blueprint, Flask, Response, current_app, has_request_context, request
from jinja2 import Undefined
from markupsafe import Markup, escape
from werkzeug.routing import Rule

from pixel_middleware import Collector, build_click_url, build_pixel_url
from pixel_middleware.clicks import CLICK_EVENT
from pixel_middleware.collector import Match, Route
from pixel_middleware.options import OPTIONS, Option, names, resolve

from .links import rewrite_links

__all__ = ["Pixel", "PixelState", "amp_pixel", "click_url", "pixel_tag", "pixel_url", "track_links", "user_id"]

#: The options a Flask app configures (``PIXEL_*`` keys, or keywords of :class:`Pixel`): the rows of
#: the core's options table that have a config key.
SETTINGS: Tuple[Option, ...] = tuple(o for o in OPTIONS if o.key and o.scope in ("pipeline", "urls"))

UserTraits = Union[Sequence[str], Callable[[Any], Optional[Mapping[str, Any]]], None]


def _answer(collector: Collector, environ: Dict[str, Any], match: Match) -> Response:
    """The collector's own WSGI answer as a Flask response, so that the two can never differ.

    HEAD keeps the Content-Length of GET's body, exactly as the middleware does.
    """
    answer: List[Any] = []
    body = collector.respond(environ, match, lambda status, headers, exc_info=None: answer.extend((status, headers)))
    response = Response(status=answer[0], headers=answer[1])
    response.response = body  # as is: setting data would rewrite HEAD's Content-Length
    return response


def user_id(user: Any) -> Optional[str]:
    """The built-in rule turning a template's ``user`` argument into a ``userId``.

    ``None`` (or a Jinja undefined) is nobody: the event gets a random
    ``anonymousId`` when it is decoded. A string is the id itself, an ``int``
    its text. A mapping gives its ``"id"``; an object its ``get_id()``
    (Flask-Login's ``UserMixin``; its anonymous user returns ``None``) or its
    ``id`` attribute. Anything else is a :class:`TypeError`, since guessing
    an id would attribute events to the wrong person. A
    ``PIXEL_USER_RESOLVER`` replaces this rule and may call it as a fallback.
    """
    if user is None or isinstance(user, Undefined):
        return None
    if isinstance(user, str):
        return str(user) or None
    if isinstance(user, int) and not isinstance(user, bool):
        return str(user)
    if isinstance(user, Mapping):
        found = user.get("id")
    elif callable(getattr(user, "get_id", None)):
        found = user.get_id()
    elif hasattr(user, "id"):
        found = user.id
    else:
        raise TypeError(
            f"cannot find a user id in {type(user).__name__!r}: pass a string id, a mapping with 'id', "
            "an object with get_id() or id, or set PIXEL_USER_RESOLVER"
        )
    return None if found is None or found == "" else str(found)


def _plain(value: Any) -> Any:
    """Template values as the dialects' encoders take them: plain str, dict, no undefineds."""
    if value is None or isinstance(value, Undefined):
        return None
    if isinstance(value, str):
        return str(value)  # Markup and other str subclasses become plain text
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _traits(user: Any, spec: UserTraits) -> Optional[Dict[str, Any]]:
    if user is None or spec is None or isinstance(user, (str, int, Undefined)):
        return None
    if callable(spec):
        found = spec(user)
        return (_plain(found) or None) if found is not None else None
    traits: Dict[str, Any] = {}
    for name in spec:  # names, as the options table split them
        value = user.get(name) if isinstance(user, Mapping) else getattr(user, name, None)
        value = _plain(value)
        if value is not None:
            traits[name] = value
    return traits or None


def _endpoint(rule: str) -> str:
    """``/v1/<api_key>/Pixel`` -> ``v1_api_key_Pixel``: stable names for ``url_for``."""
    return re.sub(r"[^0-9A-Za-z]+", "_", re.sub(r"<(?:[^>:]+:)?([^>]+)>", r"\1", rule)).strip("_")


class PixelState:
    """What :class:`Pixel` keeps for one app, in ``app.extensions["pixel"]``.

    :attr:`collector` is the pipeline the app's pixel routes run (its
    ``rejections`` counter and ``close()`` are public); :attr:`settings` the
    effective settings after config and options were merged. The
    ``pixel_url``, ``pixel_tag`` and ``amp_pixel`` methods are the app's
    Jinja globals: bound to this app, so that they work with no app context.
    """

    def __init__(self, app: Flask, extension: "Pixel", settings: Dict[str, Any], owns_sink: bool) -> None:
        self.app = app
        self.extension = extension
        self.settings = settings
        self.prefix = settings["prefix"]
        self.signing_key = settings["signing_key"]
        #: The hosts the click route follows unsigned, for click_url() to refuse the rest when built.
        self.click_allowed_hosts = settings["click_allowed_hosts"]
        self.collector = Collector(**{name: settings[name] for name in names("pipeline") if name != "sender"}, sender=app)
        self.url_dialect = settings["url_dialect"]
        answered = {dialect.name for route in self.collector.routes for dialect in route.dialects}
        if self.url_dialect.name not in answered:
            raise ValueError(
                f"PIXEL_URL_DIALECT {self.url_dialect.name!r} is not enabled in PIXEL_DIALECTS: "
                "the app would build URLs it does not answer"
            )
        if owns_sink:
            # A sink built from a URL is ours to flush at exit (or when the app
            # goes away); a sink object passed in stays its owner's to close.
            weakref.finalize(self, self.collector.sink.close, 10)

    # -- URLs -------------------------------------------------------------

    def base_url(self) -> str:
        """Where clients reach this app's pixel routes, with the prefix.

        ``PIXEL_BASE_URL`` when set, even inside a request: an email built
        while handling a request (an admin sending a newsletter, a password
        reset form) must not get that request's ``Host`` header, which may
        be an internal name or one an attacker chose. Else the current
        request's root when there is one for this app (so a page gets its
        own host, as its client saw it), else
        ``PREFERRED_URL_SCHEME://SERVER_NAME`` + ``APPLICATION_ROOT``.
        """
        base = self.settings["base_url"]
        if base:
            return base + self.prefix
        if has_request_context() and current_app._get_current_object() is self.app:  # type: ignore[attr-defined]
            return request.url_root.rstrip("/") + self.prefix
        config = self.app.config
        server = config.get("SERVER_NAME")
        if server:
            root = (config.get("APPLICATION_ROOT") or "/").rstrip("/")
            return f"{config.get('PREFERRED_URL_SCHEME') or 'http'}://{server}{root}{self.prefix}"
        raise RuntimeError(
            "pixel URLs must be absolute, and outside a request there is no host to take: "
            "set PIXEL_BASE_URL (e.g. 'https://example.com') or SERVER_NAME"
        )

    def pixel_url(self, event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> str:
        """An absolute pixel URL recording ``event`` for ``user`` with ``properties``.

        ``event`` is the event name on track, the page name on page; ``user``
        follows :func:`user_id` (or ``PIXEL_USER_RESOLVER``) and gives traits
        when ``PIXEL_USER_TRAITS`` asks for them. Keyword arguments are the
        event's properties; ``None`` values are left out. Raises
        :class:`RuntimeError` without ``PIXEL_WRITE_KEY`` or a base URL.
        """
        return self._build(event, user, type, properties, amp=False)

    def _write_key(self) -> str:
        write_key = self.settings["write_key"]
        if not write_key:
            raise RuntimeError("set PIXEL_WRITE_KEY: pixel URLs carry the write key the app's routes accept")
        return write_key

    def _build(self, event: Any, user: Any, type: str, properties: Mapping[str, Any], amp: bool) -> str:
        write_key = self._write_key()
        event = _plain(event)
        if type == "track" and not event:
            # The routes would drop it (missing_event): better to fail where the mistake is.
            raise ValueError("a track pixel needs an event name, e.g. pixel_url('Email Opened', user)")
        uid = (self.settings["user_resolver"] or user_id)(user)
        props = {k: v for k, v in _plain(properties).items() if v is not None}
        return build_pixel_url(
            self.base_url(),
            event,
            type=type,
            user_id=None if uid is None else str(uid),
            properties=props or None,
            traits=_traits(user, self.settings["user_traits"]),
            write_key=write_key,
            dialect=self.url_dialect,
            cache_buster=self._cache_buster(amp),
            signing_key=self.signing_key,
        )

    def click_url(self, url: str, user: Any = None, event: str = CLICK_EVENT, **properties: Any) -> str:
        """An absolute click URL: records ``event`` for ``user`` and redirects to ``url``.

        Signed when the app has a signing key (``PIXEL_SIGNING_KEY``, by
        default from ``SECRET_KEY``); without one, ``url``'s host must be in
        ``PIXEL_CLICK_ALLOWED_HOSTS``, or :class:`ValueError` is raised here
        (the click route would refuse every click on it).
        Raises :class:`RuntimeError` when the app has no click route
        (``PIXEL_DIALECTS`` without ``compact``): every link would be a 404.
        """
        if not any(route.click for route in self.collector.routes):
            # Here rather than at init_app: an app that builds no click URL needs no click route.
            raise RuntimeError(
                "click URLs lead to /v1/click, which only the 'compact' dialect answers: "
                "add 'compact' to PIXEL_DIALECTS, or the app's tracked links would all be 404s"
            )
        uid = (self.settings["user_resolver"] or user_id)(user)
        props = {k: v for k, v in _plain(properties).items() if v is not None}
        return build_click_url(
            self.base_url(),
            str(url),
            _plain(event) or CLICK_EVENT,
            user_id=None if uid is None else str(uid),
            properties=props or None,
            write_key=self._write_key(),
            signing_key=self.signing_key,
            allowed_hosts=self.click_allowed_hosts,
        )

    def track_links(self, html: Any, user: Any = None, **properties: Any) -> Markup:
        """``html`` (an email body) with every ``http(s)`` link turned into a :meth:`click_url`.

        Links in Outlook's conditional comments and VML buttons count too
        (see :mod:`flask_pixel.links`): Outlook for Windows shows those instead.

        ``mailto:``, ``tel:``, fragment and relative links, and links with
        a ``data-pixel-skip`` attribute, stay as they are; so does the rest
        of the HTML. So do this app's click URLs (a :meth:`click_url` in the
        body): wrapped again, one click would record two events, the outer
        one with the inner URL, write key and all, as its ``link_url``. The
        result is :class:`~markupsafe.Markup`: ``html`` is taken to be HTML
        already, as an email body is.
        """
        own: List[str] = []

        def tracked(href: str) -> bool:
            if not own:  # only once a link needs it: with no base URL, HTML without links still passes
                own.append(f"{self.base_url()}/v1/click?")
            return href.startswith(own[0])

        return Markup(rewrite_links(str(html), lambda href: self.click_url(href, user, **properties), tracked))

    def _cache_buster(self, amp: bool = False) -> Union[bool, str]:
        setting = self.settings["cache_buster"]
        if setting and amp:
            return "RANDOM"  # AMP substitutes a fresh random number on each view
        return bool(setting)

    def pixel_tag(self, event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> Markup:
        """``<img>`` of :meth:`pixel_url`: 1x1, empty ``alt``, ``hidden``, every value escaped."""
        url = self.pixel_url(event, user, type=type, **properties)
        return Markup('<img src="%s" width="1" height="1" alt="" hidden>') % escape(url)

    def amp_pixel(self, event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> Markup:
        """``<amp-pixel>`` of :meth:`pixel_url`, its cache buster AMP's ``RANDOM``.

        AMP substitutes its URL variables (``RANDOM``, ``CLIENT_ID(...)``)
        anywhere in ``src``, so keep such words out of property values. AMP
        caches serve only ``https`` pixels: use an https base URL there.
        """
        url = self._build(event, user, type, properties, amp=True)
        return Markup('<amp-pixel src="%s" layout="nodisplay"></amp-pixel>') % escape(url)

    # -- routes -----------------------------------------------------------

    def blueprint(self, name: str = "pixel") -> Blueprint:
        """A blueprint answering this state's pixel routes, ``url_for("pixel.v1_pixel_track")`` etc.

        The rules are added without a method list, as the middleware answers
        any method: GET records, HEAD only answers, others get its 405.
        (``add_url_rule`` always narrows methods and adds an automatic
        OPTIONS answer, hence the rules are added to the map directly.)
        """
        bp = Blueprint(name, __name__)
        views = [(route, _endpoint(route.rule[len(self.prefix) :]), self._view(route)) for route in self.collector.routes]

        def register(setup: Any) -> None:
            app = setup.app
            for route, endpoint, view in views:
                full = f"{setup.name_prefix}.{setup.name}.{endpoint}".lstrip(".")
                app.url_map.add(Rule(route.rule, endpoint=full, methods=None))
                app.view_functions[full] = view

        bp.record_once(register)
        return bp

    def _view(self, route: Route) -> Callable[..., Response]:
        collector = self.collector
        static = Match(route, route.values)

        def pixel(**variables: str) -> Response:
            match = Match(route, {**route.values, **variables}) if variables else static
            return _answer(collector, request.environ, match)

        return pixel


class Pixel:
    """The Flask extension: ``Pixel(app)``, or ``Pixel()`` then ``init_app(app)``.

    :param app: the app to set up now; leave it out in an app factory.
    :param options: settings that override the app's ``PIXEL_*`` config,
        named as the key without ``PIXEL_`` in lower case (``sink``,
        ``write_keys``, ``write_key``, ``url_dialect``, ``base_url``,
        ``dialects``, ``prefix``, ``cache_buster``, ``user_resolver``,
        ``user_traits``, ``signing_key``, ``signing_key_fallbacks``,
        ``require_signature``, ``signature_max_age``,
        ``click_allowed_hosts``); see :meth:`init_app` for each.

    The extension keeps no app: each app's state is in
    ``app.extensions["pixel"]`` (a :class:`PixelState`), so one ``Pixel``
    serves any number of apps.
    """

    def __init__(self, app: Optional[Flask] = None, **options: Any) -> None:
        self.options = self._check(options)
        if app is not None:
            self.init_app(app)

    @staticmethod
    def _check(options: Mapping[str, Any]) -> Dict[str, Any]:
        known = [o.name for o in SETTINGS]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown Pixel option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return dict(options)

    def init_app(self, app: Flask, **options: Any) -> PixelState:
        """Register the pixel routes and Jinja globals on ``app``.

        Settings, each an option (``init_app``'s over the constructor's) or
        else a config key, else the default:

        ``PIXEL_SINK`` (``"log:"``)
            a sink, a sink URL (``log:``, ``memory:``, ``kafka://host:9092/topic``,
            ``https://...``) or a list of either to fan out to. A sink built
            from a URL is closed (flushed) at interpreter exit.
        ``PIXEL_WRITE_KEYS`` (``None``)
            the write keys the routes accept: a collection, a comma-separated
            string, or a callable ``key -> bool``. ``None`` accepts
            ``PIXEL_WRITE_KEY`` only when it is set, else any key.
        ``PIXEL_WRITE_KEY`` (``None``)
            the write key put in URLs the helpers build; required by them.
            Every URL carries it: treat pixel URLs as credentials.
        ``PIXEL_URL_DIALECT`` (``"compact"``)
            the dialect of built URLs; must be among ``PIXEL_DIALECTS``.
        ``PIXEL_BASE_URL`` (``None``)
            the app's external root URL (``https://example.com``), used for
            every built URL, also inside a request (never the request's
            ``Host``); unset, the request's root inside a request, else
            ``SERVER_NAME`` with ``PREFERRED_URL_SCHEME`` and ``APPLICATION_ROOT``.
        ``PIXEL_DIALECTS`` (``None``: all built in)
            names (or :class:`~pixel_middleware.Dialect` objects) of the
            dialects whose routes are registered.
        ``PIXEL_PREFIX`` (``""``)
            mount the vendor routes under this path (``"/t"``).
        ``PIXEL_CACHE_BUSTER`` (``True``)
            add a random ``cb`` parameter to each built URL.
        ``PIXEL_USER_RESOLVER`` (``None``: :func:`user_id`)
            a callable ``user -> id or None`` replacing the built-in rule.
        ``PIXEL_USER_TRAITS`` (``None``: no traits)
            names of attributes or keys copied from the ``user`` argument into
            the event's traits (a list or a comma-separated string), or a
            callable ``user -> mapping``. Off by
            default, since traits in a URL travel wherever the email does.
        ``PIXEL_SIGNING_KEY`` (``None``: the app's ``SECRET_KEY``)
            sign every built URL and verify ``sig`` on the routes, with a
            salt of its own (a pixel signature never passes as a session
            cookie's, nor the reverse). ``False`` turns signing off.
        ``PIXEL_SIGNING_KEY_FALLBACKS`` (``None``)
            older keys still accepted (rotation); when the key is the
            ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS`` by default.
        ``PIXEL_REQUIRE_SIGNATURE`` (``False``)
            reject unsigned pixel URLs (``missing_signature``).
        ``PIXEL_SIGNATURE_MAX_AGE`` (``None``)
            reject URLs signed longer ago than this many seconds (or this
            :class:`~datetime.timedelta`).
        ``PIXEL_CLICK_ALLOWED_HOSTS`` (``None``)
            hosts the click route redirects to without a signature (a list
            or a comma-separated string; ``*.example.com`` for subdomains).
        ``PIXEL_MACHINE_EVENTS`` (``"keep"``)
            ``"keep"`` records fetches by machines (Apple MPP, bots,
            prefetch, link scanners) flagged ``context.pixel.machine``;
            ``"drop"`` rejects them (reason ``machine``).
        ``PIXEL_DEDUP`` (``None``)
            one event per message: a window in seconds (in memory, per
            process) or a ``redis://host:port/db`` URL (shared by workers).
        ``PIXEL_IP`` (``"full"``)
            keep the client address, ``"anonymize"`` it or ``"drop"`` it.
        ``PIXEL_PRIVACY_SIGNALS`` (``"anonymize"``)
            what a request with ``Sec-GPC: 1`` gets: ``"anonymize"``,
            ``"drop"`` (reason ``opted_out``) or ``"ignore"``.
        ``PIXEL_DNT`` (``False``)
            treat ``DNT: 1`` like ``Sec-GPC: 1``.
        ``PIXEL_METRICS`` (``False``)
            count events, rejections and sink health for Prometheus
            (``pixel_middleware.metrics_app()`` renders them; needs the
            ``metrics`` extra).

        Raises :class:`RuntimeError` when ``app`` already has a ``Pixel``,
        :class:`ValueError` for settings that contradict each other.
        """
        if "pixel" in app.extensions:
            raise RuntimeError(
                "a Pixel extension is already registered on this app: call init_app once per app"
            )
        merged = {**self.options, **self._check(options)}
        settings = _settings(app, merged)
        sink = settings["sink"]
        owns_sink = isinstance(sink, str) or (
            isinstance(sink, (list, tuple)) and all(isinstance(item, str) for item in sink)
        )
        state = PixelState(app, self, settings, owns_sink)
        app.register_blueprint(state.blueprint())
        app.extensions["pixel"] = state
        app.add_template_global(state.pixel_url, "pixel_url")
        app.add_template_global(state.pixel_tag, "pixel_tag")
        app.add_template_global(state.amp_pixel, "amp_pixel")
        app.add_template_global(state.click_url, "click_url")
        app.add_template_filter(state.track_links, "track_links")
        return state

    @staticmethod
    def state(app: Optional[Flask] = None) -> PixelState:
        """The :class:`PixelState` of ``app`` (default: the current app)."""
        app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return app.extensions["pixel"]
        except KeyError:
            raise RuntimeError("this app has no Pixel extension: call Pixel(app) or pixel.init_app(app)") from None


def _settings(app: Flask, options: Mapping[str, Any]) -> Dict[str, Any]:
    """Each setting from ``options``, else ``app.config``, checked by the options table and named as given.

    Flask's own conventions on top: the signing key defaults to ``SECRET_KEY``
    (and its fallbacks to ``SECRET_KEY_FALLBACKS``), checked under those
    names, as Flask's extensions do: a blank ``SECRET_KEY`` is an error, an app
    without one signs nothing. ``PIXEL_SIGNING_KEY = False`` turns signing
    off. Unset ``PIXEL_WRITE_KEYS`` with a ``PIXEL_WRITE_KEY`` accepts that
    key only, rather than any.
    """
    config = app.config
    given: Dict[str, Any] = {}
    labels: Dict[str, str] = {}
    for o in SETTINGS:
        if o.name in options:
            given[o.name], labels[o.name] = options[o.name], f"Pixel({o.name}=...)"
        else:
            given[o.name], labels[o.name] = config.get(o.key), o.key  # type: ignore[assignment]
    if given["signing_key"] is None:
        given["signing_key"], labels["signing_key"] = config.get("SECRET_KEY"), "SECRET_KEY"
        if given["signing_key_fallbacks"] is None:
            given["signing_key_fallbacks"] = config.get("SECRET_KEY_FALLBACKS")
            labels["signing_key_fallbacks"] = "SECRET_KEY_FALLBACKS"
    elif given["signing_key"] is False:
        given["signing_key_fallbacks"] = None
    settings = resolve(given, ("pipeline", "urls"), label=lambda o: labels.get(o.name, o.key or o.name))
    if settings["write_keys"] is None and settings["write_key"]:
        # The app's own key only, rather than any key: set PIXEL_WRITE_KEYS to widen it.
        settings["write_keys"] = [settings["write_key"]]
    return settings


def pixel_url(event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> str:
    """The current app's ``pixel_url`` template helper, for Python code (needs an app context)."""
    return Pixel.state().pixel_url(event, user, type=type, **properties)


def pixel_tag(event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> Markup:
    """The current app's ``pixel_tag`` template helper, for Python code (needs an app context)."""
    return Pixel.state().pixel_tag(event, user, type=type, **properties)


def amp_pixel(event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> Markup:
    """The current app's ``amp_pixel`` template helper, for Python code (needs an app context)."""
    return Pixel.state().amp_pixel(event, user, type=type, **properties)


def click_url(url: str, user: Any = None, event: str = CLICK_EVENT, **properties: Any) -> str:
    """The current app's ``click_url`` template helper, for Python code (needs an app context)."""
    return Pixel.state().click_url(url, user, event, **properties)


def track_links(html: Any, user: Any = None, **properties: Any) -> Markup:
    """The current app's ``track_links`` template filter, for Python code (needs an app context)."""
    return Pixel.state().track_links(html, user, **properties)
