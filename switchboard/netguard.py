"""Refuse outbound requests to private, loopback and link-local addresses.

A tenant could otherwise point an endpoint at the platform's own network
(cloud metadata at 169.254.169.254, the database, the admin ports). The
operator can allow some networks (``SWITCHBOARD_DESTINATION_ALLOWLIST``;
tests allow loopback) or, for local walkthroughs, every private address.

The check runs when an endpoint is created and again at every connection:
the delivery client (:mod:`switchboard.outbound`) resolves the host with
:func:`checked_addresses`, checks every address, and connects to a checked
address itself, so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit


__all__ = ["DestinationRefused", "HostUnresolvable", "Networks", "parse_networks", "check_url_shape",
           "checked_addresses", "ensure_public_destination"]

Networks = tuple["ipaddress.IPv4Network | ipaddress.IPv6Network", ...]


def parse_networks(cidrs: Iterable[str]) -> Networks:
    """``("127.0.0.0/8", "10.1.0.0/16")`` as networks; ValueError for a malformed one."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


class DestinationRefused(ValueError):
    """The URL is malformed or resolves to an address outbound requests may not reach."""


class HostUnresolvable(DestinationRefused):
    """The URL's host has no address (now): not a refusal of where it points."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot resolve host {host}: {reason}")
        self.host = host


# IPv6 prefixes that carry an IPv4 address in their low 32 bits: NAT64 (RFC 6052,
# RFC 8215) and the deprecated IPv4-compatible form. Through a NAT64 gateway,
# 64:ff9b::a9fe:a9fe reaches 169.254.169.254.
_EMBEDDING_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"),
                   ipaddress.ip_network("::/96"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in network for network in _EMBEDDING_IPV4) and int(ip) > 1:  # not :: nor ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_forbidden(address: str, allowed: Networks = ()) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # Judged as the IPv4 address it reaches (an allow-list may name either form).
            if any(ip in network for network in allowed):
                return False
            ip = embedded
    if any(ip in network for network in allowed):
        return False
    # Not is_private alone: shared address space (100.64.0.0/10, where some clouds
    # keep their metadata service) is neither private nor global.
    return not ip.is_global or ip.is_multicast


def check_url_shape(url: str) -> tuple[str, int]:
    """``(host, port)`` of an http(s) URL; DestinationRefused when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("url must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise DestinationRefused("url must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("url has an invalid port") from None
    return parts.hostname, port


async def checked_addresses(host: str, port: int, allowed: Networks = ()) -> list[str]:
    """The host's addresses, every one of them public or allowed; DestinationRefused otherwise."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # no lookup (and no resolver thread) for an address
        if _is_forbidden(str(literal), allowed):
            raise DestinationRefused(f"{host} is a private or reserved address")
        return [str(literal)]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: a label IDNA cannot encode
        raise HostUnresolvable(host, getattr(exc, "strerror", None) or "not a valid host name") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if any(_is_forbidden(address, allowed) for address in addresses):
        raise DestinationRefused(f"{host} resolves to a private or reserved address")
    return addresses


async def ensure_public_destination(url: str, allow_private: bool, allowed: Networks = ()) -> None:
    """Resolve the URL's host and refuse it if any address is non-public and not allowed."""
    host, port = check_url_shape(url)
    if not allow_private:
        await checked_addresses(host, port, allowed)
