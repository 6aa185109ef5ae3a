"""The ``openai`` provider: OpenAI, or any OpenAI-compatible server, through the official ``openai`` SDK.

Settings (``SWITCHBOARD_AI_OPENAI_*``): ``API_KEY`` (without one the provider
is not ``available``), ``BASE_URL`` (unset: https://api.openai.com/v1),
``MODEL`` (default :data:`DEFAULT_MODEL`; a request's own ``model`` wins),
``TIMEOUT`` (seconds for the whole call, default 20) and ``REASONING_EFFORT``
(sent as ``reasoning_effort`` when set; unset, it is ``none`` for the default
model, a reasoning model whose thinking would otherwise eat into
``max_output_tokens``, and not sent for other models, which may not know it).

Any server that speaks the Chat Completions API (vLLM, Ollama, llama.cpp's
server, LiteLLM, Azure OpenAI's v1 endpoint, Groq, Together...) is used by
setting ``SWITCHBOARD_AI_OPENAI_BASE_URL`` to its ``/v1`` URL, and ``MODEL``
to a model it serves; servers that want no key still need a placeholder one,
since the provider is unavailable without it. The token limit is sent as
``max_completion_tokens`` to OpenAI itself (its reasoning models refuse the
older name) and as ``max_tokens`` elsewhere, the name every compatible server
knows.

Structured answers (``output_schema`` set) use JSON mode,
``response_format={"type": "json_object"}``, the structured-output mode
OpenAI-compatible servers widely support, and the system message asks for
one JSON object valid against the schema, which it quotes. JSON mode promises
JSON, not the schema: the host validates the answer and asks again when it
does not fit.

The SDK never retries (``max_retries=0``): retries, fallback to the next
provider and rate limits are the host's. Errors become :class:`ProviderError`:
timeouts, connection errors, 408, 425, 429 (with ``retry-after``) and every
5xx are retryable; other 4xx (a refused key, a bad request) are not. An answer
cut off at ``max_output_tokens`` (``finish_reason == "length"``), an empty
one, or a body that is not a chat completion is retryable; a refusal or a
content filter's stop is not.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from collections.abc import Callable
from urllib.parse import urlsplit

from plugins.ai.spec import AIRequest, AIResponse, ProviderError, ProviderSettings
from plugins.markers import hookimpl

# The SDK is imported where it is used: importing it takes over a second of CPU (its pydantic types), which
# every process that loads the plugins for others (delivery for destinations, ingest for sources) would
# pay at start for a provider it never calls. A provider with a key imports it when made.
if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIProvider", "DEFAULT_MODEL", "DEFAULT_TIMEOUT_S", "schema_instruction"]

#: OpenAI's model for high-volume classification and extraction, and its
#: named successor to gpt-4o-mini (shut down on 2027-01-14); override with
#: SWITCHBOARD_AI_OPENAI_MODEL.
DEFAULT_MODEL = "gpt-6-luna"
DEFAULT_TIMEOUT_S = 20.0


def schema_instruction(schema: Any) -> str:
    """What the system message says when the answer must be JSON valid against ``schema``."""
    return ("Answer with one JSON object, and nothing else, valid against this JSON schema:\n"
            + json.dumps(schema, ensure_ascii=False, sort_keys=True))


class OpenAIProvider:
    """Answers requests with a Chat Completions model; see the module docstring."""

    name = "openai"
    #: gpt-6-luna's list price (USD per million input, output tokens): an
    #: estimate for usage reports, wrong for other models and servers.
    cost_per_million_tokens = (0.10, 0.50)

    def __init__(self, api_key: str, *, base_url: str = "", model: str = DEFAULT_MODEL,
                 timeout_s: float = DEFAULT_TIMEOUT_S, reasoning_effort: str = "") -> None:
        self._api_key = api_key
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.reasoning_effort = reasoning_effort
        self._official_api = not base_url or urlsplit(base_url).hostname == "api.openai.com"
        if api_key:  # imported now rather than in the first call's time
            import openai  # noqa: F401
        # Made on first use, so that an unavailable provider costs nothing.
        self._client: openai.AsyncOpenAI | None = None

    def __repr__(self) -> str:
        # Never the key.
        return f"OpenAIProvider(model={self.model!r}, base_url={self.base_url or None!r})"

    @property
    def available(self) -> bool:
        return bool(self._api_key)

    def with_api_key(self, api_key: str) -> OpenAIProvider:
        """The same provider answering with a tenant's own key (its own client, base URL and model kept)."""
        return OpenAIProvider(api_key, base_url=self.base_url, model=self.model, timeout_s=self.timeout_s,
                              reasoning_effort=self.reasoning_effort)

    async def complete(self, request: AIRequest) -> AIResponse:
        if not self.available:
            raise ProviderError("openai: no API key configured (SWITCHBOARD_AI_OPENAI_API_KEY)", retryable=False)
        import openai

        system = request.system
        if request.output_schema is not None:
            system = "\n\n".join(part for part in (system, schema_instruction(request.output_schema)) if part)
        messages = [{"role": "user", "content": request.prompt}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        params: dict[str, Any] = {"model": request.model or self.model, "messages": messages}
        params["max_completion_tokens" if self._official_api else "max_tokens"] = request.max_output_tokens
        if request.output_schema is not None:
            params["response_format"] = {"type": "json_object"}
        effort = self.reasoning_effort or ("none" if params["model"] == DEFAULT_MODEL else "")
        if effort:
            params["reasoning_effort"] = effort
        try:
            # The SDK's timeout bounds each read; this bounds the whole call.
            async with asyncio.timeout(self.timeout_s):
                completion = await self._get_client().chat.completions.create(**params)
        except (TimeoutError, openai.APITimeoutError):
            raise ProviderError(f"openai: no answer within {self.timeout_s:g} s") from None
        except openai.APIConnectionError:
            raise ProviderError("openai: could not connect to the API") from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except (openai.APIError, json.JSONDecodeError):
            raise ProviderError("openai: the API's answer is not a chat completion") from None
        return self._response(completion, request, params["model"])

    async def aclose(self) -> None:
        """Close the HTTP connections, if any were opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _get_client(self) -> openai.AsyncOpenAI:
        import openai

        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url or None,
                timeout=self.timeout_s,
                max_retries=0,  # the host retries and falls back
            )
        return self._client

    def _response(self, completion: Any, request: AIRequest, model: str) -> AIResponse:
        # Read defensively: the SDK does not check the body's shape.
        choices = getattr(completion, "choices", None)
        first = choices[0] if isinstance(choices, list) and choices else None
        message = getattr(first, "message", None)
        if message is None:
            raise ProviderError("openai: the API's answer is not a chat completion")
        finish_reason = getattr(first, "finish_reason", None)
        if getattr(message, "refusal", None) or finish_reason == "content_filter":
            raise ProviderError("openai: the model refused to answer", retryable=False)
        if finish_reason == "length":
            raise ProviderError(f"openai: the answer was cut off at {request.max_output_tokens} tokens")
        text = getattr(message, "content", None)
        if not isinstance(text, str) or not text.strip():
            raise ProviderError("openai: the answer is empty")
        usage = getattr(completion, "usage", None)
        return AIResponse(
            text=text,
            model=getattr(completion, "model", None) or model,
            input_tokens=getattr(usage, "prompt_tokens", None) or 0,
            output_tokens=getattr(usage, "completion_tokens", None) or 0,
        )

    def _status_error(self, exc: openai.APIStatusError) -> ProviderError:
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body)
        detail = error.get("message") if isinstance(error, dict) else None
        return ProviderError.from_status("openai", exc.status_code, detail if isinstance(detail, str) else "",
                                         self._api_key, exc.response.headers.get("retry-after"))


@hookimpl
def register_ai_providers(register: Callable[[OpenAIProvider], None], settings: ProviderSettings) -> None:
    """The openai provider, unavailable without SWITCHBOARD_AI_OPENAI_API_KEY."""
    register(OpenAIProvider(
        settings.get("openai", "api_key"),
        base_url=settings.get("openai", "base_url"),
        model=settings.get("openai", "model", DEFAULT_MODEL),
        timeout_s=settings.seconds("openai", "timeout", DEFAULT_TIMEOUT_S),
        reasoning_effort=settings.get("openai", "reasoning_effort"),
    ))
