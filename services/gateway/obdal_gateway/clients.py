"""Who the client is, as an address: the TCP peer, or what trusted proxies say it is.

``X-Forwarded-For`` is a header anyone can send, so it is read only when the peer is one of
``OBDAL_TRUSTED_PROXIES``, and then from the right: each trusted hop vouches for the address on
its left, and the first address that is not a trusted proxy is the client. A left-most entry
(what the client itself wrote) is believed only if every hop after it is trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from litestar.datastructures import Headers
from litestar.types import Scope

__all__ = ["client_ip"]

Networks = Sequence[IPv4Network | IPv6Network]


def _trusted(address: str, proxies: Networks) -> bool:
    try:
        parsed: IPv4Address | IPv6Address = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in proxies)


def client_ip(scope: Scope, *, trusted_proxies: Networks) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy (then the right-most
    ``X-Forwarded-For`` hop that is not one). ``None`` without a peer (a Unix socket)."""
    peer = scope.get("client")
    if not peer:
        return None
    client = str(peer[0])
    if not _trusted(client, trusted_proxies):
        return client
    forwarded = ",".join(Headers.from_scope(scope).getall("x-forwarded-for", []))
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        try:
            ip_address(hop)
        except ValueError:
            return client  # garbage from further left: the last trusted hop is all that is known
        client = hop
        if not _trusted(hop, trusted_proxies):
            break
    return client
