"""Refuse outbound requests to private, loopback and link-local addresses.

A tenant could otherwise point an endpoint at the platform's own network
(cloud metadata at 169.254.169.254, the database, the admin ports). The
operator can allow private addresses (tests and local walkthroughs do).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["DestinationRefused", "check_url_shape", "ensure_public_destination"]


class DestinationRefused(ValueError):
    """The URL is malformed or resolves to an address outbound requests may not reach."""


def _is_forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
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


async def ensure_public_destination(url: str, allow_private: bool) -> None:
    """Resolve the URL's host and refuse it if any address is non-public."""
    host, port = check_url_shape(url)
    if allow_private:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"cannot resolve {host}: {exc.strerror}") from None
    for info in infos:
        if _is_forbidden(info[4][0]):
            raise DestinationRefused(f"{host} resolves to a private or reserved address")
