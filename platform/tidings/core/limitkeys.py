"""What the anti-abuse limits count by: client addresses and blocks of phone numbers.

A client's address is the TCP peer, unless the peer is a trusted reverse proxy: then
``X-Forwarded-For`` is read from the right (each proxy appends the address it got the
request from) and the first address that is not a trusted proxy is the client. Entries
to the left of it were written by the client itself and prove nothing, so a client can
never choose its own bucket.

IPv6 clients are counted per /64: one subscriber is handed a whole /64 and could
otherwise take a fresh address for every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV6_CLIENT_PREFIX = 64
"""Prefix length of an IPv6 client's network (one subscriber's allocation)."""
UNKNOWN_ADDRESS = "unknown"
"""Requests without a peer address (a test client in process) share one bucket."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks (``10.0.0.0/8, 2001:db8::1``)."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[Network]
) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The address the limits count: the peer, or what trusted proxies say they saw."""
    current = _address(peer) if peer else None
    if current is None:
        return peer or UNKNOWN_ADDRESS
    if forwarded_for:
        hops = [h for h in forwarded_for.split(",") if h.strip()]
        while _trusted(current, proxies) and hops:
            previous = _address(hops.pop())
            if previous is None:
                break  # a garbled entry: stop at the last proxy that wrote a real one
            current = previous
    return str(current)


def address_key(address: str) -> str:
    """The bucket of an address: itself for IPv4, its /64 for IPv6."""
    parsed = _address(address)
    if parsed is None or parsed.version == 4:
        return address
    network = ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False)
    return str(network)


def number_block(phone: str, digits: int) -> str:
    """The first ``digits`` digits of an E.164 number (``+14155550123``, 6 -> ``+141555``):
    a block of numbers an attacker walks through one by one."""
    return phone[: 1 + digits]
