"""The Django middleware, and the one collector per process that it and the template tags share.

``pixel_middleware.django.PixelMiddleware`` first in ``MIDDLEWARE`` answers
the pixel routes before sessions, authentication and CSRF see the request;
every other request goes on to ``get_response`` untouched. It is sync and
async capable, so one entry serves ``wsgi.py``, ``asgi.py``, ``runserver``
and Django's test client. It decodes nothing: it hands ``request.META``
(WSGI-shaped under WSGI and ASGI alike) to :meth:`Collector.respond
<pixel_middleware.Collector.respond>`, the answer every front door gives,
and copies the status, headers and body into an ``HttpResponse``.
"""
from __future__ import annotations

import threading
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Union

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from ..core.signals import event_received, event_rejected
from ..options import from_config, names
from ..pipeline.collector import Collector, Match
from ..templates import TemplateHelpers

#: The Django settings besides ``PIXEL_*`` that the options table reads.
_SHARED = frozenset({"SECRET_KEY", "SECRET_KEY_FALLBACKS"})


class _Settings(Mapping[str, Any]):
    """``django.conf.settings`` as the mapping :func:`~pixel_middleware.options.from_config` reads."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self._settings, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self._settings, key, default)

    def __iter__(self) -> Any:
        return iter(dir(self._settings))

    def __len__(self) -> int:
        return len(dir(self._settings))


def read_settings() -> Dict[str, Any]:
    """The pipeline and URL options from Django's settings, checked; a :class:`ValueError` names the setting."""
    from django.conf import settings

    return from_config(_Settings(settings))


class PixelState:
    """The process's pixel state: checked :attr:`settings`, the :attr:`collector`, and template helpers.

    :attr:`collector` runs every pixel route of the process (its
    ``rejections`` counter and ``close()`` are public); its signals' sender
    is the :class:`PixelMiddleware` class.
    """

    def __init__(self, settings: Dict[str, Any]) -> None:
        self.settings = settings
        sink = settings["sink"]
        #: A sink built from a URL is ours to close when the state is replaced; a sink object stays its owner's.
        self.owns_sink = sink is None or isinstance(sink, str) or (
            isinstance(sink, (list, tuple)) and all(isinstance(item, str) for item in sink))
        self.collector = Collector(**{n: settings[n] for n in names("pipeline") if n != "sender"},
                                   sender=PixelMiddleware)
        self._helpers = TemplateHelpers(settings)
        #: Whether a request may wait on something (Redis): then the async path answers from a thread.
        self._dedup_blocks = isinstance(settings["dedup"], str)

    def helpers(self, request: Optional[HttpRequest] = None) -> TemplateHelpers:
        """The template helpers, rooted at ``request``'s site when ``PIXEL_BASE_URL`` is unset.

        Without a request (a management command, a Celery task) the URLs
        take ``PIXEL_BASE_URL``, and building one without it raises a
        :class:`RuntimeError` naming that setting.
        """
        if request is None or self.settings["base_url"]:
            return self._helpers
        return TemplateHelpers(self.settings, root=lambda: _root(request))

    def blocks(self) -> bool:
        """Whether answering a GET may wait: receivers (often a database write) or a Redis dedup."""
        return self._dedup_blocks or bool(event_received.receivers) or bool(event_rejected.receivers)

    def close(self, timeout: Optional[float] = 10) -> None:
        """Flush the sink, if this state built it."""
        if self.owns_sink:
            self.collector.close(timeout)


def _root(request: HttpRequest) -> str:
    """The site's root as ``request``'s client saw it, with the script prefix (SCRIPT_NAME)."""
    script = request.META.get("SCRIPT_NAME", "") or ""
    return f"{request.scheme}://{request.get_host()}{script.rstrip('/')}"


_lock = threading.Lock()
_state: Optional[PixelState] = None


def state() -> PixelState:
    """The process's :class:`PixelState`, built from settings on first use (per worker, after a fork)."""
    global _state
    found = _state
    if found is None:
        with _lock:
            if _state is None:
                _state = PixelState(read_settings())
            found = _state
    return found


def reset_on_change(setting: str = "", **kwargs: Any) -> None:
    """``setting_changed`` receiver: a test's ``override_settings`` of a setting we read rebuilds the state."""
    global _state
    if setting.startswith("PIXEL_") or setting in _SHARED:
        with _lock:
            old, _state = _state, None
        if old is not None:
            old.close()


def _answer(collector: Collector, environ: Mapping[str, Any], match: Match) -> HttpResponse:
    """The collector's own WSGI answer as an ``HttpResponse``, so that the two can never differ.

    HEAD keeps GET's ``Content-Length``, as the WSGI middleware does; a
    302 gets no ``Content-Type``, as there.
    """
    answer: List[Any] = []
    body = collector.respond(environ, match, lambda status, headers, exc_info=None: answer.extend((status, headers)))
    try:
        content = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = answer
    code, _, reason = status.partition(" ")
    response = HttpResponse(content, status=int(code), reason=reason or None)
    if not any(name.lower() == "content-type" for name, _ in headers):
        del response["Content-Type"]
    for name, value in headers:
        response[name] = value
    return response


@sync_and_async_middleware
class PixelMiddleware:
    """Answer pixel routes inside Django; pass every other request to ``get_response``.

    Put it first in ``MIDDLEWARE``. GET records the event and gets the GIF,
    HEAD the same headers and no event, other methods 405 with ``Allow``;
    the click route a 302 or a 400. Under ASGI the GET is answered from a
    worker thread whenever it may wait (signal receivers, which typically
    write to the database, or a Redis dedup), so the event loop never blocks.

    Signals (:data:`~pixel_middleware.event_received`,
    :data:`~pixel_middleware.event_rejected`) are sent with this class as
    the sender.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        # Django builds its middleware as the server starts (get_wsgi_application, get_asgi_application):
        # a setting that would switch a protection off stops it there, named, not at the first pixel.
        # The collector itself is still built at first use, in the process that serves (after a fork).
        try:
            read_settings()
        except ValueError as error:
            raise ImproperlyConfigured(f"pixel_middleware: {error}") from None
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Union[HttpResponse, Awaitable[HttpResponse]]:
        if self._async:
            return self.__acall__(request)
        pixel = state()
        match = pixel.collector.match(request.path_info)
        if match is None:
            return self.get_response(request)
        return _answer(pixel.collector, request.META, match)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        pixel = state()
        match = pixel.collector.match(request.path_info)
        if match is None:
            return await self.get_response(request)
        if request.method == "GET" and pixel.blocks():
            return await sync_to_async(_answer, thread_sensitive=False)(pixel.collector, request.META, match)
        return _answer(pixel.collector, request.META, match)
