"""The outbound HTTP/1.1 client every delivery goes through.

Deliveries are small requests to many receivers, thousands a second, from a
process whose CPU is the limit. General-purpose clients spend most of that
CPU on generality (aiohttp ~0.3 ms per request here, httpx's pool ~4 ms at 64
in flight; this client ~0.06 ms, docs/benchmarks.md). This one does only what
a delivery needs:

- HTTP/1.1 with keep-alive connections pooled per origin, parsed by
  httptools (the C parser uvicorn uses); TLS through the standard library,
  verifying certificates against the URL's host name.
- Every new connection goes to an address the SSRF guard has just checked
  (:func:`switchboard.netguard.checked_addresses`): the name is resolved once,
  every address checked, and the socket connected to a checked address, so a
  DNS answer that changes after the check (DNS rebinding) is never followed.
- No redirects, cookies, proxies or decompression: a receiver's answer is
  recorded, not acted on. At most ``read_limit`` bytes of a body are read; a
  connection whose body was not read to its end is closed, never reused.
- The caller's deadline (``asyncio.timeout``) cancels a request, and a
  cancelled request's connection is closed. The one timer of its own: a
  host with several addresses gets ``connect_attempt_s`` per address but the
  last, so one address that drops every packet does not spend the whole
  deadline before the others are tried.
- A request that fails on a reused connection before any byte of an answer
  came (the receiver closed it while idle) is sent once more on a new one.
  A receiver that read it and died without answering thus gets it twice, as
  with any retry: the ``webhook-id`` is the same, for it to de-duplicate.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import httptools

from switchboard.netguard import Networks, checked_addresses

__all__ = ["OutboundClient", "OutboundResponse", "OutboundError", "ConnectFailed", "ConnectionDropped",
           "RequestNotSendable"]


class OutboundError(Exception):
    """A request that got no (complete) answer."""


class ConnectFailed(OutboundError):
    """No connection could be made to any of the host's addresses."""


class ConnectionDropped(OutboundError):
    """The connection closed, or the answer was not HTTP, before the answer was complete."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        # Whether any byte of an answer had arrived (then the request was surely received).
        self.answered = answered


class RequestNotSendable(OutboundError, ValueError):
    """The request cannot be sent as it is (a malformed URL or header); retrying won't help."""


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    # Lower-case names; a repeated header keeps its last value.
    headers: dict[str, str] = field(default_factory=dict)
    # At most the ``read_limit`` asked for.
    body: bytes = b""


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Written by the client itself: a second copy would let the request be framed two ways.
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})


def _header_lines(headers: Mapping[str, str]) -> list[str]:
    lines = []
    for name, value in headers.items():
        name, value = str(name), str(value)
        # isprintable() refuses CR, LF, NUL and every other control character (tabs too) in one C call.
        if not _TOKEN.fullmatch(name) or not value.isprintable():
            raise RequestNotSendable(f"header {name[:40]!r} cannot be sent (control characters or a bad name)")
        if name.lower() in _FRAMING_HEADERS:
            raise RequestNotSendable(f"header {name} is set by the client itself")
        lines.append(f"{name}: {value}\r\n")
    return lines


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str  # ASCII (IDNA), without brackets
    port: int
    target: str  # path and query, percent-encoded

    @classmethod
    def of(cls, url: str) -> _Origin:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise RequestNotSendable(f"invalid url: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RequestNotSendable("url must be an absolute http:// or https:// URL")
        try:
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise RequestNotSendable("url has a host name that cannot be encoded") from None
        # Keep what is already percent-encoded; encode anything else that is not plain ASCII.
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=?-._~")
        return cls(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), target)

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


#: An answer whose status line and headers exceed this, or that has more
#: headers than MAX_HEADERS, is refused: a receiver must not exhaust our memory.
MAX_HEAD_BYTES = 65536
MAX_HEADERS = 100
#: Past the bytes asked for, up to this much of a body is read and dropped so
#: the connection can be kept; a longer body closes it instead.
DRAIN_BYTES = 65536


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._waiter: asyncio.Future[OutboundResponse] | None = None
        self._limit = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._status = 0
        self._answered = False
        self._framed = True  # the answer says where its body ends (length or chunks)
        self._head_bytes = 0  # bytes received while the head was not complete
        self._head_done = False
        self._header_count = self._header_bytes = 0
        self._body_seen = 0
        self.reusable = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self._answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionDropped(f"the answer is not valid HTTP: {exc}", answered=True))
            self.close()
            return
        if not self._head_done:  # what the parser holds of a head not yet complete is bounded
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(f"the answer's headers exceed {MAX_HEAD_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._status and not self._framed:
                self._finish(reusable=False)  # the body ended with the connection, as the answer said it would
            else:
                self._fail(ConnectionDropped("the connection closed before the answer was complete",
                                             answered=self._answered))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if self._header_count > MAX_HEADERS:
            self._refuse(f"the answer has more than {MAX_HEADERS} headers")
        elif self._header_bytes > MAX_HEAD_BYTES:
            self._refuse(f"the answer's headers exceed {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._status = self.parser.get_status_code()
        self._framed = "content-length" in self._headers or "chunked" in self._headers.get("transfer-encoding", "")

    def on_body(self, body: bytes) -> None:
        room = self._limit - len(self._body)
        if room > 0:
            self._body += body[:room]
        self._body_seen += len(body)
        if self._body_seen > self._limit + DRAIN_BYTES or (not self._framed and self._body_seen >= self._limit):
            self._finish(reusable=False)  # enough read; the rest is never read, so the connection goes

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers, self._status, self._head_done, self._head_bytes = {}, 0, False, 0
            return
        self._finish(reusable=self.parser.should_keep_alive())

    # requests
    async def exchange(self, request: bytes, read_limit: int) -> OutboundResponse:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._limit, self._headers, self._body, self._status = read_limit, {}, bytearray(), 0
        self._answered, self._framed, self.reusable = False, True, False
        self._head_bytes, self._head_done, self._body_seen = 0, False, 0
        self._header_count = self._header_bytes = 0
        self.transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None
            self.idle_since = time.monotonic()

    def _finish(self, reusable: bool) -> None:
        if self._waiter is None or self._waiter.done():
            return  # the answer was already complete (its read limit reached)
        self.reusable = reusable and not self.closed
        self._waiter.set_result(OutboundResponse(self._status, self._headers, bytes(self._body)))

    def _refuse(self, why: str) -> None:
        self._fail(ConnectionDropped(why, answered=True))
        self.close()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class OutboundClient:
    """Pooled HTTP/1.1 requests to receivers, each connection to an address the SSRF guard allows.

    ``allow_private`` turns the guard off (local walkthroughs); ``allowed`` are
    non-public networks allowed all the same (see :mod:`switchboard.netguard`).
    """

    def __init__(self, *, allow_private: bool = False, allowed: Networks = (), max_idle_per_origin: int = 64,
                 idle_timeout_s: float = 15.0, ssl_context: ssl.SSLContext | None = None,
                 connect_attempt_s: float = 3.0) -> None:
        self.allow_private = allow_private
        self.allowed = allowed
        self.max_idle_per_origin = max_idle_per_origin
        self.idle_timeout_s = idle_timeout_s
        self.connect_attempt_s = connect_attempt_s
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      body: bytes = b"", read_limit: int = 65536) -> OutboundResponse:
        """Send one request and read its answer (at most ``read_limit`` bytes of the body)."""
        if self._closed:
            raise OutboundError("the client is closed")
        origin = _Origin.of(url)
        if not _TOKEN.fullmatch(method):
            raise RequestNotSendable(f"{method[:20]!r} is not an HTTP method")
        lines = [f"{method} {origin.target} HTTP/1.1\r\nhost: {origin.host_header}\r\n"
                 f"content-length: {len(body)}\r\n", *_header_lines(headers or {}), "\r\n"]
        try:
            request = "".join(lines).encode("latin-1") + body
        except UnicodeEncodeError:
            raise RequestNotSendable("header values must be Latin-1 text") from None
        for resend in (False, True):
            connection = None if resend else self._checkout(origin.key)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(origin)
            try:
                response = await connection.exchange(request, read_limit)
            except ConnectionDropped as exc:
                connection.close()
                if reused and not exc.answered and not resend:
                    continue  # a keep-alive connection the receiver had closed while it was idle
                raise
            except BaseException:  # cancelled (the caller's deadline) or worse: the connection is in an unknown state
                connection.close()
                raise
            if connection.reusable:
                self._checkin(origin.key, connection)
            else:
                connection.close()
            return response
        raise AssertionError("unreachable")

    def _checkout(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.idle_timeout_s:
                return connection
            connection.close()
        return None

    def _checkin(self, key: tuple[str, str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle_per_origin or self._closed:
            connection.close()
        else:
            idle.append(connection)

    async def _connect(self, origin: _Origin) -> _Connection:
        if self.allow_private:
            addresses = await _resolve(origin.host, origin.port)
        else:
            addresses = await checked_addresses(origin.host, origin.port, self.allowed)
        tls = self.ssl_context if origin.scheme == "https" else None
        return await connect_first(addresses, origin.port, tls=tls, server_hostname=origin.host,
                                   attempt_s=self.connect_attempt_s)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


async def connect_first(addresses: list[str], port: int, *, tls: ssl.SSLContext | None = None,
                        server_hostname: str = "", attempt_s: float = 3.0) -> _Connection:
    """A connection to the first of ``addresses`` that answers, tried in order.

    Each address but the last has ``attempt_s`` to connect; the last has what
    is left of the caller's deadline. A TLS failure is final: it is the host's
    certificate, not one address, that is wrong.
    """
    loop = asyncio.get_running_loop()
    failures = []
    for position, address in enumerate(addresses):
        last = position == len(addresses) - 1
        try:
            async with asyncio.timeout(None if last else attempt_s):
                # Connected to the checked address; TLS still verifies the certificate against the URL's host.
                _, connection = await loop.create_connection(
                    _Connection, address, port, ssl=tls, server_hostname=server_hostname if tls else None)
            return connection
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS with {server_hostname} failed: {exc.reason or exc}") from None
        except TimeoutError as exc:  # this attempt's timer, or the kernel's own (which has a strerror)
            failures.append(f"{address}: {exc.strerror or f'no answer in {attempt_s:g} s'}")
        except OSError as exc:
            failures.append(f"{address}: {exc.strerror or exc}")
    raise ConnectFailed(f"cannot connect to {server_hostname}:{port} ({'; '.join(failures) or 'no address'})")


async def _resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectFailed(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
