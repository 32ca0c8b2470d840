"""The built-in dialects and the lookup of dialects by name.

Third-party dialects register a :class:`Dialect` subclass or instance under
the entry point group ``pixel_middleware.pipeline.dialects``; the entry point's name
is the name used in configuration.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict, Iterable, List, Optional, Union

from .base import Dialect
from .compact import Compact
from .mparticle import MParticle
from .rudderstack import RudderStack
from .segment import Segment

BUILTIN: Dict[str, Dialect] = {d.name: d for d in (RudderStack(), Segment(), MParticle(), Compact())}

DialectSpec = Union[str, Dialect]


def _from_entry_point(name: str) -> Optional[Dialect]:
    found = entry_points()
    group = (
        found.select(group="pixel_middleware.pipeline.dialects")
        if hasattr(found, "select")
        else found.get("pixel_middleware.pipeline.dialects", ())  # Python 3.9
    )
    for point in group:
        if point.name == name:
            loaded = point.load()
            return loaded() if isinstance(loaded, type) else loaded
    return None


def get_dialect(spec: DialectSpec) -> Dialect:
    """A dialect from its name (built in or an entry point) or as given."""
    if isinstance(spec, Dialect):
        return spec
    dialect = BUILTIN.get(spec) or _from_entry_point(spec)
    if dialect is None:
        known = ", ".join(sorted(BUILTIN))
        raise ValueError(f"unknown dialect {spec!r}: built in are {known}, others come from entry points")
    return dialect


def get_dialects(specs: Optional[Iterable[DialectSpec]]) -> List[Dialect]:
    """Dialects for ``specs``, all built-in ones for ``None``."""
    if specs is None:
        return list(BUILTIN.values())
    if isinstance(specs, (str, Dialect)):
        specs = [specs]
    return [get_dialect(spec) for spec in specs]


__all__ = ["BUILTIN", "Dialect", "get_dialect", "get_dialects"]
