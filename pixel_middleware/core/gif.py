"""The one response every pixel route gives: a 1x1 transparent GIF that is never cached.

Built once at import; the hot path only copies the header list, because some
WSGI servers (wsgiref among them) add headers to the list they are handed.
"""
from __future__ import annotations

from typing import Callable, Iterable, List, Tuple

#: A 43-byte GIF89a: 1x1, one-colour palette, graphic control extension with
#: the transparency flag set, so the image is invisible on any background.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

GIF_HEADERS: List[Tuple[str, str]] = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", "no-store, no-cache, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
]

_NOT_ALLOWED = b"Method Not Allowed\n"
_NOT_ALLOWED_HEADERS = [
    ("Allow", "GET, HEAD"),
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(_NOT_ALLOWED))),
]


def respond(method: str, start_response: Callable) -> Iterable[bytes]:
    """Answer a pixel request: GIF for GET, headers only for HEAD, 405 otherwise."""
    if method == "GET":
        start_response("200 OK", GIF_HEADERS[:])
        return [GIF]
    if method == "HEAD":
        start_response("200 OK", GIF_HEADERS[:])
        return []
    start_response("405 Method Not Allowed", _NOT_ALLOWED_HEADERS[:])
    return [_NOT_ALLOWED]
