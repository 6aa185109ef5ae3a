"""The ``anthropic`` and ``openai`` providers against real loopback servers.

Each test starts a :class:`tests.ai_servers.FakeAIServer` that speaks the
provider's HTTP API, registers the providers as a deployment would
(``load_registry(env=...)``) with ``BASE_URL`` pointing at it, and lets the
official SDK do the talking: what the server received and what the provider
answered or raised are both checked.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from plugins.ai import anthropic_provider, openai_provider
from plugins.ai.spec import AIRequest, ProviderError
from plugins.manager import load_registry
from tests.ai_servers import (
    FakeAIServer,
    Received,
    Reply,
    anthropic_error,
    anthropic_message,
    openai_completion,
    openai_error,
)

KEY = "sk-test-0123456789abcdef"
SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "support", "other"]},
        "priority": {"type": "string"},
    },
    "required": ["category", "priority"],
}
ANSWER = {"category": "billing", "priority": "high"}


def classify_request(**kwargs: Any) -> AIRequest:
    return AIRequest("classify", "You sort webhook events.", "Event: invoice.payment_failed", SCHEMA,
                     max_output_tokens=300, **kwargs)


def reply_request(**kwargs: Any) -> AIRequest:
    return AIRequest("reply", "You draft support replies.", "Customer: where is my refund?", None, **kwargs)


@dataclass(frozen=True)
class Flavour:
    """What differs between the two providers' APIs, for the tests they share."""

    name: str
    path: str  # where the SDK posts a request
    api_root: str  # appended to the server's URL to make BASE_URL
    answer: Callable[[], dict[str, Any]]  # a good body answering classify_request
    error: Callable[[str, str], dict[str, Any]]  # (type, message) -> an error body

    def key_sent(self, request: Received) -> str | None:
        authorization = request.headers.get("authorization", "")
        if self.name == "anthropic" and "x-api-key" in request.headers:
            # anthropic 1.x sent the key as x-api-key; 2.x sends it as a bearer token.
            return request.headers["x-api-key"]
        return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None


ANTHROPIC = Flavour(
    "anthropic", "/v1/messages", "",
    lambda: anthropic_message([{"type": "tool_use", "id": "toolu_01", "name": "answer", "input": ANSWER}],
                              stop_reason="tool_use"),
    anthropic_error,
)
OPENAI = Flavour(
    "openai", "/v1/chat/completions", "/v1",
    lambda: openai_completion(json.dumps(ANSWER)),
    lambda error_type, message: openai_error(message, error_type),
)


@pytest.fixture
def server() -> Iterator[FakeAIServer]:
    with FakeAIServer() as fake:
        yield fake


def _provider(name: str, url: str, **settings: str) -> Any:
    env = {f"SWITCHBOARD_AI_{name.upper()}_{key.upper()}": value for key, value in settings.items()}
    return load_registry(env={f"SWITCHBOARD_AI_{name.upper()}_API_KEY": KEY,
                              f"SWITCHBOARD_AI_{name.upper()}_BASE_URL": url,
                              f"SWITCHBOARD_AI_{name.upper()}_TIMEOUT": "1", **env}).ai_provider(name)


@pytest.fixture
async def anthropic(server: FakeAIServer) -> AsyncIterator[Any]:
    provider = _provider("anthropic", server.url)
    yield provider
    await provider.aclose()


@pytest.fixture
async def openai(server: FakeAIServer) -> AsyncIterator[Any]:
    provider = _provider("openai", server.url + "/v1")
    yield provider
    await provider.aclose()


@pytest.fixture(params=[ANTHROPIC, OPENAI], ids=lambda flavour: flavour.name)
async def each(request: pytest.FixtureRequest, server: FakeAIServer) -> AsyncIterator[tuple[Flavour, Any]]:
    """Each provider in turn, with what the shared tests need to know of its API."""
    flavour = request.param
    provider = _provider(flavour.name, server.url + flavour.api_root)
    yield flavour, provider
    await provider.aclose()


# --- anthropic ---------------------------------------------------------------------------------


async def test_anthropic_classify_forces_the_answer_tool(anthropic, server: FakeAIServer) -> None:
    server.reply(Reply(body=anthropic_message(
        [{"type": "text", "text": "Let me classify this."},
         {"type": "tool_use", "id": "toolu_01", "name": "answer", "input": ANSWER}],
        model="claude-haiku-4-5-20251001", stop_reason="tool_use", input_tokens=321, output_tokens=17)))

    response = await anthropic.complete(classify_request())

    assert json.loads(response.text) == ANSWER
    assert (response.model, response.input_tokens, response.output_tokens) == ("claude-haiku-4-5-20251001", 321, 17)
    [sent] = server.received
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert ANTHROPIC.key_sent(sent) == KEY
    assert sent.headers.get("anthropic-version")
    assert sent.headers.get("x-stainless-retry-count") == "0"
    body = sent.json
    assert body["model"] == anthropic_provider.DEFAULT_MODEL == "claude-haiku-4-5"
    assert body["system"] == "You sort webhook events."
    assert body["messages"] == [{"role": "user", "content": "Event: invoice.payment_failed"}]
    assert body["max_tokens"] == 300
    [tool] = body["tools"]
    assert tool["name"] == "answer" and tool["input_schema"] == SCHEMA and tool["description"]
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}


async def test_anthropic_reply_joins_the_text_blocks(anthropic, server: FakeAIServer) -> None:
    server.reply(Reply(body=anthropic_message([{"type": "text", "text": "Hi Ada, "},
                                               {"type": "text", "text": "your refund is on its way."}],
                                              input_tokens=40, output_tokens=9)))

    response = await anthropic.complete(reply_request(model="claude-sonnet-5"))

    assert response.text == "Hi Ada, your refund is on its way."
    assert (response.input_tokens, response.output_tokens) == (40, 9)
    body = server.received[0].json
    assert body["model"] == "claude-sonnet-5"
    assert body["max_tokens"] == 512
    assert "tools" not in body and "tool_choice" not in body


async def test_anthropic_model_setting_is_the_default_model(server: FakeAIServer) -> None:
    provider = _provider("anthropic", server.url, model="claude-opus-4-5")
    server.reply(Reply(body=ANTHROPIC.answer()))
    try:
        await provider.complete(classify_request())
    finally:
        await provider.aclose()
    assert server.received[0].json["model"] == "claude-opus-4-5"


@pytest.mark.parametrize("content", [
    pytest.param([{"type": "text", "text": '{"category": "billing"}'}], id="text instead of the tool"),
    pytest.param([{"type": "tool_use", "id": "toolu_01", "name": "other_tool", "input": ANSWER}], id="another tool"),
    pytest.param([{"type": "tool_use", "id": "toolu_01", "name": "answer", "input": "billing"}],
                 id="input not an object"),
    pytest.param([], id="no content"),
])
async def test_anthropic_without_a_structured_answer_is_retryable(anthropic, server: FakeAIServer,
                                                                   content: list[dict[str, Any]]) -> None:
    server.reply(Reply(body=anthropic_message(content)))

    with pytest.raises(ProviderError, match="no structured answer") as caught:
        await anthropic.complete(classify_request())

    assert caught.value.retryable


async def test_anthropic_cut_off_answer_is_retryable(anthropic, server: FakeAIServer) -> None:
    server.reply(Reply(body=anthropic_message([{"type": "text", "text": "Hi Ada, your ref"}],
                                              stop_reason="max_tokens")))

    with pytest.raises(ProviderError, match="cut off") as caught:
        await anthropic.complete(reply_request())

    assert caught.value.retryable


async def test_anthropic_refusal_is_not_retryable(anthropic, server: FakeAIServer) -> None:
    server.reply(Reply(body=anthropic_message([], stop_reason="refusal")))

    with pytest.raises(ProviderError, match="refused") as caught:
        await anthropic.complete(reply_request())

    assert not caught.value.retryable


# --- openai ------------------------------------------------------------------------------------


async def test_openai_classify_uses_json_mode_and_quotes_the_schema(openai, server: FakeAIServer) -> None:
    server.reply(Reply(body=openai_completion(json.dumps(ANSWER), model="gpt-6-luna-2026-09-22",
                                              prompt_tokens=250, completion_tokens=12)))

    response = await openai.complete(classify_request())

    assert json.loads(response.text) == ANSWER
    assert (response.model, response.input_tokens, response.output_tokens) == ("gpt-6-luna-2026-09-22", 250, 12)
    [sent] = server.received
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers.get("x-stainless-retry-count") == "0"
    body = sent.json
    assert body["model"] == openai_provider.DEFAULT_MODEL == "gpt-6-luna"
    # The default model reasons; its thinking must not eat the answer's tokens.
    assert body["reasoning_effort"] == "none"
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("You sort webhook events.")
    assert "JSON" in system["content"] and json.dumps(SCHEMA, sort_keys=True) in system["content"]
    assert user == {"role": "user", "content": "Event: invoice.payment_failed"}
    # An OpenAI-compatible server (any base URL but api.openai.com) gets the widely known name.
    assert body["max_tokens"] == 300 and "max_completion_tokens" not in body


async def test_openai_reply_is_the_message_content(openai, server: FakeAIServer) -> None:
    server.reply(Reply(body=openai_completion("Hi Ada, your refund is on its way.")))

    response = await openai.complete(reply_request(model="gpt-4.1-mini"))

    assert response.text == "Hi Ada, your refund is on its way."
    body = server.received[0].json
    assert body["model"] == "gpt-4.1-mini"
    assert body["messages"] == [{"role": "system", "content": "You draft support replies."},
                                {"role": "user", "content": "Customer: where is my refund?"}]
    assert "response_format" not in body
    # Another model may not know the parameter.
    assert "reasoning_effort" not in body


async def test_openai_reasoning_effort_setting(server: FakeAIServer) -> None:
    provider = _provider("openai", server.url + "/v1", model="gpt-6-sol", reasoning_effort="low")
    server.reply(Reply(body=OPENAI.answer()))
    try:
        await provider.complete(classify_request())
    finally:
        await provider.aclose()
    assert server.received[0].json["reasoning_effort"] == "low"


async def test_openai_model_setting_is_the_default_model(server: FakeAIServer) -> None:
    provider = _provider("openai", server.url + "/v1", model="llama3.1:8b")
    server.reply(Reply(body=OPENAI.answer()))
    try:
        await provider.complete(classify_request())
    finally:
        await provider.aclose()
    assert server.received[0].json["model"] == "llama3.1:8b"


@pytest.mark.parametrize(("content", "finish_reason", "message"), [
    pytest.param('{"category": "bill', "length", "cut off", id="cut off"),
    pytest.param("", "stop", "empty", id="empty"),
    pytest.param(None, "stop", "empty", id="no content"),
])
async def test_openai_unusable_answer_is_retryable(openai, server: FakeAIServer, content: str | None,
                                                   finish_reason: str, message: str) -> None:
    server.reply(Reply(body=openai_completion(content, finish_reason=finish_reason)))

    with pytest.raises(ProviderError, match=message) as caught:
        await openai.complete(classify_request())

    assert caught.value.retryable


async def test_openai_content_filter_is_not_retryable(openai, server: FakeAIServer) -> None:
    server.reply(Reply(body=openai_completion(None, finish_reason="content_filter")))

    with pytest.raises(ProviderError, match="refused") as caught:
        await openai.complete(reply_request())

    assert not caught.value.retryable


# --- both --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error_type", "retryable"), [
    (500, "api_error", True),
    (503, "api_error", True),
    (529, "overloaded_error", True),
    (408, "timeout_error", True),
    (400, "invalid_request_error", False),
    (401, "authentication_error", False),
    (403, "permission_error", False),
    (404, "not_found_error", False),
])
async def test_error_statuses(each, server: FakeAIServer, status: int, error_type: str, retryable: bool) -> None:
    flavour, provider = each
    # Some APIs echo (part of) a refused key: it must not reach the error.
    server.reply(Reply(status, flavour.error(error_type, f"something went wrong with {KEY}")))

    with pytest.raises(ProviderError) as caught:
        await provider.complete(classify_request())

    assert caught.value.retryable is retryable
    assert caught.value.retry_after_s is None
    assert str(status) in str(caught.value) and KEY not in str(caught.value)
    assert len(server.received) == 1, "the SDK must not retry: the host does"


async def test_rate_limit_is_retryable_after_retry_after(each, server: FakeAIServer) -> None:
    flavour, provider = each
    server.reply(Reply(429, flavour.error("rate_limit_error", "slow down"), {"retry-after": "7"}))

    with pytest.raises(ProviderError, match="429") as caught:
        await provider.complete(classify_request())

    assert caught.value.retryable
    assert caught.value.retry_after_s == 7
    assert len(server.received) == 1


async def test_rate_limit_without_retry_after(each, server: FakeAIServer) -> None:
    flavour, provider = each
    server.reply(Reply(429, flavour.error("rate_limit_error", "slow down")))

    with pytest.raises(ProviderError) as caught:
        await provider.complete(classify_request())

    assert caught.value.retryable and caught.value.retry_after_s is None


async def test_timeout_is_retryable(each, server: FakeAIServer) -> None:
    flavour, provider = each  # TIMEOUT is 1 second
    server.reply(Reply(body=flavour.answer(), delay_s=1.8))

    started = time.monotonic()
    with pytest.raises(ProviderError, match="no answer within 1 s") as caught:
        await provider.complete(classify_request())

    assert caught.value.retryable
    assert time.monotonic() - started < 1.7
    assert len(server.received) == 1


@pytest.mark.parametrize("body", [pytest.param("<html>Bad gateway</html>", id="not JSON"),
                                  pytest.param({}, id="empty object")])
async def test_a_body_that_is_not_an_answer_is_retryable(each, server: FakeAIServer, body: Any) -> None:
    flavour, provider = each
    server.reply(Reply(body=body))

    with pytest.raises(ProviderError) as caught:
        await provider.complete(classify_request())

    assert caught.value.retryable


@pytest.mark.parametrize("flavour", [ANTHROPIC, OPENAI], ids=lambda flavour: flavour.name)
async def test_connection_refused_is_retryable(flavour: Flavour) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    provider = _provider(flavour.name, f"http://127.0.0.1:{port}{flavour.api_root}")
    try:
        with pytest.raises(ProviderError, match="connect") as caught:
            await provider.complete(classify_request())
    finally:
        await provider.aclose()
    assert caught.value.retryable


@pytest.mark.parametrize("name", ["anthropic", "openai"])
async def test_without_a_key_the_provider_is_unavailable(name: str) -> None:
    provider = load_registry(env={f"SWITCHBOARD_AI_{name.upper()}_BASE_URL": "http://127.0.0.1:9"}).ai_provider(name)

    assert provider.available is False
    with pytest.raises(ProviderError) as caught:
        await provider.complete(classify_request())
    assert not caught.value.retryable


@pytest.mark.parametrize("name", ["anthropic", "openai"])
def test_registration_reads_the_settings(name: str) -> None:
    prefix = f"SWITCHBOARD_AI_{name.upper()}_"
    provider = load_registry(env={prefix + "API_KEY": KEY, prefix + "MODEL": "some-model",
                                  prefix + "TIMEOUT": "2.5"}).ai_provider(name)

    assert provider.available and provider.name == name
    assert (provider.model, provider.timeout_s) == ("some-model", 2.5)
    input_price, output_price = provider.cost_per_million_tokens
    assert 0 < input_price < output_price
    assert KEY not in repr(provider)


@pytest.mark.parametrize("name", ["anthropic", "openai"])
@pytest.mark.parametrize("timeout", ["soon", "0", "-3", "inf"])
def test_a_bad_timeout_fails_at_start_up(name: str, timeout: str) -> None:
    with pytest.raises(ValueError, match=f"SWITCHBOARD_AI_{name.upper()}_TIMEOUT"):
        load_registry(env={f"SWITCHBOARD_AI_{name.upper()}_TIMEOUT": timeout})
