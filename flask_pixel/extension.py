"""The Flask extension: ``Pixel(app)`` reads the app's ``PIXEL_*`` config through the options table.

Flask's own conventions on top of the table: the signing key defaults to
``SECRET_KEY`` (and its fallbacks to ``SECRET_KEY_FALLBACKS``), and an app
with a ``PIXEL_WRITE_KEY`` but no ``PIXEL_WRITE_KEYS`` accepts its own key
only. Everything else (the collector, the helpers) is the core's.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from flask import Flask, current_app

from pixel_middleware.options import OPTIONS, Option, from_config

from .state import PixelState

#: The options a Flask app configures (``PIXEL_*`` keys, or keywords of :class:`Pixel`): the rows of
#: the core's options table that have a config key.
SETTINGS: Tuple[Option, ...] = tuple(o for o in OPTIONS if o.key and o.scope in ("pipeline", "urls"))


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
    """Each setting from ``options``, else ``app.config``, checked by the options table and named as given."""
    return from_config(app.config, options, label=lambda name: f"Pixel({name}=...)")
