"""Refuse outbound requests to private, loopback and link-local addresses.

A tenant could otherwise point an endpoint at the platform's own network
(cloud metadata at 169.254.169.254, the database, the admin ports). The
operator can allow some networks (``SWITCHBOARD_DESTINATION_ALLOWLIST``;
tests allow loopback) or, for local walkthroughs, every private address.

The check runs when an endpoint is created and again at every connection:
:func:`guarded_session`'s sockets are made by :func:`guarded_socket_factory`,
which checks the very address about to be connected to, so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot slip
through, and IP literals are checked like names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import aiohttp

__all__ = ["DestinationRefused", "ForbiddenAddress", "Networks", "parse_networks", "check_url_shape",
           "checked_addresses", "ensure_public_destination", "guarded_socket_factory", "guarded_session"]

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


class ForbiddenAddress(ConnectionRefusedError):
    """A connection to an address the guard refuses; raised before the socket connects.

    An OSError, so the HTTP client reports it as a connection error (keeping
    this exception as its cause); the message is constant so that several
    refused addresses of one host still surface as this type.
    """

    def __init__(self) -> None:
        super().__init__("the destination resolves to a private or reserved address")


def guarded_socket_factory(allowed: Networks = ()) -> Callable[[tuple], socket.socket]:
    """A socket factory that refuses forbidden addresses: the check sits on the very address connected to.

    The HTTP client calls it once per new connection with the address it is
    about to connect to (after its own DNS lookup, for every address it tries),
    so IP literals, every DNS answer and any answer that changed since an
    earlier check (DNS rebinding) are all checked where it matters.
    """

    def create(addr_info: tuple) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if _is_forbidden(str(sockaddr[0]), allowed):
            raise ForbiddenAddress()
        return socket.socket(family=family, type=type_, proto=proto)

    return create


def guarded_session(allow_private: bool, allowed: Networks = (), *,
                    max_connections: int = 100) -> aiohttp.ClientSession:
    """The HTTP client for deliveries: every connection passes the guard (unless all private addresses are allowed).

    No cookies are kept (one receiver's cookies must never reach another), no
    proxy is taken from the environment, and redirects are never followed
    (each request says so). The session sets no timers of its own: each
    exchange runs under one deadline of its caller's (a second timer per
    request is measurable CPU at thousands of requests a second).
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        socket_factory=None if allow_private else guarded_socket_factory(allowed),
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
    )
