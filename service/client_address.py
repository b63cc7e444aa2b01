"""The client's address: the socket's peer, or, when that peer is a proxy the operator
trusts (TRUSTED_PROXIES, CIDRs), what the proxies say: the rightmost address in
`X-Forwarded-For` (or `Forwarded: for=`) that is not itself a trusted proxy. Headers from
anyone else are ignored, so a client cannot pick the address it is limited by.

    address = client_address("10.0.0.5", forwarded=None, forwarded_for="203.0.113.9",
                             trusted=networks)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)\]?(?::\d+)?"?', re.IGNORECASE)


def parse_networks(value: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 192.168.1.7` -> networks; ValueError naming the bad entry."""
    networks = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"{part!r} is not an address or a CIDR") from exc
    return tuple(networks)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def client_address(
    peer: str,
    *,
    forwarded: str | None,
    forwarded_for: str | None,
    trusted: Sequence[Network],
) -> str:
    """`forwarded` and `forwarded_for` are the `Forwarded` and `X-Forwarded-For` headers."""
    if not trusted or not _trusted(peer, trusted):
        return peer
    chain: list[str] = []
    if forwarded:
        chain = _FORWARDED_FOR.findall(forwarded)
    elif forwarded_for:
        chain = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(chain):
        if not _valid(hop):
            return peer  # a garbled chain says nothing reliable: the proxy itself
        if not _trusted(hop, trusted):
            return hop
    return chain[0] if chain else peer
