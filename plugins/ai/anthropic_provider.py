"""The ``anthropic`` provider: Claude through the official ``anthropic`` SDK.

Settings (``SWITCHBOARD_AI_ANTHROPIC_*``): ``API_KEY`` (without one the
provider is not ``available``), ``BASE_URL`` (the API's root; unset: the
SDK's default, https://api.anthropic.com), ``MODEL`` (default
:data:`DEFAULT_MODEL`; a request's own ``model`` wins) and ``TIMEOUT``
(seconds for the whole call, default 20).

Structured answers (``output_schema`` set) are forced through a tool: the
request offers one tool, ``answer``, whose ``input_schema`` is the output
schema, and ``tool_choice`` makes the model call it; the tool call's
``input`` is the answer, returned as JSON text. Replies are the message's
text blocks, joined. Models that refuse a forced tool choice (Claude Sonnet
5.5 and Opus 5.5, which think by default) answer structured requests with 400,
which is not retryable: the host moves on to the next provider.

The SDK never retries (``max_retries=0``): retries, fallback to the next
provider and rate limits are the host's. Errors become :class:`ProviderError`:
timeouts, connection errors, 408, 425, 429 (with ``retry-after``) and every
5xx (529 "overloaded" too) are retryable; other 4xx (a refused key, a bad
request) are not. An answer the host cannot use (no ``answer`` tool call, a
reply cut off at ``max_output_tokens``, a body that is not a message) is
retryable; a refusal is not.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from plugins.ai.spec import AIRequest, AIResponse, ProviderError, ProviderSettings
from plugins.markers import hookimpl

# The SDK is imported where it is used: importing it takes over a second of CPU (its pydantic types), which
# every process that loads the plugins for others (delivery for destinations, ingest for sources) would
# pay at start for a provider it never calls. A provider with a key imports it when made.
if TYPE_CHECKING:
    import anthropic

__all__ = ["AnthropicProvider", "DEFAULT_MODEL", "DEFAULT_TIMEOUT_S"]

#: Anthropic's fastest current model, which suits high-volume classification,
#: extraction and short replies, and accepts the forced tool choice structured
#: answers rely on (the 5.5 generation refuses it: see the module docstring);
#: override with SWITCHBOARD_AI_ANTHROPIC_MODEL.
DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_TIMEOUT_S = 20.0
# The tool a structured answer is forced through.
_ANSWER_TOOL = "answer"


class AnthropicProvider:
    """Answers requests with a Claude model; see the module docstring."""

    name = "anthropic"
    #: Claude Haiku 4.5's list price (USD per million input, output tokens): an
    #: estimate for usage reports, wrong for other models.
    cost_per_million_tokens = (1.0, 5.0)

    def __init__(self, api_key: str, *, base_url: str = "", model: str = DEFAULT_MODEL,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._api_key = api_key
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        if api_key:  # imported now rather than in the first call's time
            import anthropic  # noqa: F401
        # Made on first use, so that an unavailable provider costs nothing.
        self._client: anthropic.AsyncAnthropic | None = None

    def __repr__(self) -> str:
        # Never the key.
        return f"AnthropicProvider(model={self.model!r}, base_url={self.base_url or None!r})"

    @property
    def available(self) -> bool:
        return bool(self._api_key)

    def with_api_key(self, api_key: str) -> AnthropicProvider:
        """The same provider answering with a tenant's own key (its own client, base URL and model kept)."""
        return AnthropicProvider(api_key, base_url=self.base_url, model=self.model, timeout_s=self.timeout_s)

    async def complete(self, request: AIRequest) -> AIResponse:
        if not self.available:
            raise ProviderError("anthropic: no API key configured (SWITCHBOARD_AI_ANTHROPIC_API_KEY)",
                                retryable=False)
        import anthropic

        params: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_output_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        if request.system:
            params["system"] = request.system
        if request.output_schema is not None:
            params["tools"] = [{
                "name": _ANSWER_TOOL,
                "description": "Give your answer: call this tool once, with the answer as its input.",
                "input_schema": dict(request.output_schema),
            }]
            params["tool_choice"] = {"type": "tool", "name": _ANSWER_TOOL}
        try:
            # The SDK's timeout bounds each read; this bounds the whole call.
            async with asyncio.timeout(self.timeout_s):
                message = await self._get_client().messages.create(**params)
        except (TimeoutError, anthropic.APITimeoutError):
            raise ProviderError(f"anthropic: no answer within {self.timeout_s:g} s") from None
        except anthropic.APIConnectionError:
            raise ProviderError("anthropic: could not connect to the API") from None
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from None
        except (anthropic.APIError, json.JSONDecodeError):
            raise ProviderError("anthropic: the API's answer is not a message") from None
        return self._response(message, request, params["model"])

    async def aclose(self) -> None:
        """Close the HTTP connections, if any were opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _get_client(self) -> anthropic.AsyncAnthropic:
        import anthropic

        if self._client is None:
            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.base_url or None,
                timeout=self.timeout_s,
                max_retries=0,  # the host retries and falls back
            )
        return self._client

    def _response(self, message: Any, request: AIRequest, model: str) -> AIResponse:
        # Read defensively: the SDK does not check the body's shape.
        content = getattr(message, "content", None)
        stop_reason = getattr(message, "stop_reason", None)
        if not isinstance(content, list):
            raise ProviderError("anthropic: the API's answer is not a message")
        if stop_reason == "refusal":
            raise ProviderError("anthropic: the model refused to answer", retryable=False)
        if stop_reason == "max_tokens":
            raise ProviderError(f"anthropic: the answer was cut off at {request.max_output_tokens} tokens")
        if request.output_schema is not None:
            answer = next((block for block in content
                           if getattr(block, "type", None) == "tool_use"
                           and getattr(block, "name", None) == _ANSWER_TOOL), None)
            if answer is None or not isinstance(getattr(answer, "input", None), dict):
                raise ProviderError("anthropic: no structured answer (no answer tool call in the message)")
            text = json.dumps(answer.input, ensure_ascii=False)
        else:
            text = "".join(block.text for block in content
                           if getattr(block, "type", None) == "text" and isinstance(getattr(block, "text", None), str))
            if not text.strip():
                raise ProviderError("anthropic: the answer has no text")
        usage = getattr(message, "usage", None)
        return AIResponse(
            text=text,
            model=getattr(message, "model", None) or model,
            input_tokens=getattr(usage, "input_tokens", None) or 0,
            output_tokens=getattr(usage, "output_tokens", None) or 0,
        )

    def _status_error(self, exc: anthropic.APIStatusError) -> ProviderError:
        return ProviderError.from_status("anthropic", exc.status_code, exc.api_message or "", self._api_key,
                                         exc.response.headers.get("retry-after"))


@hookimpl
def register_ai_providers(register: Callable[[AnthropicProvider], None], settings: ProviderSettings) -> None:
    """The anthropic provider, unavailable without SWITCHBOARD_AI_ANTHROPIC_API_KEY."""
    register(AnthropicProvider(
        settings.get("anthropic", "api_key"),
        base_url=settings.get("anthropic", "base_url"),
        model=settings.get("anthropic", "model", DEFAULT_MODEL),
        timeout_s=settings.seconds("anthropic", "timeout", DEFAULT_TIMEOUT_S),
    ))
