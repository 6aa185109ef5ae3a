"""The ``offline`` provider: keyword rules, no network, no key.

It is the default so that classification-based routing works on a machine with
no AI provider configured; its answers are deterministic, which also makes
routing tests exact.
"""

from __future__ import annotations

import json

from plugins.ai.spec import ClassifyInput, Classification
from plugins.markers import hookimpl

_CATEGORIES = (
    ("billing", ("invoice", "payment", "charge", "refund", "subscription", "billing")),
    ("security", ("security", "breach", "password", "vulnerability", "unauthorized")),
    ("support", ("help", "support", "question", "issue", "ticket", "conversation", "message")),
    ("deployment", ("deploy", "release", "push", "build", "pull_request")),
)
_URGENT = ("urgent", "outage", "down", "breach", "critical", "asap", "emergency")
_NEGATIVE = ("angry", "terrible", "refund", "broken", "failed", "cancel", "worst", "bad", "not working")
_POSITIVE = ("thanks", "thank you", "great", "love", "awesome", "succeeded", "excellent")


class OfflineProvider:
    name = "offline"

    async def classify(self, request: ClassifyInput) -> Classification:
        text = f"{request.event_type} {json.dumps(request.payload, ensure_ascii=False)}".lower()
        category = next((name for name, words in _CATEGORIES if any(w in text for w in words)), "other")
        negative = sum(text.count(w) for w in _NEGATIVE)
        positive = sum(text.count(w) for w in _POSITIVE)
        sentiment = "negative" if negative > positive else "positive" if positive > negative else "neutral"
        priority = "urgent" if any(w in text for w in _URGENT) else "high" if sentiment == "negative" else "normal"
        summary = f"{request.event_type} ({category})"
        return Classification(category=category, priority=priority, sentiment=sentiment, summary=summary)


@hookimpl
def register_ai_providers(register):
    register(OfflineProvider())
