"""Classification through the configured provider, falling back to the offline one.

The domain of AIService: no gRPC here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from plugins.ai.spec import Classification, ClassifyInput
from plugins.manager import PluginRegistry

__all__ = ["Classifier", "ProviderAnswer"]

logger = logging.getLogger(__name__)

FALLBACK = "offline"


@dataclass(frozen=True)
class ProviderAnswer:
    classification: Classification
    provider: str


class Classifier:
    def __init__(self, registry: PluginRegistry, provider: str = FALLBACK) -> None:
        self.registry = registry
        self.primary = registry.ai_provider(provider)
        self.fallback = registry.ai_provider(FALLBACK)

    async def classify(self, request: ClassifyInput) -> ProviderAnswer:
        try:
            return ProviderAnswer(await self.primary.classify(request), self.primary.name)
        except Exception as exc:
            if self.primary is self.fallback:
                raise
            logger.warning("provider failed; using the offline fallback",
                           extra={"provider": self.primary.name, "error": str(exc)})
            return ProviderAnswer(await self.fallback.classify(request), self.fallback.name)
