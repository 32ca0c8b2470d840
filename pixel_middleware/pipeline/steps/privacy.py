"""Privacy controls: how much of the reader's address is kept, and honouring Global Privacy Control.

An open pixel reports who read a message, where from (the IP address) and on
what (the user agent). Under the GDPR the address is personal data, and
California's CCPA regulations make the browser's Global Privacy Control
(``Sec-GPC: 1``) a binding opt-out. This step lets a collector keep less:

- ``ip="anonymize"`` zeroes the last octet of an IPv4 address and keeps a /48
  of an IPv6 one (an IPv4-mapped IPv6 address is treated as the IPv4 address
  it carries), as Matomo and Google Analytics do; ``ip="drop"`` removes it.
- ``privacy_signals``: a request with ``Sec-GPC: 1`` (and, with ``dnt=True``,
  ``DNT: 1``) is ``"anonymize"``\\ d (address anonymised, user agent dropped,
  ``context.pixel.gpc = true``), ``"drop"``\\ ped (reason ``opted_out``) or
  the signal is ``"ignore"``\\ d.

``context.ip`` is ``REMOTE_ADDR``. Behind a reverse proxy, wrap the app in
werkzeug's ``ProxyFix(app, x_for=1)`` (one trusted proxy) so that it is the
client's address; without ProxyFix ``X-Forwarded-For`` is never believed,
since any client can send it.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Optional

from ...core.events import DecodeError, Event

IP_MODES = ("full", "anonymize", "drop")
SIGNAL_MODES = ("anonymize", "drop", "ignore")


def anonymize_ip(address: str) -> Optional[str]:
    """``203.0.113.7`` -> ``203.0.113.0``; ``2001:db8:1234:5678::1`` -> ``2001:db8:1234::``.

    An IPv4-mapped IPv6 address gives the anonymised IPv4 address. Anything
    that is not an address gives ``None``: it is dropped, not kept unmasked.
    """
    if "." in address and ":" not in address:
        head, dot, _ = address.rpartition(".")
        if head.count(".") == 2 and head.replace(".", "").isdigit():
            return head + dot + "0"
        return None
    try:
        ip: Any = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return anonymize_ip(str(ip.ipv4_mapped))
    if ip.version == 4:
        return anonymize_ip(str(ip))
    return str(ipaddress.IPv6Network((ip, 48), strict=False).network_address)


class PrivacyStep:
    """The pipeline step applying the ``ip`` mode and the privacy signals.

    :param ip: ``"full"``, ``"anonymize"`` or ``"drop"``.
    :param privacy_signals: what a ``Sec-GPC: 1`` request gets: ``"anonymize"``,
        ``"drop"`` or ``"ignore"``.
    :param dnt: treat ``DNT: 1`` as ``Sec-GPC: 1``.
    """

    def __init__(self, ip: str = "full", privacy_signals: str = "anonymize", dnt: bool = False) -> None:
        if ip not in IP_MODES:
            raise ValueError(f"ip must be one of {', '.join(IP_MODES)}, not {ip!r}")
        if privacy_signals not in SIGNAL_MODES:
            raise ValueError(f"privacy_signals must be one of {', '.join(SIGNAL_MODES)}, not {privacy_signals!r}")
        self._ip = ip
        self._signals = privacy_signals
        self._dnt = dnt

    def __call__(self, event: Event, hit: Any) -> None:
        context = event["context"]
        mode = self._ip
        if self._signals != "ignore":
            environ = hit.environ
            if environ.get("HTTP_SEC_GPC") == "1" or (self._dnt and environ.get("HTTP_DNT") == "1"):
                if self._signals == "drop":
                    raise DecodeError("opted_out", "the request carries a privacy signal (Sec-GPC or DNT)")
                context.pop("userAgent", None)
                context.setdefault("pixel", {})["gpc"] = True
                if mode == "full":
                    mode = "anonymize"
        if mode == "full" or "ip" not in context:
            return
        masked = anonymize_ip(context["ip"]) if mode == "anonymize" else None
        if masked is None:
            del context["ip"]
        else:
            context["ip"] = masked
