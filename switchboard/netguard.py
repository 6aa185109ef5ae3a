"""Refuse outbound requests to private, loopback and link-local addresses.

A tenant could otherwise point an endpoint at the platform's own network
(cloud metadata at 169.254.169.254, the database, the admin ports). The
operator can allow some networks (``SWITCHBOARD_DESTINATION_ALLOWLIST``;
tests allow loopback) or, for local walkthroughs, every private address.

The check runs when an endpoint is created and again at every connection:
:func:`guarded_transport` resolves the host, checks every address, and
connects to the checked address itself, so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = ["DestinationRefused", "Networks", "parse_networks", "check_url_shape", "checked_addresses",
           "ensure_public_destination", "guarded_transport"]

Networks = tuple["ipaddress.IPv4Network | ipaddress.IPv6Network", ...]


def parse_networks(cidrs: Iterable[str]) -> Networks:
    """``("127.0.0.0/8", "10.1.0.0/16")`` as networks; ValueError for a malformed one."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


class DestinationRefused(ValueError):
    """The URL is malformed or resolves to an address outbound requests may not reach."""


def _is_forbidden(address: str, allowed: Networks = ()) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
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
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if any(_is_forbidden(address, allowed) for address in addresses):
        raise DestinationRefused(f"{host} resolves to a private or reserved address")
    return addresses


async def ensure_public_destination(url: str, allow_private: bool, allowed: Networks = ()) -> None:
    """Resolve the URL's host and refuse it if any address is non-public and not allowed."""
    host, port = check_url_shape(url)
    if not allow_private:
        await checked_addresses(host, port, allowed)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses it has just checked (no second DNS lookup)."""

    def __init__(self, allowed: Networks) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allowed = allowed

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await checked_addresses(host, port, self._allowed):
            try:
                # TLS still verifies the certificate against the URL's host name.
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("unix sockets are not destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(allow_private: bool, allowed: Networks = (), **options: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection passes the check (unless all private addresses are allowed)."""
    transport = httpx.AsyncHTTPTransport(**options)
    if not allow_private:
        # httpx takes no network backend; its connection pool does (httpcore is pinned for this).
        transport._pool._network_backend = _PinnedBackend(allowed)
    return transport
