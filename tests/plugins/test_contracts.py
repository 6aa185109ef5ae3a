"""The built-in plugins pass the contract tests of switchboard.testing, as every third-party plugin must.

Sources are signed with the providers' own SDKs (the signers of
``tests.plugins.test_sources``) rather than with their own ``sign``; the
destinations send to a real server on loopback through the host's HTTP
client; the model providers talk to a loopback stand-in for their API in its
own format (``tests.ai_servers``), the local provider to nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import pytest

from plugins.ai.spec import AIRequest, ProviderError
from plugins.destinations.spec import EndpointTarget, SendResult
from switchboard.signatures import generate_webhook_secret
from switchboard.testing import AIProviderContract, DestinationContract, SourceContract
from switchboard.testing.ai import settings_prefix
from plugins.manager import load_registry
from tests.ai_servers import anthropic_error, anthropic_message, openai_completion, openai_error
from tests.plugins.test_sources import BY_TYPE, Case, sample

# --- sources -------------------------------------------------------------------------------------


class BuiltInSource(SourceContract):
    """A built-in source, its requests signed by the provider's SDK (or documented algorithm)."""

    case: ClassVar[Case]

    def sign(self, body: bytes, secret: str) -> dict[str, str]:
        return self.case.sign(body, secret, int(time.time()))


def source_contract(kind: str, signature_header: str, tolerance_s: float | None, event_type: str,
                    provider_event_id: str | None) -> type[SourceContract]:
    case = BY_TYPE[kind]
    return type(f"Test{kind.title().replace('-', '')}Source", (BuiltInSource,), {
        "case": case, "source_type": kind, "secret": case.secret, "sample": sample(kind),
        "content_type": case.content_type, "config": case.config or {}, "signature_header": signature_header,
        "timestamp_tolerance_s": tolerance_s, "event_type": event_type, "provider_event_id": provider_event_id,
    })


TestStripeSource = source_contract("stripe", "stripe-signature", 300, "invoice.paid", "evt_1NG8Du2eZvKYlo2CUI79vXWy")
TestGithubSource = source_contract("github", "x-hub-signature-256", None, "issues.opened",
                                   "72d3162e-cc78-11e3-81ab-4c9367dc0958")
TestSlackSource = source_contract("slack", "x-slack-signature", 300, "message", "Ev08MFMKH6")
TestIntercomSource = source_contract("intercom", "x-hub-signature", None, "conversation.user.created", None)
TestTwilioSource = source_contract("twilio", "x-twilio-signature", None, "message.received",
                                   "message:SM1f0e8ae6ade43cb3c0ce4525424e404f:received")
TestStandardWebhooksSource = source_contract("standard-webhooks", "webhook-signature", 300, "invoice.paid",
                                             "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
TestGenericSource = source_contract("generic", "x-sig", 300, "order.created", None)


def test_every_built_in_source_is_under_contract() -> None:
    covered = {cls.source_type for cls in BuiltInSource.__subclasses__()}
    assert covered == set(load_registry(env={}).sources)


# --- destinations --------------------------------------------------------------------------------

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


class TestWebhookDestination(DestinationContract):
    destination_name = "webhook"

    def target(self, base_url: str) -> EndpointTarget:
        return EndpointTarget(base_url + "/hook", generate_webhook_secret(),
                              {"headers": {"Authorization": "Bearer tok_contract_0123456789"}})


class TestSlackIncomingWebhookDestination(DestinationContract):
    destination_name = "slack"

    def target(self, base_url: str) -> EndpointTarget:
        return EndpointTarget(base_url + "/services/T000/B000/XXXX", generate_webhook_secret())


class TestSlackChatPostMessageDestination(DestinationContract):
    destination_name = "slack"
    success_body = b'{"ok": true, "channel": "C123ABC456", "ts": "1503435956.000247"}'

    def target(self, base_url: str) -> EndpointTarget:
        return EndpointTarget(base_url, generate_webhook_secret(),
                              {"mode": "chat_post_message", "bot_token": "xoxb-1234-5678-abcdef"})


class TestIntercomDestination(DestinationContract):
    destination_name = "intercom"
    success_body = b'{"type": "conversation", "id": "147"}'

    def target(self, base_url: str) -> EndpointTarget:
        return EndpointTarget(base_url, generate_webhook_secret(),
                              {"access_token": "dG9rOmNvbnRyYWN0XzAxMjM0NTY3ODk=", "admin_id": "991267",
                               "conversation_id": "147"})


class TestTwilioDestination(DestinationContract):
    destination_name = "twilio"
    success_body = b'{"sid": "SM00000000000000000000000000000001", "status": "queued"}'

    def target(self, base_url: str) -> EndpointTarget:
        return EndpointTarget(base_url, generate_webhook_secret(),
                              {"account_sid": ACCOUNT_SID, "auth_token": "twilio-auth-token-0000",
                               "from": "+15017122661", "to": "+15558675310"})


# --- AI providers ----------------------------------------------------------------------------------


class TestLocalProvider(AIProviderContract):
    provider_name = "local"


class TestAnthropicProvider(AIProviderContract):
    provider_name = "anthropic"

    def api_answer(self, request: AIRequest, text: str) -> Any:
        if request.output_schema is None:
            return anthropic_message([{"type": "text", "text": text}])
        return anthropic_message([{"type": "tool_use", "id": "toolu_01", "name": "answer", "input": json.loads(text)}],
                                 stop_reason="tool_use")

    def api_error(self, status: int, message: str) -> Any:
        return anthropic_error("api_error" if status >= 500 else "invalid_request_error", message)


class TestOpenAIProvider(AIProviderContract):
    provider_name = "openai"

    def provider(self, base_url: str, api_key: str, timeout_s: float) -> Any:
        # The SDK's base URL includes the API version, as api.openai.com/v1 does.
        prefix = settings_prefix(self.provider_name)
        return load_registry(env={f"{prefix}API_KEY": api_key, f"{prefix}BASE_URL": base_url + "/v1",
                                  f"{prefix}TIMEOUT": f"{timeout_s:g}"}).ai_provider(self.provider_name)

    def api_answer(self, request: AIRequest, text: str) -> Any:
        return openai_completion(text)

    def api_error(self, status: int, message: str) -> Any:
        return openai_error(message, "server_error" if status >= 500 else "invalid_request_error")


# --- the contracts catch what they are for ----------------------------------------------------------


class LastByteBlindSource:
    """The generic source, but its HMAC leaves out the body's last byte and it reads no timestamp."""

    name = "generic"

    def __init__(self) -> None:
        from plugins.sources.generic import GenericHmacSource

        self.real = GenericHmacSource()

    def validate_config(self, config):
        return self.real.validate_config(config)

    def verify(self, request, secret, config):
        self.real.verify(type(request)(request.method, request.path, request.headers, request.body[:-1]), secret,
                         {**config, "timestamp_header": None})

    def sign(self, body, secret, config, url):
        return self.real.sign(body[:-1], secret, {**config, "timestamp_header": None}, url)


def test_the_source_contract_catches_an_unsigned_byte_and_an_unchecked_timestamp() -> None:
    class Contract(TestGenericSource):  # type: ignore[valid-type,misc]
        def source(self) -> Any:
            return LastByteBlindSource()

        def sign(self, body: bytes, secret: str) -> dict[str, str]:
            return self.source().sign(body, secret, self.validated_config(), self.url)

    contract = Contract()
    contract.test_a_genuinely_signed_request_verifies()
    with pytest.raises(AssertionError, match=rf"byte at \[{len(contract.sample) - 1}\] changed"):
        contract.test_no_single_byte_change_of_the_body_verifies()
    with pytest.raises(pytest.fail.Exception, match="verified"):
        contract.test_a_stale_or_future_timestamp_is_refused()


class CarelessDestination:
    """Retries client errors and shows its token in every error."""

    name = "careless"

    def validate(self, target: EndpointTarget) -> None:
        pass

    async def send(self, message, target: EndpointTarget, context) -> SendResult:
        from plugins.destinations.http_result import exchange

        answer = await exchange(context, "POST", target.url, body=b"{}",
                                headers={"authorization": f"Bearer {target.config['token']}"})
        if isinstance(answer, SendResult):
            return answer
        return SendResult(ok=answer.ok, status_code=answer.status_code, response_excerpt=answer.excerpt,
                          response_headers=answer.headers, retryable=True,
                          error=None if answer.ok else f"sent with token {target.config['token']}")


def test_the_destination_contract_catches_a_retried_4xx_and_a_shown_token() -> None:
    class Contract(DestinationContract):
        destination_name = "careless"

        def destination(self) -> Any:
            return CarelessDestination()

        def target(self, base_url: str) -> EndpointTarget:
            return EndpointTarget(base_url + "/hook", generate_webhook_secret(), {"token": "tok_careless_0001"})

    contract = Contract()
    contract.test_a_2xx_answer_is_success(200)
    with pytest.raises(AssertionError, match="error shows a credential"):
        contract.test_other_4xx_are_final(404)
    with pytest.raises(AssertionError, match="retryable=True"):
        Contract.assert_no_credentials = lambda self, result, target: None  # type: ignore[method-assign]
        contract.test_other_4xx_are_final(404)


class KeyShowingProvider:
    """An API provider whose errors show its key."""

    name = "keyshow"
    cost_per_million_tokens = (1.0, 2.0)

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url, self.api_key, self.available = base_url, api_key, bool(api_key)

    async def complete(self, request: AIRequest) -> Any:
        import httpx

        async with httpx.AsyncClient(timeout=1) as http:
            answer = await http.post(self.base_url, headers={"authorization": self.api_key},
                                     content=json.dumps(request.prompt))
        raise ProviderError(f"answered {answer.status_code} to key {self.api_key}", retryable=answer.status_code >= 500)


def test_the_ai_provider_contract_catches_a_shown_key() -> None:
    class Contract(AIProviderContract):
        provider_name = "keyshow"

        def provider(self, base_url: str, api_key: str, timeout_s: float) -> Any:
            return KeyShowingProvider(base_url, api_key)

        def api_answer(self, request: AIRequest, text: str) -> Any:
            return {"text": text}

    with pytest.raises(AssertionError, match="the error shows the API key"):
        Contract().test_other_4xx_are_final_errors(400)
