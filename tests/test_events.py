"""The shared rules: numeric coercion and timestamps."""
from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pixel_middleware.core.events import DecodeError, parse_timestamp

from pixel_middleware.core.query import coerce_number


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("1920", 1920, id="int"),
        pytest.param("29.99", 29.99, id="decimal"),
        pytest.param("-7", -7, id="negative"),
        pytest.param("0", 0, id="zero"),
        pytest.param("0.5", 0.5, id="leading-zero-decimal"),
        pytest.param("9007199254740992", 9007199254740992, id="2**53"),
        pytest.param("9007199254740993", "9007199254740993", id="past-2**53"),
        pytest.param("804827945997959209", "804827945997959209", id="rybbit-368"),
        pytest.param("1.0.0", "1.0.0", id="version"),
        pytest.param("007", "007", id="leading-zero"),
        pytest.param("-0", "-0", id="minus-zero"),
        pytest.param("1.10", "1.10", id="trailing-zero"),
        pytest.param("1e3", "1e3", id="exponent-text-differs"),
        pytest.param("0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827", id="too-precise"),
        pytest.param("+5", "+5", id="plus"),
        pytest.param(" 5", " 5", id="space"),
        pytest.param("5.", "5.", id="dangling-dot"),
        pytest.param("١٢", "١٢", id="arabic-digits"),
        pytest.param("١.٥", "١.٥", id="arabic-decimal"),
        pytest.param("00.5", "00.5", id="leading-zeros-decimal"),
        pytest.param("12.50", "12.50", id="price-trailing-zero"),
        pytest.param("1." + "0" * 40 + "1", "1." + "0" * 40 + "1", id="decimal-too-long"),
        pytest.param("NaN", "NaN", id="nan"),
        pytest.param("", "", id="empty"),
    ],
)
def test_coercion_table(text, expected):
    result = coerce_number(text)
    assert result == expected and type(result) is type(expected)


@given(st.text(max_size=30))
def test_coercion_survives_the_round_trip(text):
    value = coerce_number(text)
    assert value is text or json.dumps(value) == text


@given(st.integers(min_value=-(2**53), max_value=2**53) | st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_written_by_python_or_javascript_come_back(number):
    text = repr(number)
    if "e" in text or "inf" in text:
        return
    assert coerce_number(text) == number


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1740493800000", "2025-02-25T14:30:00.000Z"),
        (1740493800123, "2025-02-25T14:30:00.123Z"),
        ("0", "1970-01-01T00:00:00.000Z"),
        ("2025-02-25T14:30:00Z", "2025-02-25T14:30:00.000Z"),
        ("2025-02-25T14:30:00.123456Z", "2025-02-25T14:30:00.123Z"),
        ("2025-02-25T16:30:00.250+02:00", "2025-02-25T14:30:00.250Z"),
        ("2025-02-25T14:30:00", "2025-02-25T14:30:00.000Z"),
        ("2025-02-25", "2025-02-25T00:00:00.000Z"),
    ],
)
def test_timestamps(value, expected):
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("value", ["", "soon", "1.5", "-1", "1e12", "9" * 16, "253402300800000", "2025-13-01T00:00:00Z",
                                   "0001-01-01T00:00:00Z", True, None, 1.5, {"t": 1}])
def test_bad_timestamps(value):
    with pytest.raises(DecodeError) as error:
        parse_timestamp(value)
    assert error.value.reason == "invalid_timestamp"


query_text = st.lists(
    st.sampled_from(["a", "b", "=", "&", "+", "%20", "%2B", "%26", "%3D", "%3d", "%C3%A9", ".", "x.y", "é",
                     "%00", "\x00", "=3D", "=41", "%0A", "\t", " ", "%2f", "_"]),
    max_size=20,
).map("".join)

escaped_ascii = st.lists(
    st.one_of(st.characters(max_codepoint=127), st.integers(0, 255).map("%{:02X}".format),
              st.integers(0, 255).map("%{:02x}".format)),
    max_size=30,
).map("".join)


@given(escaped_ascii)
def test_unquote_agrees_with_the_standard_library(text):
    """parse_query's C-speed percent-decoding is unquote_plus for every well-formed escape."""
    from urllib.parse import unquote_to_bytes

    from pixel_middleware.core.query import _BAD_PERCENT, _unquote

    if _BAD_PERCENT.search(text):
        return  # parse_query refuses these before decoding
    try:
        expected = unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            _unquote(text)
        return
    assert _unquote(text) == expected


@given(query_text)
def test_parse_query_agrees_with_parse_qsl(query):
    from urllib.parse import parse_qsl

    from pixel_middleware.core.query import parse_query

    expected = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        expected.setdefault(name, value)
    wsgi = query.encode("utf-8").decode("latin-1")  # as a server hands it over
    assert parse_query(wsgi) == expected


odd_ascii_query = st.lists(
    st.sampled_from(["a", "b", "=", "&", "+", "%", "%%", "%4", "%zz", "%4g", "%20", "%3D", "%26", "%00", "%0A",
                     "%C3%A9", "%C3", "%e2%9c%93", "\x00", "\n", "\r", "=41", "_", " "]),
    max_size=24,
).map("".join)


@settings(max_examples=1000)
@given(odd_ascii_query)
@example("a=%\nb")  # a quoted-printable soft line break: as short as a valid escape
@example("a=%\r%41&b=1")
@example("a=%%&b=%")  # two invalid escapes, each one character shorter
@example("==&")  # as many "=" as pieces, but not one each: never given to it
def test_the_one_pass_split_reads_a_query_as_the_general_one_does(query):
    """Whatever _split_simple takes on (escapes valid by length, not by pattern) it reads as _split does."""
    from pixel_middleware.core.query import _TWO_EQUALS, _split, _split_simple

    count = query.count("&") + 1
    try:
        expected = _split(query, count)
    except DecodeError as error:
        expected = error.reason
    try:
        fast = _split_simple(query, count)
    except DecodeError as error:
        fast = error.reason
    if query.count("=") == count and not _TWO_EQUALS.search(query):  # the only queries parse_query gives it
        assert fast is None or fast == expected


def test_now_is_the_clock_to_the_millisecond_across_reused_milliseconds_and_seconds(monkeypatch):
    """now() reuses its text within a millisecond and its date within a second, never beyond."""
    import time as real_time

    from pixel_middleware.core import events
    from pixel_middleware.core.events import format_epoch_ms, now

    moments = [1740493800123, 1740493800123, 1740493800124, 1740493800999, 1740493801000, 1740493801000,
               1740493860000, 1740493800123]  # the last one goes back: a clock set backwards

    class Clock:
        strftime = staticmethod(real_time.strftime)
        gmtime = staticmethod(real_time.gmtime)
        ms = 0

        def time_ns(self):
            return self.ms * 1_000_000 + 999_999  # the end of the millisecond: still that one

    clock = Clock()
    monkeypatch.setattr(events, "time", clock)
    for ms in moments:
        clock.ms = ms
        assert now() == format_epoch_ms(ms)


def test_new_id_is_a_uuid4_and_differs_in_a_forked_worker():
    import os
    import uuid

    from pixel_middleware.core.events import new_id

    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a gunicorn worker forked from the master
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    with os.fdopen(read) as pipe:
        assert pipe.read() != new_id()  # the same sequence would give the same next id


@pytest.mark.parametrize("query, expected", [
    pytest.param("a=%26&b=%3D&c=%25", {"a": "&", "b": "=", "c": "%"}, id="escaped-separators"),
    pytest.param("a=b=c&d=e", {"a": "b=c", "d": "e"}, id="second-equals-in-a-value"),
    pytest.param("a=b=c&d", {"a": "b=c", "d": ""}, id="as-many-equals-as-pieces-but-not-one-each"),
    pytest.param("a=1&a=2&b=+x+", {"a": "1", "b": " x "}, id="repeat-first-wins"),
    pytest.param("e=Caf%C3%A9&u=%E2%9C%93", {"e": "Café", "u": "\u2713"}, id="utf-8"),
    pytest.param("a=&=b", {"a": "", "": "b"}, id="empty-value-and-name"),
])
def test_parse_query_reads_every_layout_as_parse_qsl_does(query, expected):
    from urllib.parse import parse_qsl

    from pixel_middleware.core.query import parse_query

    reference = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        reference.setdefault(name, value)
    assert parse_query(query) == expected == reference


_form_names = st.sampled_from([
    "uid", "aid", "event", "name", "writeKey", "cb", "uid2", "c", "c.", "p..x",
    "p.plan", "p.price", "p.plan.tier", "p.items.0", "c.page.path", "c.page", "c.page.url", "c.screen.width",
    "t.email", "t.email.work", "c." + ".".join("d" * 9), "c." + ".".join("d" * 7), "cx.a", "cx.page.path",
])
_form_values = st.sampled_from(["", "x", "0", "1920", "29.99", "-7", "007", "1.10", "-", "1e3", "Caf\u00e9"])


@pytest.mark.parametrize("coerce", [True, False])
@settings(max_examples=300)
@given(st.dictionaries(_form_names, _form_values, max_size=8))
def test_a_compiled_layout_builds_what_the_loop_builds(coerce, params):
    """Key order included (it is the JSON line's order), and a field named twice keeps the last value."""
    from pixel_middleware.core.query import FlatForm

    form = FlatForm({"uid": "userId", "uid2": "userId", "aid": "anonymousId", "event": "event", "name": "name"},
                    {"p": "properties", "t": "traits", "c": "context", "cx": "context"}, coerce=coerce)

    def outcome(build):
        try:
            return json.dumps(build(params))
        except DecodeError as error:
            return error.reason

    expected = outcome(form._loop)
    for _ in range(3):  # seen, compiled, then built by the compiled function
        assert outcome(form) == expected
    assert (tuple(params) in form._layouts) is expected.startswith("{")  # a layout the loop refuses is never compiled


def test_compiled_layouts_are_bounded_and_layouts_seen_once_are_never_compiled():
    from pixel_middleware.core import query
    from pixel_middleware.core.query import FlatForm

    form = FlatForm({}, {"p": "properties"})
    for i in range(3 * query._LAYOUTS_MAX):
        assert form({f"p.once_{i}": "1"}) == {"properties": {f"once_{i}": 1}}
    assert not form._layouts and len(form._seen) <= query._LAYOUTS_MAX
    many = {f"p.n{i}": "1" for i in range(query._LAYOUT_NAMES_MAX + 1)}
    for _ in range(3):
        assert form(many) == {"properties": {f"n{i}": 1 for i in range(query._LAYOUT_NAMES_MAX + 1)}}
    assert not form._layouts  # too many names to be worth compiling
    for i in range(query._LAYOUTS_MAX + 10):
        for _ in range(2):
            assert form({f"p.twice_{i}": "x"}) == {"properties": {f"twice_{i}": "x"}}
    assert len(form._layouts) == query._LAYOUTS_MAX  # then new layouts take the loop, still right
