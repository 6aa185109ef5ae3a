"""The SSRF guard at connection time: checked addresses only, and the connection pinned to them."""

import asyncio
import socket

import httpx
import pytest

from plugins.destinations.http_result import exchange
from plugins.destinations.spec import DestinationContext
from switchboard.netguard import DestinationRefused, guarded_transport, parse_networks
from tests.receivers import Receiver


async def test_a_guarded_client_refuses_private_addresses_unless_allowed() -> None:
    with Receiver() as receiver:
        async with httpx.AsyncClient(transport=guarded_transport(False)) as http:
            with pytest.raises(DestinationRefused):
                await http.post(receiver.url, content=b"{}")
        async with httpx.AsyncClient(transport=guarded_transport(False, parse_networks(["127.0.0.0/8"]))) as http:
            # "localhost" is resolved by the guard and the connection made to the checked address.
            reply = await http.post(receiver.url.replace("127.0.0.1", "localhost"), content=b"{}")
            assert reply.status_code == 200
            with pytest.raises(DestinationRefused):
                await http.post("http://[::1]:9/x", content=b"{}")
    assert len(receiver.requests) == 1


async def test_a_dns_answer_that_changes_after_the_check_is_not_followed(monkeypatch) -> None:
    """DNS rebinding: public when checked, loopback when connecting. The guard resolves once per
    connection and connects to what it checked, so the second answer is refused, not followed."""
    loop = asyncio.get_running_loop()
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

    async def rebinding(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        async with httpx.AsyncClient(transport=guarded_transport(False)) as http:
            context = DestinationContext(http=http, timeout_s=5, allow_private_networks=False)
            result = await exchange(context, "POST", f"http://rebind.example:{port}/hook", content=b"{}")
    assert not result.ok and not result.retryable and "private" in result.error
    assert receiver.requests == []


def test_malformed_networks_are_an_error() -> None:
    with pytest.raises(ValueError):
        parse_networks(["10.0.0.0/33"])


async def test_with_a_guarded_client_the_connection_check_alone_refuses_for_good() -> None:
    with Receiver() as receiver:
        async with httpx.AsyncClient(transport=guarded_transport(False)) as http:
            context = DestinationContext(http=http, timeout_s=5, allow_private_networks=False,
                                         connections_guarded=True)
            result = await exchange(context, "POST", receiver.url, content=b"{}")
    assert not result.ok and not result.retryable and "private" in result.error
    assert receiver.requests == []
