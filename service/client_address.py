"""The client's address: the socket's peer, or, when that peer is a proxy the operator
trusts (TRUSTED_PROXIES, CIDRs), what the proxies say in the one header the operator named
(FORWARDED_HEADER: `X-Forwarded-For`, or `Forwarded`, its `for=` parameters): the rightmost
address in it that is not itself a trusted proxy. The other header is never read, so a
client cannot pick its address by sending the header its proxy passes through untouched;
headers from an untrusted peer are ignored too.

    address = client_address("10.0.0.5", chain="203.0.113.9", header="X-Forwarded-For",
                             trusted=networks)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardedHeader = Literal["X-Forwarded-For", "Forwarded"]
FORWARDED_HEADERS: tuple[ForwardedHeader, ...] = ("X-Forwarded-For", "Forwarded")
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


def parse_forwarded_header(value: str) -> ForwardedHeader:
    """`x-forwarded-for` or `Forwarded`, in any case -> its usual spelling; else ValueError."""
    for name in FORWARDED_HEADERS:
        if value.strip().lower() == name.lower():
            return name
    raise ValueError("expected X-Forwarded-For or Forwarded (the header your proxy writes)")


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
    chain: str | None,
    header: ForwardedHeader,
    trusted: Sequence[Network],
) -> str:
    """`chain` is the value of the `header` FORWARDED_HEADER names (every line of it, joined
    with commas), or None when the request has none."""
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops: list[str] = []
    if chain:
        if header == "Forwarded":
            hops = _FORWARDED_FOR.findall(chain)
        else:
            hops = [hop.strip() for hop in chain.split(",")]
    for hop in reversed(hops):
        if not _valid(hop):
            return peer  # a garbled chain says nothing reliable: the proxy itself
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
