"""Arbitrary query strings through the full WSGI path: always the GIF, never a lost verdict.

For every request exactly one of two things happens: the event reaches the
sink and ``event_received``, or it is dropped with a reason that is logged,
counted and sent on ``event_rejected``.
"""
from __future__ import annotations

import base64
import json
import logging
from typing import List

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pixel_middleware import MemorySink, PixelMiddleware, event_received, event_rejected
from pixel_middleware.core.gif import GIF

ROUTES = [
    "/pixel/v1/track", "/pixel/v1/page",
    "/v1/pixel/track", "/v1/pixel/page", "/v1/pixel/identify", "/v1/pixel/group", "/v1/pixel/alias", "/v1/pixel/screen",
    "/v1/SECRETKEY/Pixel",
]
NAMES = [
    "writeKey", "wk", "userId", "anonymousId", "uid", "aid", "gid", "event", "e", "name", "n", "dt", "et", "ct", "ts",
    "mid", "messageId", "timestamp", "data", "groupId", "previousId", "attrs_k", "attrs_v", "ua_k", "ua_v", "ui_t",
    "ui_v", "flags_k", "flags_v", "lc", "av", "dbg", "hn", "ttl", "path", "amp_id", "properties.a", "properties.a.b",
    "context.page.path", "traits.email", "p.a", "p.a.b", "t.x", "c.y", "context..z", "cb",
]
VALUES = st.sampled_from(["u1", "AppEvent", "ScreenView", "1740493800000", "1920", "29.99", "a,b", "x",
                          "", "%zz", "%E9", "%22q%22", "40.7,-74.0", "true"]) | st.text(max_size=12)


def _b64(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
data_values = st.one_of(
    st.dictionaries(st.sampled_from(["writeKey", "userId", "anonymousId", "event", "name", "properties", "traits",
                                     "context", "groupId", "previousId", "timestamp", "messageId"]), json_values)
    .map(lambda d: _b64(json.dumps(d).encode())),
    st.binary(max_size=40).map(_b64),
    st.text(max_size=40),
)
pair = st.tuples(st.sampled_from(NAMES) | st.text(max_size=8), VALUES | data_values) | st.tuples(
    st.sampled_from(["writeKey", "wk"]), st.just("SECRETKEY")
)

def as_wsgi(text: str) -> str:
    """What a WSGI server hands over for a URL with ``text`` in it: UTF-8 bytes as latin-1."""
    return text.encode("utf-8").decode("latin-1")


structured = st.lists(pair, max_size=12).map(lambda pairs: as_wsgi("&".join(f"{k}={v}" for k, v in pairs)))
raw = st.binary(max_size=200).map(lambda b: b.decode("latin-1"))


class Verdicts(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), query=structured | raw | st.text(max_size=200).map(as_wsgi))
def test_any_query_gets_the_gif_and_exactly_one_verdict(route, query):
    sink = MemorySink()
    middleware = PixelMiddleware(None, sink=sink)
    received, rejected = [], []
    handler = Verdicts()
    logger = logging.getLogger("pixel_middleware")
    logger.addHandler(handler)
    try:
        with event_received.connected_to(lambda s, **k: received.append(k)), \
                event_rejected.connected_to(lambda s, **k: rejected.append(k)):
            response = Client(middleware).get(route, environ_overrides={"QUERY_STRING": query, "REMOTE_ADDR": "127.0.0.1"})
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 200 and response.data == GIF
    event("accepted" if sink.events else "rejected")
    if sink.events:
        (accepted,) = sink.events
        assert len(received) == 1 and received[0]["event"] is accepted
        assert not rejected and not handler.records and not middleware.rejections
        assert accepted.get("userId") or accepted.get("anonymousId")
        assert "SECRETKEY" not in json.dumps(accepted)  # also proves the event is JSON-able
        assert accepted["type"] in ("track", "page", "screen", "identify", "group", "alias")
    else:
        assert len(rejected) == 1 and not received
        reason = rejected[0]["reason"]
        assert reason != "internal_error", "a dialect raised something other than DecodeError"
        assert middleware.rejections == {reason: 1}
        (record,) = handler.records
        assert reason in record.getMessage() and "SECRETKEY" not in record.getMessage()
