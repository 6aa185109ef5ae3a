"""The SSRF guard at connection time: every address connected to is checked, whatever DNS said before."""

import asyncio
import socket

import pytest

from plugins.destinations.http_result import exchange
from plugins.destinations.spec import DestinationContext, SendResult
from switchboard.netguard import ensure_public_destination, parse_networks
from tests.outbound_fixture import outbound_client
from tests.receivers import Receiver


def guarded_context(http, guarded: bool = True) -> DestinationContext:
    return DestinationContext(http=http, timeout_s=5, allow_private_networks=False, connections_guarded=guarded)


async def test_a_guarded_client_refuses_private_addresses_unless_allowed() -> None:
    with Receiver() as receiver:
        async with outbound_client(allow_private=False) as http:
            result = await exchange(guarded_context(http), "POST", receiver.url, body=b"{}")
            assert isinstance(result, SendResult) and result.error is not None
            assert not result.ok and not result.retryable and "private" in result.error
        async with outbound_client(allow_private=False, allowed=parse_networks(["127.0.0.0/8"])) as http:
            # "localhost" is resolved by the guard and the connection made to the checked address.
            answer = await exchange(guarded_context(http), "POST", receiver.url.replace("127.0.0.1", "localhost"),
                                    body=b"{}")
            assert answer.status_code == 200
            refused = await exchange(guarded_context(http), "POST", "http://[::1]:9/x", body=b"{}")
            assert isinstance(refused, SendResult) and refused.error is not None
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
    assert isinstance(result, SendResult) and result.error is not None
    assert not result.ok and not result.retryable and "private" in result.error
    assert receiver.requests == []


def test_malformed_networks_are_an_error() -> None:
    with pytest.raises(ValueError):
        parse_networks(["10.0.0.0/33"])


async def test_without_a_guarded_client_the_host_is_checked_per_request() -> None:
    with Receiver() as receiver:
        async with outbound_client() as http:
            result = await exchange(guarded_context(http, guarded=False), "POST", receiver.url, body=b"{}")
    assert isinstance(result, SendResult) and result.error is not None
    assert not result.ok and not result.retryable and "private" in result.error
    assert receiver.requests == []


@pytest.mark.parametrize("address,forbidden", [
    ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254, the cloud metadata service
    ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
    ("64:ff9b:1::a00:1", True),  # local-use NAT64 prefix
    ("2002:a9fe:a9fe::1", True),  # 6to4 of 169.254.169.254
    ("::a9fe:a9fe", True),  # IPv4-compatible
    ("::ffff:127.0.0.1", True),  # IPv4-mapped
    ("64:ff9b::808:808", False),  # NAT64 of a public address
    ("2606:4700::1111", False),
])
def test_ipv6_addresses_carrying_an_ipv4_address_are_judged_by_it(address: str, forbidden: bool) -> None:
    from switchboard.netguard import _is_forbidden

    assert _is_forbidden(address) is forbidden
    assert _is_forbidden(address, parse_networks([f"{address}/128"])) is False  # the operator may allow one
