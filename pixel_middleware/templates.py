"""The template helpers every front door gives its templates: ``pixel_url``, ``pixel_tag``, ``amp_pixel``, ``click_url``, ``track_links``.

One implementation, so that a URL built in a Flask template, a Django tag,
a FastAPI page or a Celery task's email is the same URL, and decodes through
the same dialect on any route: the front doors only say where the site's
root is (a request's, or the configured ``base_url``) and how their
template engine marks text safe. :func:`install` puts them on any Jinja2
``Environment``.

The helpers read the ``urls`` rows of :mod:`pixel_middleware.options`
and the pipeline rows a built URL must agree with (:data:`HELPER_OPTIONS`):
the prefix the routes sit under, the signing key that signs what the
routes verify, the hosts the click route follows unsigned, and the
dialects the routes answer.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from markupsafe import Markup, escape

from .core.events import CLICK_EVENT
from .pipeline.dialects import get_dialects
from .links import rewrite_links
from .options import names, resolve
from .pipeline.urls import build_click_url, build_pixel_url

try:  # a Jinja undefined is nobody and nothing; Jinja is not needed otherwise
    from jinja2 import Undefined as _Undefined
except ImportError:  # pragma: no cover - Jinja comes with Flask
    _Undefined = type("_Undefined", (), {})  # type: ignore[assignment,misc]

#: The options the helpers read: every ``urls`` row, and the pipeline rows a URL must agree with.
HELPER_OPTIONS = (*names("urls"), "prefix", "signing_key", "click_allowed_hosts", "dialects")


def user_id(user: Any) -> Optional[str]:
    """The built-in rule turning a template's ``user`` argument into a ``userId``.

    ``None`` (or a Jinja undefined, or an empty string: Django's missing
    variable) is nobody: the event gets a random ``anonymousId`` when it is
    decoded. A string is the id itself, an ``int`` its text. A mapping gives
    its ``"id"``; an object its ``get_id()`` (Flask-Login's ``UserMixin``;
    its anonymous user returns ``None``), else ``None`` when it says
    ``is_anonymous`` (Django's ``AnonymousUser``), else its ``pk`` (a Django
    model's primary key, whatever its name), else its ``id``. Anything else
    is a :class:`TypeError`, since guessing an id would attribute events to
    the wrong person. A ``user_resolver`` option replaces this rule and may
    call it as a fallback.
    """
    if user is None or isinstance(user, _Undefined):
        return None
    if isinstance(user, str):
        return str.__str__(user) or None  # a plain str: Django's SafeString keeps itself on str()
    if isinstance(user, int) and not isinstance(user, bool):
        return str(user)
    if isinstance(user, Mapping):
        found = user.get("id")
    elif callable(getattr(user, "get_id", None)):
        found = user.get_id()
    elif getattr(user, "is_anonymous", False) is True:
        found = None
    elif hasattr(user, "pk"):
        found = user.pk
    elif hasattr(user, "id"):
        found = user.id
    else:
        raise TypeError(
            f"cannot find a user id in {type(user).__name__!r}: pass a string id, a mapping with 'id', "
            "an object with get_id(), pk or id, or set a user resolver (PIXEL_USER_RESOLVER)"
        )
    return None if found is None or found == "" else str.__str__(str(found))


def _plain(value: Any) -> Any:
    """Template values as the dialects' encoders take them: plain str, dict, no undefineds."""
    if value is None or isinstance(value, _Undefined):
        return None
    if isinstance(value, str):
        return str.__str__(value)  # Markup, SafeString and other str subclasses become plain text
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _traits(user: Any, spec: Any) -> Optional[Dict[str, Any]]:
    if user is None or spec is None or isinstance(user, (str, int, _Undefined)):
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


class TemplateHelpers:
    """The five helpers, bound to one site's settings.

    :param settings: checked values of at least :data:`HELPER_OPTIONS`
        (:func:`pixel_middleware.options.resolve` gives them).
    :param root: where the site is when ``base_url`` is unset, without the
        prefix: a front door's request root, or its own configured host. It
        raises :class:`RuntimeError` saying what to set when there is none.
        ``base_url``, when set, wins even inside a request: an email built
        while handling one must not get that request's ``Host`` header,
        which may be an internal name or one an attacker chose.

    The options table has checked that the URL dialect is among the
    dialects (a site must not build URLs its routes do not answer).
    """

    def __init__(self, settings: Mapping[str, Any], root: Optional[Callable[[], str]] = None) -> None:
        self.settings = settings
        if root is not None:
            self._root = root  # type: ignore[method-assign]
        dialects = get_dialects(settings["dialects"])
        self._clicks = any(values.get("click") == "1" for d in dialects for values in d.routes.values())

    def _root(self) -> str:
        """No request, no host: a front door with requests overrides this, or passes ``root``."""
        raise RuntimeError(
            "pixel URLs must be absolute, and outside a request there is no host to take: "
            "set base_url (PIXEL_BASE_URL), e.g. 'https://example.com'"
        )

    def base_url(self) -> str:
        """Where clients reach the pixel routes, with the prefix: ``base_url``, else the front door's root."""
        return (self.settings["base_url"] or self._root().rstrip("/")) + self.settings["prefix"]

    def _write_key(self) -> str:
        write_key = self.settings["write_key"]
        if not write_key:
            raise RuntimeError("set PIXEL_WRITE_KEY: pixel URLs carry the write key the routes accept")
        return write_key

    def _user(self, user: Any) -> Optional[str]:
        uid = (self.settings["user_resolver"] or user_id)(user)
        return None if uid is None else str.__str__(str(uid))

    def pixel_url(self, event: Optional[str] = None, user: Any = None, *, type: str = "track", **properties: Any) -> str:
        """An absolute pixel URL recording ``event`` for ``user`` with ``properties``.

        ``event`` is the event name on track, the page name on page; ``user``
        follows :func:`user_id` (or the ``user_resolver``) and gives traits
        when ``user_traits`` asks for them. Keyword arguments are the
        event's properties; ``None`` values are left out. Raises
        :class:`RuntimeError` without a write key or a base URL.
        """
        return self._build(event, user, type, properties, amp=False)

    def _build(self, event: Any, user: Any, type: str, properties: Mapping[str, Any], amp: bool) -> str:
        write_key = self._write_key()
        event = _plain(event)
        if type == "track" and not event:
            # The routes would drop it (missing_event): better to fail where the mistake is.
            raise ValueError("a track pixel needs an event name, e.g. pixel_url('Email Opened', user)")
        props = {k: v for k, v in _plain(properties).items() if v is not None}
        return build_pixel_url(
            self.base_url(),
            event,
            type=type,
            user_id=self._user(user),
            properties=props or None,
            traits=_traits(user, self.settings["user_traits"]),
            write_key=write_key,
            dialect=self.settings["url_dialect"],
            cache_buster=self._cache_buster(amp),
            signing_key=self.settings["signing_key"],
        )

    def click_url(self, url: str, user: Any = None, event: str = CLICK_EVENT, **properties: Any) -> str:
        """An absolute click URL: records ``event`` for ``user`` and redirects to ``url``.

        Signed when there is a signing key; without one, ``url``'s host must
        be in ``click_allowed_hosts``, or :class:`ValueError` is raised here
        (the click route would refuse every click on it). Raises
        :class:`RuntimeError` when no dialect answers clicks (``dialects``
        without ``compact``): every link would be a 404.
        """
        if not self._clicks:
            raise RuntimeError(
                "click URLs lead to /v1/click, which only the 'compact' dialect answers: "
                "add 'compact' to PIXEL_DIALECTS, or the tracked links would all be 404s"
            )
        props = {k: v for k, v in _plain(properties).items() if v is not None}
        return build_click_url(
            self.base_url(),
            str.__str__(str(url)),
            _plain(event) or CLICK_EVENT,
            user_id=self._user(user),
            properties=props or None,
            write_key=self._write_key(),
            signing_key=self.settings["signing_key"],
            allowed_hosts=self.settings["click_allowed_hosts"],
        )

    def track_links(self, html: Any, user: Any = None, **properties: Any) -> Markup:
        """``html`` (an email body) with every ``http(s)`` link turned into a :meth:`click_url`.

        Links in Outlook's conditional comments and VML buttons count too
        (see :mod:`pixel_middleware.links`): Outlook for Windows shows those
        instead. ``mailto:``, ``tel:``, fragment and relative links, and
        links with a ``data-pixel-skip`` attribute, stay as they are; so
        does the rest of the HTML. So do this site's click URLs: wrapped
        again, one click would record two events, the outer one with the
        inner URL, write key and all, as its ``link_url``. The result is
        :class:`~markupsafe.Markup`: ``html`` is taken to be HTML already,
        as an email body is.
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

    def globals(self) -> Dict[str, Callable[..., Any]]:
        """The template globals, by name (``track_links`` is also a filter)."""
        return {"pixel_url": self.pixel_url, "pixel_tag": self.pixel_tag, "amp_pixel": self.amp_pixel,
                "click_url": self.click_url, "track_links": self.track_links}


def install(env: Any, **options: Any) -> TemplateHelpers:
    """Put the helpers on a Jinja2 ``env`` (FastAPI's ``Jinja2Templates(...).env``, a Celery worker's own).

    ``options`` are the same keywords as :class:`~pixel_middleware.Collector`'s
    and the Flask extension's, from :data:`HELPER_OPTIONS`: at least
    ``base_url`` (no request tells the environment where the site is) and
    ``write_key``; give the collector's ``signing_key``, ``prefix``,
    ``click_allowed_hosts`` and ``dialects`` too, so that the URLs are the
    ones its routes accept. Checked by the options table, as every front
    door's are. Returns the helpers, also usable from Python.
    """
    unknown = sorted(set(options) - set(HELPER_OPTIONS))
    if unknown:
        raise TypeError(f"unknown template option(s) {', '.join(unknown)}; known: {', '.join(HELPER_OPTIONS)}")
    settings = resolve(options, ("urls", "pipeline"))
    helpers = TemplateHelpers(settings)
    env.globals.update(helpers.globals())
    env.filters["track_links"] = helpers.track_links
    return helpers
