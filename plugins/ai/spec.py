"""The hook specification and types for AI provider plugins.

A provider answers one :class:`AIRequest` with one :class:`AIResponse`. The
host (AIService) builds the request from a versioned prompt template, then
checks the answer: for ``classify`` and ``extract`` the text must be JSON
valid against ``request.output_schema``; for ``reply`` it is the reply's
text. An invalid answer is asked for once more, then the next provider in
the tenant's chain is used. Rate limits, the response cache, the circuit
breaker and usage accounting are the host's too: a provider only talks to
its model.

Model providers (``anthropic``, ``openai``) send ``system`` and ``prompt``.
The ``local`` provider, which has no model to prompt, reads the structured
fields (``event``, ``categories``, ``turns``) instead.

A provider raises :class:`ProviderError` when it got no usable answer
(timeout, 5xx, 429, a refused key); ``retryable`` and ``retry_after_s`` tell
the host whether and when to ask this provider again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from collections.abc import Callable, Mapping

from plugins.destinations.http_result import DEFAULT_RETRYABLE_STATUSES, parse_retry_after
from plugins.markers import hookspec

__all__ = [
    "TASKS",
    "PRIORITIES",
    "SENTIMENTS",
    "EventInput",
    "Turn",
    "AIRequest",
    "AIResponse",
    "ProviderError",
    "ProviderSettings",
    "AIProvider",
    "register_ai_providers",
]

#: What a provider may be asked to do.
TASKS = ("classify", "extract", "reply")

#: The labels a classification answers with: the built-in priority scale, most urgent first (the host maps
#: it onto a tenant's own levels), and the sentiments.
PRIORITIES = ("urgent", "high", "normal", "low")
SENTIMENTS = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class EventInput:
    """What the model is shown of an event."""

    tenant_id: str
    source_type: str  # "stripe", "slack", ... ("api" for events published through the API)
    event_type: str
    payload: Any
    # The event's human text (a message body, an issue title...), found by the host.
    text: str = ""


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str  # "customer" | "agent"
    text: str


@dataclass(frozen=True)
class AIRequest:
    task: str  # one of TASKS
    system: str
    prompt: str
    # The JSON schema the answer must be valid against; None for "reply" (plain text).
    output_schema: Mapping[str, Any] | None
    max_output_tokens: int = 512
    event: EventInput | None = None
    # For "classify": the tenant's categories, and the one for events that fit none ("": the provider's default).
    categories: tuple[str, ...] = ()
    fallback_category: str = ""
    # For "reply": the conversation so far, oldest first.
    turns: tuple[Turn, ...] = ()
    # The model to use; None means the provider's configured default.
    model: str | None = None
    # A model the host trained for the tenant from its corrections, for the provider it was trained for
    # (local: a ``plugins.ai.local.model.Weights``); None, or another provider's: the provider's own.
    tuned_model: Any = None


@dataclass(frozen=True)
class AIResponse:
    # JSON text for "classify" and "extract"; the reply for "reply".
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0


class ProviderError(Exception):
    """No usable answer from the provider."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s

    @classmethod
    def from_status(cls, provider: str, status: int, detail: str, secret: str,
                    retry_after: str | None) -> ProviderError:
        """An API's error answer: 408, 425, 429 and 5xx are retryable (after ``Retry-After``); the secret
        (the API key) never appears in the message."""
        if secret:
            detail = detail.replace(secret, "***")
        message = f"{provider} answered {status}" + (f": {detail[:200]}" if detail else "")
        retryable = status >= 500 or status in DEFAULT_RETRYABLE_STATUSES
        return cls(message, retryable=retryable, retry_after_s=parse_retry_after(retry_after) if retryable else None)


class AIProvider(Protocol):
    #: e.g. "local", "anthropic", "openai"
    name: str
    #: Estimated price per million input and output tokens, in US dollars, for
    #: usage reports (0 for local).
    cost_per_million_tokens: tuple[float, float]

    @property
    def available(self) -> bool:
        """False when the provider cannot be used (no API key configured): the host skips it."""

    async def complete(self, request: AIRequest) -> AIResponse:
        """Answer one request; raise ProviderError when no usable answer came."""

    # Optional: ``def with_api_key(self, api_key: str) -> AIProvider``, the same provider answering
    # with a tenant's own key ("bring your own key"). Only providers that define it take tenants' keys.


@dataclass(frozen=True)
class ProviderSettings:
    """Settings for providers, from ``SWITCHBOARD_AI_<PROVIDER>_<NAME>`` variables."""

    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, provider: str, name: str, default: str = "") -> str:
        return self.values.get(f"SWITCHBOARD_AI_{provider.upper()}_{name.upper()}", default) or default

    def seconds(self, provider: str, name: str, default: float) -> float:
        """A positive number of seconds; ValueError (naming the variable) otherwise."""
        value = self.get(provider, name, str(default))
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds < float("inf"):
            raise ValueError(f"SWITCHBOARD_AI_{provider.upper()}_{name.upper()} is a positive number of seconds, "
                             f"not {value!r}")
        return seconds


@hookspec
def register_ai_providers(register: Callable[[AIProvider], None], settings: ProviderSettings) -> None:
    """Register AI providers by calling ``register(provider)`` once for each.

    ``settings`` carries the deployment's ``SWITCHBOARD_AI_<PROVIDER>_*``
    values (API key, base URL, model, timeout). Called once at start-up on
    every plugin; all registrations are kept. Two providers with the same
    ``name`` are an error at start-up.
    """
