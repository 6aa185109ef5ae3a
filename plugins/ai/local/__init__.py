"""The ``local`` provider: a small linear model, rules and a lexicon; no key, no network.

It is the default provider and always ends a tenant's chain, so that
classification-based routing, extraction and reply drafts work on a machine
with no AI provider configured. It never reads ``system`` or ``prompt``: it
reads the structured fields of the request (``event``, ``categories``,
``output_schema``, ``turns``; ``tuned_model``, a tenant's own weights, when
the host trained one). Answers are deterministic: the same request always
gets the same answer, which also makes routing tests exact.

This module is the provider itself, registered with the plugin manager; each
rule has its module, whose docstring is that rule's reference:

- ``reading``: what is read of an event, and the caps on it;
- ``lexicon``: the words looked for in its text, with their weights and flags;
- ``model``: the category and priority models' features and their pure-Python inference (weights in
  ``model.json`` and ``priority.json``);
- ``training``: how they are trained from tests/fixtures/ai/corpus_train.jsonl, and measured;
- ``classification``: ``classify``, its category, confidence and reasons;
- ``sentiment``, ``priority``, ``summary``: the rest of what ``classify`` answers;
- ``extraction``: ``extract``, an output schema filled from the event;
- ``reply``: ``draft_reply``, a reply to the last customer turn.

Limits: it knows English words it was trained on, not meaning; sarcasm,
irony and languages other than English read as neutral or are misread;
mixed-topic messages get the topic with the most evidence; it has no
knowledge of the tenant beyond the category names. See docs/ai.md for
measured accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from plugins.ai.local.classification import DEFAULT_CATEGORIES, classify
from plugins.ai.local.extraction import extract
from plugins.ai.local.model import Weights
from plugins.ai.local.reply import draft_reply
from plugins.ai.spec import AIRequest, AIResponse, EventInput, ProviderError, ProviderSettings
from plugins.markers import hookimpl

__all__ = ["LocalProvider", "classify", "extract", "draft_reply", "DEFAULT_CATEGORIES", "MODEL"]

# The model named in answers: 2 since priority is a trained model too (accuracy reports keep them apart).
MODEL = "local-linear-2"


class LocalProvider:
    """Answers every task from a small linear model, rules and a lexicon; see the package docstring."""

    name = "local"
    cost_per_million_tokens = (0.0, 0.0)

    @property
    def available(self) -> bool:
        return True

    async def complete(self, request: AIRequest) -> AIResponse:
        tuned = _tuned(request)
        return AIResponse(text=self.answer(request), model=(tuned.name or MODEL) if tuned else MODEL)

    def answer(self, request: AIRequest) -> str:
        """The answer's text; synchronous, and cheap enough to run on the event loop."""
        handler = _TASKS.get(request.task)
        if handler is None:
            raise ProviderError(f"the local provider cannot do {request.task!r}", retryable=False)
        return handler(request)


def _event(request: AIRequest, doing: str) -> EventInput:
    if request.event is None:
        raise ProviderError(f"the local provider {doing} request.event, and there is none", retryable=False)
    return request.event


def _tuned(request: AIRequest) -> Weights | None:
    """The tenant's own model, when the host trained one (``training.train_with_corrections``)."""
    return request.tuned_model if isinstance(request.tuned_model, Weights) else None


# An empty category list is the default list: classify (and so draft_reply) says so.
def _classify_task(request: AIRequest) -> str:
    return json.dumps(classify(_event(request, "classifies"), tuple(request.categories), request.fallback_category,
                               _tuned(request)), ensure_ascii=False)


def _extract_task(request: AIRequest) -> str:
    return json.dumps(extract(_event(request, "extracts from"), request.output_schema or {}), ensure_ascii=False)


def _reply_task(request: AIRequest) -> str:
    return draft_reply(tuple(request.turns), request.event, tuple(request.categories))


_TASKS: dict[str, Callable[[AIRequest], str]] = {"classify": _classify_task, "extract": _extract_task,
                                                 "reply": _reply_task}


@hookimpl
def register_ai_providers(register: Callable[[LocalProvider], None], settings: ProviderSettings) -> None:
    """The local provider needs no settings."""
    register(LocalProvider())
