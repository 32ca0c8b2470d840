"""One app's pixel state: its collector, its routes (a blueprint) and its template helpers.

The helpers are :class:`pixel_middleware.templates.TemplateHelpers`, the
same as every other front door's; Flask only says where the app's root is.
The routes hand each request to the collector and turn its WSGI answer
into a Flask response, so that the two can never differ.
"""
from __future__ import annotations

import re
import weakref
from typing import Any, Callable, Dict, List

from flask import Blueprint, Flask, Response, current_app, has_request_context, request
from werkzeug.routing import Rule

from pixel_middleware import Collector
from pixel_middleware.pipeline.collector import Match, Route
from pixel_middleware.options import names
from pixel_middleware.templates import TemplateHelpers


def _answer(collector: Collector, environ: Dict[str, Any], match: Match) -> Response:
    """The collector's own WSGI answer as a Flask response, so that the two can never differ.

    HEAD keeps the Content-Length of GET's body, exactly as the middleware does.
    """
    answer: List[Any] = []
    body = collector.respond(environ, match, lambda status, headers, exc_info=None: answer.extend((status, headers)))
    response = Response(status=answer[0], headers=answer[1])
    response.response = body  # as is: setting data would rewrite HEAD's Content-Length
    return response


def _endpoint(rule: str) -> str:
    """``/v1/<api_key>/Pixel`` -> ``v1_api_key_Pixel``: stable names for ``url_for``."""
    return re.sub(r"[^0-9A-Za-z]+", "_", re.sub(r"<(?:[^>:]+:)?([^>]+)>", r"\1", rule)).strip("_")


class PixelState(TemplateHelpers):
    """What :class:`~flask_pixel.Pixel` keeps for one app, in ``app.extensions["pixel"]``.

    :attr:`collector` is the pipeline the app's pixel routes run (its
    ``rejections`` counter and ``close()`` are public); :attr:`settings` the
    effective settings after config and options were merged. The
    ``pixel_url``, ``pixel_tag``, ``amp_pixel``, ``click_url`` and
    ``track_links`` methods are the app's Jinja globals: bound to this app,
    so that they work with no app context.
    """

    def __init__(self, app: Flask, extension: Any, settings: Dict[str, Any], owns_sink: bool) -> None:
        super().__init__(settings)
        self.app = app
        self.extension = extension
        self.prefix = settings["prefix"]
        self.signing_key = settings["signing_key"]
        #: The hosts the click route follows unsigned, for click_url() to refuse the rest when built.
        self.click_allowed_hosts = settings["click_allowed_hosts"]
        self.url_dialect = settings["url_dialect"]
        self.collector = Collector(**{name: settings[name] for name in names("pipeline") if name != "sender"}, sender=app)
        if owns_sink:
            # A sink built from a URL is ours to flush at exit (or when the app
            # goes away); a sink object passed in stays its owner's to close.
            weakref.finalize(self, self.collector.sink.close, 10)

    def _root(self) -> str:
        """The current request's root when there is one for this app (a page gets its own host,
        as its client saw it), else ``PREFERRED_URL_SCHEME://SERVER_NAME`` + ``APPLICATION_ROOT``.

        Only asked when ``PIXEL_BASE_URL`` is unset (see :meth:`base_url`).
        """
        if has_request_context() and current_app._get_current_object() is self.app:  # type: ignore[attr-defined]
            return request.url_root
        config = self.app.config
        server = config.get("SERVER_NAME")
        if server:
            root = (config.get("APPLICATION_ROOT") or "/").rstrip("/")
            return f"{config.get('PREFERRED_URL_SCHEME') or 'http'}://{server}{root}"
        raise RuntimeError(
            "pixel URLs must be absolute, and outside a request there is no host to take: "
            "set PIXEL_BASE_URL (e.g. 'https://example.com') or SERVER_NAME"
        )

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
