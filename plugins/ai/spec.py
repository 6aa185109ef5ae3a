"""The hook specification and types for AI provider plugins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from plugins.markers import hookspec

__all__ = ["ClassifyInput", "Classification", "AIProvider", "register_ai_providers"]


@dataclass(frozen=True)
class ClassifyInput:
    tenant_id: str
    event_type: str
    payload: Any


@dataclass(frozen=True)
class Classification:
    category: str
    priority: str  # "low" | "normal" | "high" | "urgent"
    sentiment: str  # "negative" | "neutral" | "positive"
    summary: str


class AIProvider(Protocol):
    #: e.g. "offline", "anthropic", "openai"
    name: str

    async def classify(self, request: ClassifyInput) -> Classification:
        """Classify one event. May raise; the host falls back to another provider."""


@hookspec
def register_ai_providers(register: Callable[[AIProvider], None]) -> None:
    """Register AI providers by calling ``register(provider)`` once for each.

    Called once at start-up on every plugin; all registrations are kept. Two
    providers with the same ``name`` are an error at start-up.
    """
