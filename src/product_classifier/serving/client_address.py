"""Who really sent a request: the TCP peer, or the client a *trusted* proxy forwarded for.

Forwarding headers (``Forwarded``, RFC 7239, and ``X-Forwarded-For``) are written by whoever
sends them, so they are believed only from peers in ``trusted_proxies``. The chain is read from
the right (the hop nearest to us) leftwards, skipping trusted proxies; the first address that
is not one is the client. Anything unreadable (an obfuscated ``for=_hidden``, ``unknown``, a
malformed entry, or the two headers disagreeing) makes the client unknown, which callers treat
as "refuse".

A request that carries forwarding headers but comes from an untrusted peer went through a
proxy that nobody vouched for (or the client wrote them itself): :class:`ClientAddress` flags
it, so that an access rule can fail closed. Behind a reverse proxy on the same host, its
requests would otherwise all look like they came from loopback.

Used for ``/metrics`` (serving/observability.py); uvicorn's own proxy-header rewriting is
turned off in serving/run.py so that ``scope["client"]`` is the TCP peer.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import Scope

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED = b"forwarded"
_X_FORWARDED_FOR = b"x-forwarded-for"
# One for= value of a Forwarded element: quoted or a token.
_FOR_PAIR = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)


@dataclass(frozen=True)
class ClientAddress:
    ip: IPAddress | None  # None: unknown (not an IP, or an unreadable forwarding chain)
    untrusted_forwarding: bool  # forwarding headers from a peer that is not a trusted proxy


def parse_ip(text: str) -> IPAddress | None:
    """``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]``, ``[::1]:80`` -> the address; IPv4-mapped
    IPv6 becomes IPv4 (a dual-stack socket reports IPv4 clients that way)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        if end == -1 or (text[end + 1 :] and not re.fullmatch(r":\d+", text[end + 1 :])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 has several colons
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _header_values(scope: Scope, name: bytes) -> str | None:
    """Every line of one header, joined with commas (their meaning when repeated)."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ", ".join(values) if values else None


def _chain(scope: Scope) -> list[IPAddress | None] | None:
    """The forwarded-for chain, oldest hop first; None when no header is present."""
    forwarded = _header_values(scope, _FORWARDED)
    x_forwarded_for = _header_values(scope, _X_FORWARDED_FOR)
    chains = []
    if forwarded is not None:
        hops = []
        for element in forwarded.split(","):
            match = _FOR_PAIR.search(element.strip())
            hops.append(parse_ip(match.group(1)) if match else None)
        chains.append(hops)
    if x_forwarded_for is not None:
        chains.append([parse_ip(part) for part in x_forwarded_for.split(",")])
    if not chains:
        return None
    if len(chains) == 2 and chains[0] != chains[1]:
        # A proxy that writes one header may pass the other through from the client: which
        # one is real cannot be told, so neither is believed.
        return [None]
    return chains[0]


def _within(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip in net for net in networks)


def resolve_client(scope: Scope, trusted_proxies: Sequence[IPNetwork]) -> ClientAddress:
    client = scope.get("client")
    peer = parse_ip(str(client[0])) if client else None
    chain = _chain(scope)
    if chain is None:
        return ClientAddress(peer, untrusted_forwarding=False)
    if peer is None or not _within(peer, trusted_proxies):
        return ClientAddress(peer, untrusted_forwarding=True)
    for hop in reversed(chain):
        if hop is None:
            return ClientAddress(None, untrusted_forwarding=False)
        if not _within(hop, trusted_proxies):
            return ClientAddress(hop, untrusted_forwarding=False)
    # Every hop is a trusted proxy: the oldest one is where the request started.
    return ClientAddress(chain[0], untrusted_forwarding=False)
