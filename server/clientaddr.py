"""The client's real address: the socket peer, or what a *configured* trusted proxy says.

``X-Forwarded-For`` is believed only when the peer is one of ``http.trusted_proxies``; then
the right-most address in it that is not itself a trusted proxy is the client (anything
left of it was written by the client and proves nothing). Without a configured proxy the
header is ignored, so nobody can pick the address their login failures are counted on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values]


def _trusted(addr: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(addr.strip())
    except ValueError:
        return False
    return any(ip in n for n in nets)


def client_address(conn: HTTPConnection, trusted: Sequence[Network]) -> str:
    peer = conn.client.host if conn.client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for v in conn.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed(hops):
        if hop and not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from a proxy we trust: fall back to the proxy itself
    return peer
