"""``{% load pixel %}``: ``pixel_url``, ``pixel_tag``, ``amp_pixel``, ``click_url`` and ``track_links``.

The tags call the same :class:`~pixel_middleware.templates.TemplateHelpers`
as Flask's Jinja globals, so a URL is the same URL from either framework::

    {% load pixel %}
    <img src="{% pixel_url "Email Opened" user campaign_id=c.id %}" width="1" height="1" alt="">
    {% pixel_tag "Email Opened" user campaign_id=c.id %}
    {% amp_pixel "Article" user type="page" %}
    <a href="{% click_url "https://shop.example.com/sale" user campaign_id=c.id %}">Sale</a>
    {{ body|track_links:user }}
    {% track_links user campaign_id=c.id %}<a href="https://example.com/">...</a>{% endtrack_links %}

Escaping follows the Flask helpers: ``pixel_url`` and ``click_url`` give
plain text, which Django's autoescaping escapes (``&`` becomes ``&amp;`` in
an attribute, as it must); ``pixel_tag``, ``amp_pixel`` and ``track_links``
give HTML, marked safe, with every value inside escaped. ``user`` follows
:func:`~pixel_middleware.templates.user_id`: a model's ``pk``, an
``AnonymousUser`` as nobody. Inside a request the URLs take the request's
host unless ``PIXEL_BASE_URL`` is set; rendered with no request (a
management command, a Celery task) they need ``PIXEL_BASE_URL``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from django import template
from django.template.base import FilterExpression, NodeList, Parser, Token, token_kwargs
from django.template.context import Context
from django.utils.safestring import SafeString, mark_safe

from ...core.events import CLICK_EVENT
from ...templates import TemplateHelpers
from ..middleware import state

register = template.Library()


def _helpers(context: Optional[Context]) -> TemplateHelpers:
    return state().helpers(getattr(context, "request", None))


@register.simple_tag(takes_context=True)
def pixel_url(context: Context, event: Optional[str] = None, user: Any = None, type: str = "track",
              **properties: Any) -> str:
    """An absolute pixel URL (text: autoescaping escapes it where it lands)."""
    return _helpers(context).pixel_url(event, user, type=type, **properties)


@register.simple_tag(takes_context=True)
def pixel_tag(context: Context, event: Optional[str] = None, user: Any = None, type: str = "track",
              **properties: Any) -> SafeString:
    """The ``<img>`` of :func:`pixel_url`, every value escaped inside it."""
    return mark_safe(str(_helpers(context).pixel_tag(event, user, type=type, **properties)))


@register.simple_tag(takes_context=True)
def amp_pixel(context: Context, event: Optional[str] = None, user: Any = None, type: str = "track",
              **properties: Any) -> SafeString:
    """The ``<amp-pixel>`` of :func:`pixel_url`, its cache buster AMP's ``RANDOM``."""
    return mark_safe(str(_helpers(context).amp_pixel(event, user, type=type, **properties)))


@register.simple_tag(takes_context=True)
def click_url(context: Context, url: str, user: Any = None, event: str = CLICK_EVENT, **properties: Any) -> str:
    """An absolute click URL that records the click and redirects to ``url`` (text, as :func:`pixel_url`)."""
    return _helpers(context).click_url(url, user, event, **properties)


@register.filter(name="track_links")
def track_links_filter(html: Any, user: Any = None) -> SafeString:
    """``{{ body|track_links:user }}``: every ``http(s)`` link of ``body`` (HTML already) made a click URL.

    A filter sees no request, so the URLs take ``PIXEL_BASE_URL``; use the
    block tag inside a request without one.
    """
    return mark_safe(str(state().helpers().track_links(html, user)))


class TrackLinksNode(template.Node):
    """``{% track_links user key=value %}...{% endtrack_links %}``: the rendered block with its links tracked."""

    def __init__(self, nodelist: NodeList, args: List[FilterExpression], kwargs: Dict[str, FilterExpression]) -> None:
        self.nodelist = nodelist
        self.args = args
        self.kwargs = kwargs

    def render(self, context: Context) -> str:
        html = self.nodelist.render(context)
        args = [arg.resolve(context) for arg in self.args]
        kwargs = {name: value.resolve(context) for name, value in self.kwargs.items()}
        return mark_safe(str(_helpers(context).track_links(html, *args, **kwargs)))


@register.tag(name="track_links")
def track_links_tag(parser: Parser, token: Token) -> TrackLinksNode:
    bits = token.split_contents()[1:]
    kwargs = token_kwargs(bits, parser)  # leading key=value pairs are consumed...
    args = []
    while bits:  # ...so the user comes first, then the properties
        kwarg = token_kwargs(bits, parser)
        if kwarg:
            kwargs.update(kwarg)
            continue
        if len(args) == 1 or kwargs:
            raise template.TemplateSyntaxError("track_links takes one user, then key=value properties")
        args.append(parser.compile_filter(bits.pop(0)))
    nodelist = parser.parse(("endtrack_links",))
    parser.delete_first_token()
    return TrackLinksNode(nodelist, args, kwargs)
