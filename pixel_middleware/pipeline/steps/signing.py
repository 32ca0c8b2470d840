"""Signed pixel and click URLs: one ``sig`` parameter, made and checked with itsdangerous.

Why: a pixel URL carries its write key, so anyone who sees one URL could
record any event for anyone. A signature ties the URL to what it records.

What ``sig`` covers: the route path relative to the mount prefix, as the
server decodes it (``/v1/pixel/track``, or mParticle's ``/v1/<api_key>/Pixel``
filled in), and
every ``name=value`` piece of the query string exactly as sent, but ``cb=``
(the cache buster, which clients may change) and ``sig=`` itself, sorted, so
the order of parameters does not matter. Changing any byte of a name or a
value, adding or removing a parameter (a repeated one included), or moving
the URL to another route invalidates the signature. The pieces are signed as
sent, not as decoded: sorting and joining the raw text costs a fraction of
decoding it again (the 5 us budget), and a URL this library builds is encoded
one way only (``urlencode``), so a client that re-encodes a URL breaks its
signature rather than changing what it records.

URLs this library builds (:func:`signed_query`) list their pieces in that
sorted order, then ``sig``, then perhaps ``cb``: the query before ``&sig=``
is then the signed text as it stands, and the check tries it so before it
splits and sorts the query. Any other layout (parameters reordered, or
added after ``sig``) is checked in the sorted form; a URL passes either way
only when its pieces, but ``cb`` and ``sig``, are those that were signed.

The HMAC, the key derivation (with a salt of its own, so a key shared with
Flask's session cookies can never make a cookie signature pass as a URL
signature), key rotation and the timestamp are itsdangerous'
:class:`~itsdangerous.TimestampSigner`; the check reuses the signer's derived
keys with the standard library's ``hmac``, and no HMAC is written here.
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import time
from bisect import bisect_left
from datetime import timedelta
from urllib.parse import urlencode
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

from itsdangerous import TimestampSigner
from itsdangerous.encoding import base64_decode, bytes_to_int

from ...core.events import DecodeError

#: Keeps pixel signatures apart from anything else signed with the same key.
SALT = "pixel-middleware.url"

Key = Union[str, bytes]

#: itsdangerous' URL-safe alphabet, from the standard one.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _encode(digest: bytes) -> bytes:
    """``itsdangerous.encoding.base64_encode`` of a 32-byte digest, in two C calls rather than six Python ones."""
    return binascii.b2a_base64(digest, newline=False).translate(_URL_SAFE)[:43]  # 44 with one "=" of padding


def _canonical(path: str, query: str) -> str:
    """The path, length-prefixed, and the query's pieces but ``cb`` and ``sig``, sorted and ``&``-joined.

    Unambiguous: a piece holds no ``&``, and the path's length says where it ends.
    """
    pieces = query.split("&")
    pieces.sort()
    # Sorted, every piece starting "sig=" lies in ["sig=", "sig>") ('>' follows '='), and
    # likewise "cb=": two slices, found by bisection, instead of a test of every piece.
    del pieces[bisect_left(pieces, "sig=") : bisect_left(pieces, "sig>")]
    del pieces[bisect_left(pieces, "cb=") : bisect_left(pieces, "cb>")]
    if pieces and not pieces[0]:
        del pieces[: bisect_left(pieces, "\x00")]  # empty pieces ("a=1&&b=2") sort first
    return f"{len(path)}:{path}?{'&'.join(pieces)}"


def _signer(key: Key, fallbacks: Union[Key, Iterable[Key]] = ()) -> TimestampSigner:
    if isinstance(fallbacks, (str, bytes)):
        # One key: iterated, a string would list each of its characters as a key, and a
        # one-character key is guessed at the first tries.
        fallbacks = (fallbacks,)
    # itsdangerous signs with the last key of the list; the fallbacks come before it, oldest first.
    keys = [*reversed(list(fallbacks)), key]
    return TimestampSigner(keys, salt=SALT, digest_method=hashlib.sha256)


def signed_query(key: Key, path: str, pairs: Sequence[Tuple[str, str]]) -> str:
    """``urlencode(pairs)`` with its ``sig`` for this path, the pieces in the order they are signed.

    Why sorted: then the verifier finds the signed text as sent, without
    splitting and sorting the query on every request (see :class:`Verifier`).

    Raises :class:`ValueError` when a name repeats: the signature does not
    cover the order of the pieces, and the collector records the first of
    a repeated name, so anyone could swap which value is recorded.
    """
    if len({name for name, _ in pairs}) != len(pairs):
        raise ValueError("a signed URL cannot repeat a parameter: the order of repeats is not signed")
    pieces = urlencode(pairs).split("&")
    pieces.sort()
    query = "&".join(pieces)
    value = _canonical(path, query)
    sig = _signer(key).sign(value)[len(value.encode("utf-8")) + 1 :].decode("ascii")
    return f"{query}&sig={sig}" if query else f"sig={sig}"  # base64url and ".": nothing to escape


def _as_signed(query: str, sig: str) -> Optional[str]:
    """The query before ``&sig=``, when it is laid out as :func:`signed_query` writes it (and perhaps ``&cb=``)."""
    end = query.rfind("&sig=")
    if end < 0 or not query.startswith(sig, end + 5):
        return None
    after = end + 5 + len(sig)
    if after != len(query) and not (query.startswith("&cb=", after) and query.find("&", after + 1) < 0):
        return None  # more after the signature than a cache buster: only the sorted form can tell
    return query[:end]


def _seconds(max_age: Union[float, timedelta, None]) -> Optional[float]:
    """``signature_max_age`` in seconds, checked once here rather than on every request.

    A :class:`~datetime.timedelta` is taken as Flask takes its durations; anything
    else but a number (a ``"3600"`` read from the environment) is refused: compared
    on each request, it made every signed URL fail inside the pipeline.
    """
    if max_age is None:
        return None
    if isinstance(max_age, timedelta):
        return max_age.total_seconds()
    if isinstance(max_age, (int, float)) and not isinstance(max_age, bool):
        return float(max_age)
    raise TypeError(f"signature_max_age must be a number of seconds or a timedelta, not {type(max_age).__name__}")


class Verifier:
    """The signature step of the pipeline: checks ``sig`` and marks ``context.pixel.signed``.

    Built once per collector. itsdangerous derives the HMAC key from the
    secret and the salt, and keys a new HMAC, on every ``unsign`` call; here
    each key is derived once by the signer itself and keyed once, and a
    request costs one copy of that keyed HMAC-SHA256 per key tried (newest
    first; the timestamp is decoded only when an age limit is set). URLs
    are made by :class:`~itsdangerous.TimestampSigner` (:func:`signed_query`),
    and the tests check its signatures verify here.
    """

    def __init__(
        self,
        key: Key,
        fallbacks: Iterable[Key] = (),
        *,
        prefix: str = "",
        required: bool = False,
        max_age: Union[float, timedelta, None] = None,
    ) -> None:
        signer = _signer(key, fallbacks)
        # One keyed HMAC per key, newest first, from itsdangerous' own key derivation and
        # digest; a request copies it instead of keying a new one, which cost more than
        # hashing the URL itself. The copy is of OpenSSL's HMAC object that hmac.HMAC wraps,
        # where it wraps one: the same copy, update and digest, without a Python layer
        # around each (a fifth of the step's cost).
        self._macs = []
        for secret in reversed(signer.secret_keys):
            keyed = hmac.new(signer.derive_key(secret), digestmod=signer.digest_method)
            self._macs.append(getattr(keyed, "_hmac", None) or keyed)
        self._prefix_length = len(prefix)
        self.required = required
        self.max_age = _seconds(max_age)

    def valid(self, environ: Mapping[str, Any], sig: str, max_age: Optional[float] = None) -> bool:
        """Whether the request in ``environ`` carries the good signature ``sig``; never raises."""
        try:
            self._check(environ, sig, max_age)
        except DecodeError:
            return False
        return True

    def _check(self, environ: Mapping[str, Any], sig: str, max_age: Optional[float]) -> None:
        stamp, _, mac = sig.partition(".")
        path = environ.get("PATH_INFO", "")[self._prefix_length :]
        query = environ.get("QUERY_STRING", "")
        # The good signature is encoded as itsdangerous encodes it and compared with the one sent,
        # rather than the one sent decoded: cheaper, and a signature not written the one way
        # itsdangerous writes it was not made by it.
        sent = mac.encode("utf-8", "surrogateescape")
        # As built here, the query before "&sig=" is the signed text already (it equals a signed
        # text only if its pieces are the signed ones); else, or if it does not match, the sorted form.
        as_signed = _as_signed(query, sig)
        if not (as_signed is not None and self._signs(f"{len(path)}:{path}?{as_signed}.{stamp}", sent)
                or self._signs(f"{_canonical(path, query)}.{stamp}", sent)):
            raise DecodeError("bad_signature", "the signature does not match the URL")
        # The stamp is covered by the HMAC: decoded only when an age limit needs it.
        if max_age is not None and time.time() - bytes_to_int(base64_decode(stamp)) > max_age:
            raise DecodeError("signature_expired", "the URL was signed longer ago than the maximum age")

    def _signs(self, text: str, sent: bytes) -> bool:
        """Whether ``sent`` is the HMAC of ``text`` under one of the keys, newest first."""
        # A URL built here is ASCII; other text cannot match, and encoding it must not raise.
        message = text.encode("utf-8", "surrogateescape")
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(message)
            if hmac.compare_digest(_encode(mac.digest()), sent):
                return True
        return False

    def __call__(self, event: Any, hit: Any) -> None:
        params = hit.params
        if "sig" not in params:
            if self.required:
                raise DecodeError("missing_signature", "unsigned URLs are not accepted")
            signed = False
        else:
            self._check(hit.environ, params["sig"], self.max_age)
            signed = True
        event["context"].setdefault("pixel", {})["signed"] = signed
