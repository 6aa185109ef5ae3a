"""The contract every destination keeps, against a real HTTP server on loopback.

Subclass :class:`DestinationContract` in a test module (a class named
``Test...``), name the destination and say how an endpoint pointing at a
given server looks; pytest runs every ``test_`` method below on it::

    class TestAcmeDestination(DestinationContract):
        destination_name = "acme"

        def target(self, base_url):
            return EndpointTarget(base_url + "/hook", generate_webhook_secret(), {"token": "acme-token-0001"})

Each test starts a :class:`switchboard.testing.receivers.Receiver` that
answers as told (a status, a body, a delay) and sends one message through the
host's own HTTP client, as the delivery service would. What every destination
owes the host: 2xx is success; 5xx and 429 are retryable, honouring
``Retry-After``; other 4xx are final; a timeout is retryable and returns
within the deadline; a send is one request (the host does the retrying); the
answer's status, body and headers are kept in the result; and no credential
of the endpoint ever appears in ``response_excerpt`` or ``error``, which
the host shows to whoever reads the attempt log.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from plugins.destinations.spec import DestinationContext, EndpointTarget, OutboundMessage, SendResult
from switchboard.outbound import OutboundClient
from switchboard.testing.receivers import Receiver
from switchboard.testing.registry import installed_registry

__all__ = ["DestinationContract", "credentials_in"]

# Config keys whose values are credentials (tokens, passwords, Authorization headers...).
_CREDENTIAL_KEYS = re.compile(r"token|secret|password|passwd|key|auth|credential|signature", re.IGNORECASE)
_ERROR_BODY = b"not now"


def credentials_in(config: Any, key: str = "") -> Iterator[str]:
    """The credential values in an endpoint's config: strings under credential-like keys, at any depth,
    and the last word of each (the token of ``Bearer <token>``)."""
    if isinstance(config, Mapping):
        for name, value in config.items():
            yield from credentials_in(value, str(name))
    elif isinstance(config, (list, tuple)):
        for value in config:
            yield from credentials_in(value, key)
    elif isinstance(config, str) and _CREDENTIAL_KEYS.search(key) and len(config) >= 6:
        yield config
        if len(config.split()[-1]) >= 6:
            yield config.split()[-1]


class DestinationContract:
    """What every destination must do; see the module docstring for how to use it."""

    #: The ``destination`` the plugin registers, e.g. "acme".
    destination_name: ClassVar[str]
    #: The host's deadline for one send, in seconds.
    timeout_s: ClassVar[float] = 1.0
    #: What the server answers on success (an API may need JSON, e.g. Slack's ``{"ok": true}``).
    success_body: ClassVar[bytes] = b"ok"
    message: ClassVar[OutboundMessage] = OutboundMessage(
        delivery_id="evt_contract:ep_contract", event_id="evt_contract", tenant_id="ten_contract",
        event_type="order.created", payload={"order": {"id": 42, "total": "19.99"}, "text": "Order 42 is in"},
        attempt=1, source_id="src_contract", conversation_key="C123ABC456:1355517523.000005")

    # --- what a subclass gives or may override -----------------------------------------------

    def target(self, base_url: str) -> EndpointTarget:
        """An endpoint of this destination that sends to the server at ``base_url`` (``http://127.0.0.1:PORT``,
        no path), with credentials in its config where the destination takes any."""
        raise NotImplementedError(f"{type(self).__name__} must define target(base_url)")

    def destination(self) -> Any:
        """The destination under test, as the delivery service finds it."""
        return installed_registry().destination(self.destination_name)

    def credentials(self, target: EndpointTarget) -> list[str]:
        """What must never be shown in a result: the endpoint's secret and its config's credentials."""
        found = [target.secret] if target.secret else []
        return found + [value for value in credentials_in(target.config) if value]

    # --- helpers ------------------------------------------------------------------------------

    def send(self, target: EndpointTarget) -> tuple[SendResult, float]:
        """One send through the host's HTTP client, as the delivery service makes it; the result and the
        seconds it took."""

        async def once() -> tuple[SendResult, float]:
            client = OutboundClient(allow_private=True)
            try:
                context = DestinationContext(http=client, timeout_s=self.timeout_s, allow_private_networks=True,
                                             connections_guarded=True)
                started = time.monotonic()
                result = await self.destination().send(self.message, target, context)
                return result, time.monotonic() - started
            finally:
                await client.aclose()

        result, took = asyncio.run(once())
        assert isinstance(result, SendResult), f"send returned {result!r}, not a SendResult"
        self.assert_no_credentials(result, target)
        return result, took

    def assert_no_credentials(self, result: SendResult, target: EndpointTarget) -> None:
        for credential in self.credentials(target):
            for field in ("response_excerpt", "error"):
                shown = getattr(result, field) or ""
                assert credential not in shown, f"{field} shows a credential of the endpoint: {shown!r}"

    def answered(self, status: int, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> tuple[SendResult, Receiver]:
        """The result of one send to a server that answers ``status`` (with ``body`` and ``headers``)."""
        with Receiver(status=status, response_body=body,
                      headers={"x-answered-by": "contract", **(headers or {})}) as server:
            target = self.target(server.base_url)
            result, _ = self.send(target)
        assert len(server.requests) == 1, (f"the server got {len(server.requests)} requests for one send: "
                                           "a destination sends once, the host retries")
        assert result.status_code == status, f"status_code {result.status_code}, the server answered {status}"
        assert result.response_headers.get("x-answered-by") == "contract", (
            f"response_headers {dict(result.response_headers)} miss the answer's headers")
        return result, server

    # --- the contract ---------------------------------------------------------------------------

    def test_the_endpoint_is_valid(self) -> None:
        self.destination().validate(self.target("http://127.0.0.1:9"))

    @pytest.mark.parametrize("status", [200, 201, 202])
    def test_a_2xx_answer_is_success(self, status: int) -> None:
        result, _ = self.answered(status, self.success_body)
        assert result.ok, f"answered {status}, the result is a failure: {result.error}"

    @pytest.mark.parametrize("status", [500, 502, 503, 429])
    def test_5xx_and_429_are_retried_after_retry_after(self, status: int) -> None:
        result, _ = self.answered(status, _ERROR_BODY, {"retry-after": "7"})
        assert not result.ok and result.retryable, f"answered {status}: ok={result.ok}, retryable={result.retryable}"
        assert result.retry_after_s == 7, f"Retry-After: 7 gave retry_after_s={result.retry_after_s}"
        assert _ERROR_BODY.decode() in result.response_excerpt, f"response_excerpt {result.response_excerpt!r}"

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
    def test_other_4xx_are_final(self, status: int) -> None:
        result, _ = self.answered(status, _ERROR_BODY)
        assert not result.ok and not result.retryable, (
            f"answered {status}: ok={result.ok}, retryable={result.retryable}")
        assert _ERROR_BODY.decode() in result.response_excerpt, f"response_excerpt {result.response_excerpt!r}"

    def test_a_timeout_is_retried_and_kept_within_the_deadline(self) -> None:
        with Receiver(delay_s=self.timeout_s + 2) as server:
            result, took = self.send(self.target(server.base_url))
        assert not result.ok and result.retryable, f"timed out: ok={result.ok}, retryable={result.retryable}"
        assert result.error, "a timeout without an error to show"
        assert took < self.timeout_s + 1, f"took {took:.1f}s against a {self.timeout_s:g}s deadline"

    def test_a_refused_connection_is_retried(self) -> None:
        with socket.socket() as closed:  # a port nobody listens on
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        result, _ = self.send(self.target(f"http://127.0.0.1:{port}"))
        assert not result.ok and result.retryable and result.error, (
            f"connection refused: ok={result.ok}, retryable={result.retryable}, error={result.error!r}")
