"""The delivery HTTP client against real loopback servers that answer exactly as scripted."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import subprocess
from pathlib import Path

import pytest

from switchboard.netguard import DestinationRefused
from switchboard.outbound import ConnectFailed, ConnectionDropped, OutboundClient, RequestNotSendable, connect_first

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Scripted:
    """A loopback server: each connection answers every request with the next answer of ``answers``.

    An answer is bytes to write, or None to close the connection without answering.
    """

    def __init__(self, *answers: bytes | None, close_after_each: bool = False) -> None:
        self.answers = list(answers)
        self.close_after_each = close_after_each
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0) if self.answers else OK
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_each or b"connection: close" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def client():
    client = OutboundClient(allow_private=True)
    yield client
    await client.aclose()


async def test_keep_alive_connections_are_reused(client) -> None:
    async with Scripted() as server:
        for _ in range(3):
            response = await client.request("POST", server.url + "/hook", body=b"{}")
            assert (response.status, response.body) == (200, b"ok")
    assert server.connections == 1 and len(server.requests) == 3


async def test_the_request_is_what_was_asked_for(client) -> None:
    async with Scripted() as server:
        await client.request("PUT", server.url + "/h\u00e9?x=1 2", headers={"x-a": "1", "content-type": "a/b"},
                             body=b'{"n":1}')
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    port = server.url.rsplit(":", 1)[1]
    assert lines[0] == b"PUT /h%C3%A9?x=1%202 HTTP/1.1"
    assert f"host: 127.0.0.1:{port}".encode() in lines and b"content-length: 7" in lines and b"x-a: 1" in lines
    assert body == b'{"n":1}'


async def test_chunked_and_connection_closing_answers_are_read(client) -> None:
    chunked = (b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\nretry-after: 3\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it"
    async with Scripted(chunked, until_close, close_after_each=False) as server:
        first = await client.request("POST", server.url, body=b"")
        assert (first.status, first.body, first.headers["retry-after"]) == (500, b"abcde", "3")
        second = await client.request("POST", server.url, body=b"")
        assert (second.status, second.body) == (200, b"all of it")
        await client.request("POST", server.url, body=b"")  # "connection: close" was honoured: a new connection
    assert server.connections == 2


async def test_only_the_start_of_a_large_body_is_read_and_that_connection_is_not_reused(client) -> None:
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100000
    async with Scripted(big) as server:
        response = await client.request("POST", server.url, body=b"", read_limit=512)
        assert response.body == b"x" * 512
        await client.request("POST", server.url, body=b"")
    assert server.connections == 2


async def test_an_interim_100_continue_is_skipped(client) -> None:
    async with Scripted(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as server:
        response = await client.request("POST", server.url, body=b"{}")
    assert (response.status, response.body) == (200, b"ok")


async def test_a_closed_keep_alive_connection_is_never_reused(client) -> None:
    async with Scripted(close_after_each=True) as server:  # closes every connection after its answer
        for _ in range(3):
            assert (await client.request("POST", server.url, body=b"{}")).status == 200
    assert len(server.requests) == 3 and server.connections == 3


async def test_a_request_dropped_on_a_reused_connection_is_sent_again_on_a_new_one(client) -> None:
    # The second request finds the pooled connection, which the receiver closes without answering
    # (as a server does with a connection it timed out while idle): sent again, on a new connection.
    async with Scripted(OK, None) as server:
        await client.request("POST", server.url, body=b"1")
        assert (await client.request("POST", server.url, body=b"2")).status == 200
    assert server.connections == 2 and [r.rsplit(b"\r\n", 1)[1] for r in server.requests] == [b"1", b"2", b"2"]


async def test_a_body_a_little_over_the_limit_is_read_past_and_the_connection_kept(client) -> None:
    page = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 3000\r\n\r\n" + b"<html>" * 500
    async with Scripted(page) as server:
        response = await client.request("POST", server.url, body=b"", read_limit=512)
        assert response.status == 502 and len(response.body) == 512
        await client.request("POST", server.url, body=b"")
    assert server.connections == 1


@pytest.mark.parametrize("head", [b"x-big: " + b"v" * 70000 + b"\r\n",
                                  b"".join(b"x-h%d: v\r\n" % n for n in range(150))])
async def test_an_answer_with_huge_or_countless_headers_is_refused(client, head) -> None:
    async with Scripted(b"HTTP/1.1 200 OK\r\n" + head + b"content-length: 2\r\n\r\nok") as server:
        with pytest.raises(ConnectionDropped, match="headers"):
            await client.request("POST", server.url, body=b"")


async def test_a_connection_dropped_before_any_answer_on_a_new_connection_is_an_error(client) -> None:
    async with Scripted(None) as server:
        with pytest.raises(ConnectionDropped) as caught:
            await client.request("POST", server.url, body=b"{}")
    assert not caught.value.answered and len(server.requests) == 1


async def test_an_answer_cut_short_is_an_error_and_never_resent(client) -> None:
    requests = 0

    async def half_answer(reader, writer):
        nonlocal requests
        await reader.readuntil(b"\r\n\r\n")
        requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    with pytest.raises(ConnectionDropped) as caught:
        await client.request("POST", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", body=b"")
    server.close()
    assert caught.value.answered and requests == 1


async def test_garbage_instead_of_http_is_an_error(client) -> None:
    async with Scripted(b"SSH-2.0-OpenSSH\r\n\r\n") as server:
        with pytest.raises(ConnectionDropped, match="not valid HTTP"):
            await client.request("POST", server.url, body=b"")


async def test_a_cancelled_request_leaves_no_broken_connection_in_the_pool(client) -> None:
    async def slow_then_fast(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(1)  # the first request gives up before this
        writer.close()

    server = await asyncio.start_server(slow_then_fast, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.request("POST", url, body=b"")
    assert not any(client._idle.values())
    server.close()
    async with Scripted() as fresh:
        assert (await client.request("POST", fresh.url, body=b"")).status == 200


@pytest.mark.parametrize("headers", [{"x-a": "1\r\nx-injected: yes"}, {"x-a": "1\nx-b: 2"}, {"x\0": "v"},
                                     {"bad name": "v"}, {"x:y": "v"}, {"caf\u00e9": "v"}, {"x": "caf\u00e9\u2603"},
                                     {"Content-Length": "0"}, {"transfer-encoding": "chunked"}, {"host": "a"}])
async def test_headers_that_would_change_the_request_are_refused(client, headers) -> None:
    async with Scripted() as server:
        with pytest.raises(RequestNotSendable):
            await client.request("POST", server.url, headers=headers, body=b"")
    assert server.requests == []


@pytest.mark.parametrize("url", ["ftp://x/y", "not a url", "http://host:99999/"])
async def test_malformed_urls_are_refused(client, url) -> None:
    with pytest.raises(RequestNotSendable):
        await client.request("POST", url, body=b"")


async def test_a_method_that_is_not_a_token_is_refused(client) -> None:
    with pytest.raises(RequestNotSendable):
        await client.request("POST / HTTP/1.1\r\nx: y", "http://127.0.0.1:9/", body=b"")


async def test_nobody_listening_is_a_connection_failure(client) -> None:
    async with Scripted() as server:
        url = server.url
    with pytest.raises(ConnectFailed, match="cannot connect"):
        await client.request("POST", url, body=b"")


@pytest.fixture
def blackhole():
    """127.0.0.3:<port>, where connecting hangs: a listening socket whose accept queue is full,
    so the kernel drops every new SYN (as a firewall that drops packets would)."""
    listener = socket.socket()
    listener.bind(("127.0.0.3", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.3", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for sock in (*fillers, listener):
        sock.close()


async def test_an_address_that_never_answers_does_not_hold_up_the_next_one(blackhole) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.4", blackhole)
    started = time.monotonic()
    connection = await connect_first(["127.0.0.3", "127.0.0.4"], blackhole, attempt_s=0.3)
    assert time.monotonic() - started < 2.0
    assert connection.transport is not None
    assert connection.transport.get_extra_info("peername")[0] == "127.0.0.4"
    connection.close()
    server.close()
    # Every address failing: each one's reason is in the error.
    with pytest.raises(ConnectFailed, match=r"127\.0\.0\.3: no answer in 0\.3 s; 127\.0\.0\.5: "):
        await connect_first(["127.0.0.3", "127.0.0.5"], blackhole, server_hostname="receiver.test", attempt_s=0.3)


async def test_the_guard_refuses_private_addresses_before_connecting() -> None:
    guarded = OutboundClient(allow_private=False)
    async with Scripted() as server:
        with pytest.raises(DestinationRefused):
            await guarded.request("POST", server.url, body=b"")
        with pytest.raises(DestinationRefused):
            await guarded.request("POST", server.url.replace("127.0.0.1", "localhost"), body=b"")
    assert server.connections == 0
    await guarded.aclose()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_tls_verifies_the_certificate_against_the_host(certificate) -> None:
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def answer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    trusting = OutboundClient(allow_private=True, ssl_context=ssl.create_default_context(cafile=str(cert)))
    untrusting = OutboundClient(allow_private=True)
    try:
        assert (await trusting.request("POST", f"https://localhost:{port}/", body=b"")).status == 200
        with pytest.raises(ConnectFailed, match="TLS"):
            await untrusting.request("POST", f"https://localhost:{port}/", body=b"")
    finally:
        server.close()
        await trusting.aclose()
        await untrusting.aclose()
