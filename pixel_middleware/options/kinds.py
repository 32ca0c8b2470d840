"""The kinds of value an option may take, and how text (the environment's, a config file's) becomes one.

Each check takes the option's row (for its name, choices and bounds) and a
value, and returns the value in its canonical form or raises
:class:`Invalid` saying what is wrong, which the row prefixes with the
option's name as the user wrote it. Apart from the table itself
(:mod:`pixel_middleware.options`) so that the table reads as its rows.
"""
from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any, Callable, Dict, List
from urllib.parse import parse_qsl, urlsplit

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
#: Where a comma in a list of sinks starts the next sink (Kafka URLs hold commas of their own).
_NEXT_SINK = re.compile(r",(?=\s*(?:log|file|memory|kafka|https?):)")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Invalid(Exception):
    """What is wrong with a value, to be prefixed with the option's label."""


def _text(option: Any, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be text, not {type(value).__name__}")
    if not value.strip():
        raise Invalid("is blank: give a value, or leave it unset for the default")
    return value.strip()


def _address(option: Any, value: Any) -> str:
    # gunicorn binds an empty host to every interface: PIXEL_OPS_HOST= left blank by a
    # template would publish /metrics, /readyz and the debug page to the world.
    if isinstance(value, str) and not value.strip():
        raise Invalid("is blank: it must name an address (0.0.0.0: every interface)")
    return _text(option, value)


def _bool(option: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        if not word:
            raise Invalid("is blank: give one of 1/true/yes/on or 0/false/no/off")
    raise Invalid("must be one of 1/true/yes/on or 0/false/no/off")


def _number(option: Any, value: Any) -> float:
    """A finite number within the option's bounds (``int`` for kind ``int``); a timedelta for ``seconds``."""
    if isinstance(value, timedelta) and option.kind == "seconds":
        value = value.total_seconds()
    if isinstance(value, str):
        text = _text(option, value)
        try:
            value = int(text) if option.kind == "int" else float(text)
        except ValueError:
            raise Invalid(f"must be {'an integer' if option.kind == 'int' else 'a number'}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"must be {'an integer' if option.kind == 'int' else 'a number'}, not {type(value).__name__}")
    if option.kind == "int" and not isinstance(value, int):
        if not float(value).is_integer():
            raise Invalid("must be an integer")
        value = int(value)
    if not math.isfinite(value):
        raise Invalid("must be a finite number")
    low, high = option.bounds
    if (low is not None and (value <= low if option.above else value < low)) or (high is not None and value > high):
        if high is not None:
            wanted = f"from {low} to {high}"
        else:
            wanted = f"above {low}" if option.above else f"at least {low}"
        raise Invalid(f"must be {wanted}")
    return value


def _choice(option: Any, value: Any) -> str:
    text = _text(option, value)
    if text not in option.choices:
        raise Invalid(f"must be one of {', '.join(option.choices)}")  # not the value: it may be a secret misplaced
    return text


def _path(option: Any, value: Any) -> str:
    """A mount prefix: empty, or a path starting with ``/`` (without its trailing ``/``)."""
    if not isinstance(value, str):
        raise Invalid(f"must be text, not {type(value).__name__}")
    prefix = value.strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise Invalid(f"must start with '/', not {prefix!r}")
    return prefix


def _base_url(option: Any, value: Any) -> str:
    url = _text(option, value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid("must be an absolute http(s) URL such as 'https://www.example.com'")
    return url


def _items(option: Any, value: Any) -> List[Any]:
    """A list from a list, or from comma-separated text; no blank item (a blank key is no key)."""
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        if not text.strip():
            raise Invalid("is blank: give a value, or leave it unset for the default")
        splitter = _NEXT_SINK.split if option.name == "sink" else (lambda t: t.split(","))
        value = splitter(text)
    try:
        items = list(value)
    except TypeError:
        raise Invalid(f"must be a list (or comma-separated text), not {type(value).__name__}") from None
    for item in items:
        if isinstance(item, (str, bytes)) and not item.strip():
            raise Invalid("holds a blank item (an unset variable in a list?): remove it")
    return [item.strip() if isinstance(item, str) else item for item in items]


def _list(option: Any, value: Any) -> List[Any]:
    items = _items(option, value)
    if not items:
        raise Invalid("is empty: give at least one, or leave it unset for the default")
    return items


def _hosts(option: Any, value: Any) -> List[str]:
    return _items(option, value)  # an empty list allows no host, as leaving it unset does


def _write_keys(option: Any, value: Any) -> Any:
    if callable(value) and not isinstance(value, str):
        return value
    keys = _items(option, value)
    if not keys:
        raise Invalid("is empty, so no request would be accepted: leave it unset to accept any key")
    return keys


def _secret(option: Any, value: Any) -> Any:
    """A signing key: text or bytes with something in it. ``False`` turns signing off, as ``None`` does."""
    if value is False:
        return None
    if not isinstance(value, (str, bytes)):
        raise Invalid(f"must be text or bytes, not {type(value).__name__}")
    if not value.strip():
        # Not "no signing": anyone could sign with the empty key (an unset variable gives one).
        raise Invalid("is blank: an empty key is a key anyone can sign with; unset it to turn signing off")
    return value


def _secrets(option: Any, value: Any) -> List[Any]:
    if isinstance(value, bytes):
        value = [value]
    keys = _items(option, value)
    for key in keys:
        _secret(option, key)
    return keys


def _dedup(option: Any, value: Any) -> Any:
    """Seconds (in memory) or a Redis URL whose ``window`` is checked as the seconds are."""
    window = option._replace(kind="seconds", bounds=(0, None), above=True)
    if isinstance(value, str) and value.strip().startswith(_REDIS_SCHEMES):
        url = value.strip()
        given = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)).get("window")
        if given is not None:
            try:
                _number(window, given)
            except Invalid as problem:
                raise Invalid(f"(the Redis URL's window) {problem}") from None
        return url
    try:
        return _number(window, value)
    except Invalid as problem:
        raise Invalid(f"must be a window in seconds or a redis:// URL: it {problem}") from None


def _dialect(option: Any, value: Any) -> Any:
    from ..pipeline.dialects import get_dialect

    try:
        return get_dialect(_text(option, value) if isinstance(value, str) else value)
    except ValueError as error:
        raise Invalid(f"names {error}") from None


def _dialects(option: Any, value: Any) -> List[Any]:
    from ..pipeline.dialects import Dialect, get_dialect

    if isinstance(value, Dialect):
        value = [value]
    try:
        return [get_dialect(item) for item in _list(option, value)]
    except ValueError as error:
        raise Invalid(f"names {error}") from None


def _sink(option: Any, value: Any) -> Any:
    if isinstance(value, (str, list, tuple)):
        return _list(option, value)
    return value  # a sink object, ours to trust


def _anything(option: Any, value: Any) -> Any:
    return value


def _callable(option: Any, value: Any) -> Any:
    if not callable(value):
        raise Invalid(f"must be a function, not {type(value).__name__}")
    return value


def _traits(option: Any, value: Any) -> Any:
    return value if callable(value) else _list(option, value)


CHECKS: Dict[str, Callable[[Any, Any], Any]] = {
    "text": _text, "address": _address, "bool": _bool, "int": _number, "float": _number, "seconds": _number,
    "choice": _choice, "path": _path, "base_url": _base_url, "list": _list, "hosts": _hosts,
    "write_keys": _write_keys, "secret": _secret, "secrets": _secrets, "dedup": _dedup, "dialect": _dialect,
    "dialects": _dialects, "sink": _sink, "object": _anything, "callable": _callable, "traits": _traits,
}
