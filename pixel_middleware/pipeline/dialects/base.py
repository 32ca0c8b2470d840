"""What a dialect is: a name, the routes it answers, and one decode and one encode.

Decoding serves the middleware and the Flask routes; encoding serves
:func:`~pixel_middleware.build_pixel_url`. Keeping both in one class is what
makes a generated URL decode to the event it was built from.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...core.events import Event

Pairs = List[Tuple[str, str]]


class Dialect:
    """Base class for a pixel dialect.

    Subclasses set :attr:`name` and :attr:`routes` and implement
    :meth:`decode`; :meth:`encode` is optional (without it, URLs cannot be
    built in that dialect). Register a third-party dialect under the entry
    point group ``pixel_middleware.pipeline.dialects``, or pass an instance in
    ``PixelMiddleware(dialects=[...])``.
    """

    #: The name used in configuration, signals and sink metadata.
    name: str = ""
    #: werkzeug-style rule (``/v1/<api_key>/Pixel``) -> values handed to
    #: :meth:`decode` as ``route``, along with the rule's own variables.
    routes: Mapping[str, Mapping[str, str]] = {}

    def claims(self, params: Mapping[str, str]) -> bool:
        """Whether this dialect takes a request on a route it shares with others.

        Dialects that claim selectively are asked before those that take
        everything (compact claims requests carrying ``wk``; Segment the rest).
        """
        return True

    #: Where a request of this dialect carries its write key, for the rejection of one that has none.
    write_key_param: str = ""

    def carries_write_key(self, params: Mapping[str, str], route: Mapping[str, str]) -> bool:
        """Whether the request may hold a write key in this dialect's form (``False``: it surely holds none).

        A request that none of its route's dialects finds a key in is
        rejected as ``missing_write_key`` whatever else is wrong with it:
        that is the first thing its sender must fix, and a compact URL
        without ``wk`` would otherwise be read as Segment's and rejected for
        Segment's reasons. The default, ``True``, claims nothing for
        dialects that do not say.
        """
        return True

    def decode(self, params: Dict[str, str], route: Mapping[str, str]) -> Tuple[Event, Optional[str]]:
        """Return ``(event, write_key)`` or raise :class:`~pixel_middleware.DecodeError`.

        ``params`` is the query with the first of repeated names kept. The
        event must be finished (see :func:`pixel_middleware.core.events.finish`);
        the middleware adds receive time, ids and request context. The write
        key is returned beside the event and never put in it.
        """
        raise NotImplementedError

    def encode(self, event: Event, write_key: Optional[str]) -> Tuple[str, Pairs]:
        """Return ``(path, query pairs)`` that :meth:`decode` turns back into ``event``.

        Raises :class:`ValueError` naming what this dialect cannot carry.
        """
        raise ValueError(f"the {self.name} dialect cannot build URLs")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} dialect {self.name!r}>"


def text(value: Any, where: str) -> str:
    """The query-string text of one value, as the decoders read it back."""
    if type(value) is str:
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)
    raise ValueError(f"{where}: a URL cannot carry {type(value).__name__} values")


def flat_pairs(prefix: str, mapping: Mapping[str, Any], where: str) -> Pairs:
    """``{"a": {"b": 1}}`` under ``p`` -> ``[("p.a.b", "1")]``, refusing what dots cannot carry."""
    pairs: Pairs = []
    for key, value in mapping.items():
        if type(key) is not str or not key or "." in key:
            raise ValueError(f"{where}: key {key!r} cannot be written in dot notation")
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            pairs.extend(flat_pairs(name, value, where))
        elif value is not None:
            pairs.append((name, text(value, where)))
    return pairs


def require(write_key: Optional[str], dialect: str) -> str:
    if not write_key:
        raise ValueError(f"the {dialect} dialect needs write_key")
    return write_key
