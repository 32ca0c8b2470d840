"""One line per event, whichever encoder writes it: orjson (the "fast" extra) must answer as the standard one does."""
from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixel_middleware.sinks import base

pytestmark = pytest.mark.skipif(base._fast is None, reason="orjson is not installed (the 'fast' extra)")


@dataclasses.dataclass
class Point:
    x: int


CASES = [
    {"type": "track", "event": "Opened", "properties": {"n": 1, "f": 29.99, "big": 10**30, "neg": -2**63}},
    {"s": "caf\u00e9 \u2028 \u2029 \x85 \x00 \x1f \x7f \"quoted\" back\\slash"},
    {"null": None, "t": True, "list": [1, [2, {"a": None}]], "text": "null"},
    {"nan": float("nan")},
    {"inf": [float("-inf")]},
    {"surrogate": "\ud800"},
    {"\udfff": "surrogate key"},
    {1: "int key"},
    {"when": datetime.datetime(2026, 1, 1)},
    {"point": Point(1)},
    {"set": {1, 2}},
    {"tuple": (1, "a")},
    {"f": 1e16, "g": 1.5e-7},
]


def outcome(encode, event):
    try:
        return json.loads(encode(event))
    except (ValueError, TypeError) as error:
        return "ValueError" if isinstance(error, ValueError) else "TypeError"  # whatever the subclass


@pytest.mark.parametrize("event", CASES, ids=range(len(CASES)))
def test_orjson_answers_as_the_standard_encoder(event):
    expected = outcome(lambda e: base._standard_line(e).encode("utf-8"), event)
    assert outcome(base.encode_event, event) == expected
    assert outcome(base.event_line, event) == expected


def test_line_separators_are_escaped_and_lines_are_compact():
    data = base.encode_event({"s": "a\u2028b\u2029c\x85d", "n": [1, 2]})
    assert data == b'{"s":"a\\u2028b\\u2029c\\u0085d","n":[1,2]}'
    assert len(base.event_line({"s": "\u2028"}).splitlines()) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_any_event_gets_the_same_answer(event):
    standard = outcome(lambda e: base._standard_line(e).encode("utf-8"), event)
    fast = outcome(base.encode_event, event)
    assert fast == standard or (
        isinstance(standard, dict) and json.dumps(fast, sort_keys=True) == json.dumps(standard, sort_keys=True)
    )
