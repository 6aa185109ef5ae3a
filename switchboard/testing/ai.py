"""The contract every AI provider keeps, checked with the AI service's own requests and checks.

Subclass :class:`AIProviderContract` in a test module (a class named
``Test...``) and name the provider; pytest runs every ``test_`` method below
on it. Requests are built as the AI service builds them (its built-in prompt
templates, its classification schema) and answers are checked with the AI
service's own parsers, so an answer that passes here is one the platform
uses.

A provider that calls an HTTP API is pointed at a loopback server (a
:class:`switchboard.testing.receivers.Receiver`) through its
``SWITCHBOARD_AI_<NAME>_BASE_URL`` setting; the class says what that API
answers (:meth:`AIProviderContract.api_answer`) and how it reports an error
(:meth:`AIProviderContract.api_error`)::

    class TestAcmeProvider(AIProviderContract):
        provider_name = "acme"

        def api_answer(self, request, text):
            return {"text": text, "model": "acme-1", "usage": {"input_tokens": 12, "output_tokens": 3}}

Then the provider must also turn 5xx, 429 and timeouts into a retryable
:class:`ProviderError` (within its deadline, honouring ``Retry-After``), other
4xx into a final one, never show its API key in an error, send one request
per call (the host does the retrying), and be unavailable without a key. A
provider without an API (``api_answer`` returns None, as for ``local``)
skips those.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

import pytest

from plugins.ai.spec import AIRequest, AIResponse, EventInput, ProviderError, Turn
from plugins.manager import load_registry
from services.ai.answers import (
    DEFAULT_CATEGORIES,
    classification_schema,
    parse_classification,
    parse_extraction,
    parse_reply,
)
from services.ai.prompts import BUILTIN, render
from switchboard.testing.receivers import Receiver

__all__ = ["AIProviderContract", "settings_prefix"]

T = TypeVar("T")

EVENT = EventInput(
    tenant_id="ten_contract", source_type="stripe", event_type="invoice.payment_failed",
    payload={"id": "in_1", "amount_due": 2000, "currency": "usd", "customer_email": "ada@example.com"},
    text="The payment of 20.00 USD for invoice in_1 failed: card ending 4242 was declined.",
)
EXTRACTION_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"amount_due": {"type": ["number", "null"]}, "currency": {"type": ["string", "null"]}},
    "required": ["amount_due", "currency"],
}
TURNS = (Turn("customer", "Hi, my card was declined for invoice in_1. Can you help?"),)


def settings_prefix(provider_name: str) -> str:
    """``SWITCHBOARD_AI_<NAME>_``: where a provider's settings are read from."""
    return f"SWITCHBOARD_AI_{provider_name.upper()}_"


class AIProviderContract:
    """What every AI provider must do; see the module docstring for how to use it."""

    #: The ``name`` the provider registers, e.g. "acme".
    provider_name: ClassVar[str]
    api_key: ClassVar[str] = "sk-contract-0123456789abcdef0123"
    #: The provider's deadline (its ``_TIMEOUT`` setting), in seconds.
    timeout_s: ClassVar[float] = 1.0
    categories: ClassVar[tuple[str, ...]] = DEFAULT_CATEGORIES

    # --- what a subclass may override ---------------------------------------------------------

    def provider(self, base_url: str, api_key: str, timeout_s: float) -> Any:
        """The provider as a deployment registers it, its API at ``base_url``: its ``_API_KEY``,
        ``_BASE_URL`` and ``_TIMEOUT`` settings given (a provider without an API ignores them)."""
        prefix = settings_prefix(self.provider_name)
        env = {f"{prefix}API_KEY": api_key, f"{prefix}BASE_URL": base_url, f"{prefix}TIMEOUT": f"{timeout_s:g}"}
        return load_registry(env=env).ai_provider(self.provider_name)

    def api_answer(self, request: AIRequest, text: str) -> Any:
        """The body the provider's API answers ``request`` with when its answer is ``text`` (JSON text for
        classify and extract); None when the provider calls no API."""
        return None

    def api_error(self, status: int, message: str) -> Any:
        """The body of the API's error answer."""
        return {"error": {"type": "error", "message": message}}

    # --- helpers ------------------------------------------------------------------------------

    def requests(self) -> dict[str, tuple[AIRequest, str]]:
        """One request per task, as the AI service makes it, with an answer the service accepts."""
        classify_system, classify_prompt = render(BUILTIN["classify"], EVENT, categories=self.categories)
        extract_system, extract_prompt = render(BUILTIN["extract"], EVENT, schema=EXTRACTION_SCHEMA)
        reply_system, reply_prompt = render(BUILTIN["reply"], EVENT, turns=TURNS)
        classification = {"category": self.categories[0], "priority": "high", "sentiment": "negative",
                          "confidence": 0.9, "summary": "A card payment failed for invoice in_1."}
        return {
            "classify": (AIRequest("classify", classify_system, classify_prompt, classification_schema(self.categories),
                                   300, event=EVENT, categories=self.categories), json.dumps(classification)),
            "extract": (AIRequest("extract", extract_system, extract_prompt, EXTRACTION_SCHEMA, 300, event=EVENT),
                        json.dumps({"amount_due": 2000, "currency": "usd"})),
            "reply": (AIRequest("reply", reply_system, reply_prompt, None, 300, event=EVENT, turns=TURNS),
                      "Sorry about that: please update your card and we will retry the payment."),
        }

    def has_api(self) -> bool:
        request, text = self.requests()["reply"]
        return self.api_answer(request, text) is not None

    def run(self, provider: Any, call: Callable[[Any], Awaitable[T]]) -> T:
        """``call(provider)`` on an event loop of its own, the provider closed afterwards (``aclose``)."""

        async def once() -> T:
            try:
                return await call(provider)
            finally:
                if hasattr(provider, "aclose"):
                    await provider.aclose()

        return asyncio.run(once())

    def answer(self, task: str) -> tuple[AIResponse, Receiver]:
        """The provider's answer to the task's request, its API (if any) answering well."""
        request, text = self.requests()[task]
        body = self.api_answer(request, text)
        with Receiver(status=200, headers={"content-type": "application/json"},
                      response_body=json.dumps(body).encode()) as api:
            response = self.run(self.provider(api.base_url, self.api_key, self.timeout_s),
                                lambda provider: provider.complete(request))
        assert isinstance(response, AIResponse), f"complete returned {response!r}, not an AIResponse"
        assert isinstance(response.text, str)
        assert isinstance(response.model, str) and response.model, f"model {response.model!r}"
        for count in (response.input_tokens, response.output_tokens):
            assert isinstance(count, int) and count >= 0, f"token count {count!r}"
        if body is not None:
            assert len(api.requests) == 1, (f"the API got {len(api.requests)} requests for one call: a provider "
                                            "asks once, the host retries")
            [sent] = api.requests
            assert any(self.api_key in value for value in sent.headers.values()), "the API key was not sent"
            # A provider that prompts a model sends the prompt (the longest of its lines will do, JSON-escaped).
            line = max(request.prompt.splitlines(), key=len)
            assert json.dumps(line)[1:-1].encode() in sent.body, f"the prompt's line {line!r} was not sent"
        return response, api

    def failure(self, status: int | None = None, delay_s: float = 0.0, message: str = "unavailable",
                headers: Mapping[str, str] | None = None) -> tuple[ProviderError, float]:
        """The ProviderError the provider raises when its API answers ``status`` (or, with ``status`` None,
        nobody listens); and the seconds it took."""
        if not self.has_api():
            pytest.skip(f"the {self.provider_name} provider calls no API")
        request, _ = self.requests()["classify"]

        async def call(provider: Any) -> float:
            started = time.monotonic()
            with pytest.raises(ProviderError) as raised:
                await provider.complete(request)
            failures.append(raised.value)
            return time.monotonic() - started

        failures: list[ProviderError] = []
        if status is None:
            with socket.socket() as closed:  # a port nobody listens on
                closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
            took = self.run(self.provider(f"http://127.0.0.1:{port}", self.api_key, self.timeout_s), call)
        else:
            body = json.dumps(self.api_error(status, message)).encode()
            with Receiver(status=status, delay_s=delay_s, response_body=body,
                          headers={"content-type": "application/json", **(headers or {})}) as api:
                took = self.run(self.provider(api.base_url, self.api_key, self.timeout_s), call)
            # (A request the server is still delaying is not recorded yet.)
            assert delay_s or len(api.requests) == 1, (f"the API got {len(api.requests)} requests for one call: "
                                                       "a provider asks once, the host retries")
        [error] = failures
        assert self.api_key not in str(error), f"the error shows the API key: {error}"
        return error, took

    # --- the contract ---------------------------------------------------------------------------

    def test_it_describes_itself(self) -> None:
        provider = self.provider("http://127.0.0.1:9", self.api_key, self.timeout_s)
        assert provider.name == self.provider_name
        costs = tuple(provider.cost_per_million_tokens)
        assert len(costs) == 2 and all(isinstance(c, (int, float)) and math.isfinite(c) and c >= 0 for c in costs), (
            f"cost_per_million_tokens {costs!r}: two prices, input and output, in dollars")
        assert provider.available is True, "with an API key the provider must be available"
        self.run(provider, lambda _: asyncio.sleep(0))

    def test_classify_answers_what_the_ai_service_accepts(self) -> None:
        response, _ = self.answer("classify")
        parse_classification(response.text, self.categories)

    def test_extract_answers_json_valid_against_the_schema(self) -> None:
        response, _ = self.answer("extract")
        parse_extraction(response.text, EXTRACTION_SCHEMA)

    def test_reply_answers_text(self) -> None:
        response, _ = self.answer("reply")
        parse_reply(response.text)

    @pytest.mark.parametrize("status", [500, 502, 503, 429])
    def test_5xx_and_429_are_retryable_errors_after_retry_after(self, status: int) -> None:
        error, _ = self.failure(status, headers={"retry-after": "7"})
        assert error.retryable is True, f"answered {status}: retryable={error.retryable}"
        assert error.retry_after_s == 7, f"Retry-After: 7 gave retry_after_s={error.retry_after_s}"

    @pytest.mark.parametrize("status", [400, 401, 403, 404])
    def test_other_4xx_are_final_errors(self, status: int) -> None:
        error, _ = self.failure(status)
        assert error.retryable is False, f"answered {status}: retryable={error.retryable}"

    @pytest.mark.parametrize("status", [401, 500])
    def test_the_api_key_is_never_shown_even_when_the_api_echoes_it(self, status: int) -> None:
        error, _ = self.failure(status, message=f"Incorrect API key provided: {self.api_key}")
        assert str(error), "an error without a message"

    def test_a_timeout_is_a_retryable_error_within_the_deadline(self) -> None:
        error, took = self.failure(200, delay_s=self.timeout_s + 2)
        assert error.retryable is True
        assert took < self.timeout_s + 1.5, f"took {took:.1f}s against a {self.timeout_s:g}s deadline"

    def test_a_refused_connection_is_a_retryable_error(self) -> None:
        error, _ = self.failure(None)
        assert error.retryable is True

    def test_without_a_key_it_is_unavailable(self) -> None:
        if not self.has_api():
            pytest.skip(f"the {self.provider_name} provider calls no API")
        provider = self.provider("http://127.0.0.1:9", "", self.timeout_s)
        assert provider.available is False
        self.run(provider, lambda _: asyncio.sleep(0))
