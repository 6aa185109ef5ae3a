"""The SSRF guard at connection time: every address connected to is checked, whatever DNS said before."""

import asyncio
import socket

import pytest

from plugins.destinations.http_result import exchange
from plugins.destinations.spec import DestinationContext
from switchboard.netguard import ensure_public_destination, parse_networks
from tests.outbound_fixture import outbound_client
from tests.receivers import Receiver


def guarded_context(http, guarded: bool = True) -> DestinationContext:
    return DestinationContext(http=http, timeout_s=5, allow_private_networks=False, connections_guarded=guarded)


async def test_a_guarded_client_refuses_private_addresses_unless_allowed() -> None:
    with Receiver() as receiver:
        async with outbound_client(allow_private=False) as http:
            result = await exchange(guarded_context(http), "POST", receiver.url, body=b"{}")
            assert not result.ok and not result.retryable and "private" in result.error
        async with outbound_client(allow_private=False, allowed=parse_networks(["127.0.0.0/8"])) as http:
            # "localhost" is resolved by the guard and the connection made to the checked address.
            answer = await exchange(guarded_context(http), "POST", receiver.url.replace("127.0.0.1", "localhost"),
                                    body=b"{}")
            assert answer.status_code == 200
            refused = await exchange(guarded_context(http), "POST", "http://[::1]:9/x", body=b"{}")
            assert not refused.ok and not refused.retryable and "private" in refused.error
    assert len(receiver.requests) == 1


async def test_a_dns_answer_that_changes_after_the_check_is_not_followed(monkeypatch) -> None:
    """DNS rebinding: public when the endpoint was checked, loopback when connecting. The client
    resolves once per connection, checks, and connects to what it checked: refused, not followed."""
    loop = asyncio.get_running_loop()
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

    async def rebinding(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        url = f"http://rebind.example:{port}/hook"
        await ensure_public_destination(url, allow_private=False)  # the check at creation passes
        async with outbound_client(allow_private=False) as http:
            result = await exchange(guarded_context(http), "POST", url, body=b"{}")
    assert not result.ok and not result.retryable and "private" in result.error
    assert receiver.requests == []


def test_malformed_networks_are_an_error() -> None:
    with pytest.raises(ValueError):
        parse_networks(["10.0.0.0/33"])


async def test_without_a_guarded_client_the_host_is_checked_per_request() -> None:
    with Receiver() as receiver:
        async with outbound_client() as http:
            result = await exchange(guarded_context(http, guarded=False), "POST", receiver.url, body=b"{}")
    assert not result.ok and not result.retryable and "private" in result.error
    assert receiver.requests == []
