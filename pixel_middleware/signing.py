"""Signed pixel and click URLs: one ``sig`` parameter, made and checked with itsdangerous.

Why: a pixel URL carries its write key, so anyone who sees one URL could
record any event for anyone. A signature ties the URL to what it records.

What ``sig`` covers: the route path relative to the mount prefix
(``/v1/pixel/track``, or mParticle's ``/v1/<api_key>/Pixel`` filled in) and
every parameter but ``cb`` (the cache buster, which clients may change) and
``sig`` itself, sorted by name, so the order of parameters does not matter.
The parameters are taken as the dialects see them: the first of a repeated
name. A second ``uid=`` appended to a signed URL is therefore covered by
nothing, and changes nothing either, since no dialect ever reads it. Changing
any value, adding or removing a parameter the dialect reads, or moving the
URL to another route invalidates the signature.

The HMAC, the key derivation (with a salt of its own, so a key shared with
Flask's session cookies can never make a cookie signature pass as a URL
signature), key rotation and the timestamp are itsdangerous'
:class:`~itsdangerous.TimestampSigner`; nothing here computes an HMAC.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

from itsdangerous import BadData, TimestampSigner
from itsdangerous.encoding import base64_decode, bytes_to_int

from .events import DecodeError

#: Keeps pixel signatures apart from anything else signed with the same key.
SALT = "pixel-middleware.url"
#: The cache buster and the signature itself are not signed.
UNSIGNED = frozenset(("cb", "sig"))

Key = Union[str, bytes]


def _canonical(path: str, params: Mapping[str, str]) -> str:
    """Path and parameters as one unambiguous string: each part length-prefixed, names sorted."""
    return f"{len(path)}:{path}" + "".join(
        [f"{len(name)}:{name}{len(value)}:{value}" for name, value in sorted(params.items()) if name not in UNSIGNED]
    )


def _signer(key: Key, fallbacks: Iterable[Key] = ()) -> TimestampSigner:
    # itsdangerous signs with the last key of the list; the fallbacks come before it, oldest first.
    keys = [*reversed(list(fallbacks)), key]
    return TimestampSigner(keys, salt=SALT, digest_method=hashlib.sha256)


def sign_pairs(key: Key, path: str, pairs: Sequence[Tuple[str, str]]) -> str:
    """The ``sig`` value for a URL with this path and query pairs (first of repeated names counts)."""
    params: dict = {}
    for name, value in pairs:
        params.setdefault(name, value)
    value = _canonical(path, params)
    return _signer(key).sign(value)[len(value.encode("utf-8")) + 1 :].decode("ascii")


class Verifier:
    """The signature step of the pipeline: checks ``sig`` and marks ``context.pixel.signed``.

    Built once per collector. itsdangerous derives the HMAC key from the
    secret and the salt on every ``unsign`` call; here each key is derived
    once, and a request costs one HMAC per key tried (newest first) through
    the signer's own algorithm (the timestamp is decoded only when an age
    limit is set). URLs are made
    by :class:`~itsdangerous.TimestampSigner` (:func:`sign_pairs`), so the
    format is exactly itsdangerous' own.
    """

    def __init__(
        self,
        key: Key,
        fallbacks: Iterable[Key] = (),
        *,
        prefix: str = "",
        required: bool = False,
        max_age: Optional[float] = None,
    ) -> None:
        signer = _signer(key, fallbacks)
        self._keys = [signer.derive_key(secret) for secret in reversed(signer.secret_keys)]
        self._algorithm = signer.algorithm
        self._prefix_length = len(prefix)
        self.required = required
        self.max_age = max_age

    def valid(self, path: str, params: Mapping[str, str], max_age: Optional[float] = None) -> bool:
        """Whether ``params`` carry a good signature for ``path`` (a ``PATH_INFO``); never raises."""
        try:
            self._check(path, params, max_age)
        except DecodeError:
            return False
        return True

    def _check(self, path: str, params: Mapping[str, str], max_age: Optional[float]) -> None:
        stamp, _, mac = params["sig"].partition(".")
        message = f"{_canonical(path[self._prefix_length :], params)}.{stamp}".encode("utf-8")
        try:
            signature = base64_decode(mac)
        except BadData:
            raise DecodeError("bad_signature", "the signature is not well formed") from None
        verify = self._algorithm.verify_signature
        for key in self._keys:
            if verify(key, message, signature):
                break
        else:
            raise DecodeError("bad_signature", "the signature does not match the URL")
        # The stamp is covered by the HMAC: decoded only when an age limit needs it.
        if max_age is not None and time.time() - bytes_to_int(base64_decode(stamp)) > max_age:
            raise DecodeError("signature_expired", "the URL was signed longer ago than the maximum age")

    def __call__(self, event: Any, hit: Any) -> None:
        params = hit.params
        if "sig" not in params:
            if self.required:
                raise DecodeError("missing_signature", "unsigned URLs are not accepted")
            signed = False
        else:
            self._check(hit.environ.get("PATH_INFO", ""), params, self.max_age)
            signed = True
        event["context"].setdefault("pixel", {})["signed"] = signed
