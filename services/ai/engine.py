"""Asking AI providers, resiliently: the domain of AIService (no gRPC here).

For every request the engine walks the tenant's provider chain (e.g.
anthropic → openai → local; ``local`` always ends it, so something always
answers). For each provider it:

1. skips it if it is not configured or its circuit is open;
2. answers from the response cache when the same prompt was answered within
   the TTL;
3. waits for the provider's rate budget in the request's lane (urgent first),
   at most ``max_wait_s``, else moves on;
4. asks, under a deadline; a provider error moves on;
5. checks the answer (schema, categories, length); an invalid answer is asked
   for once more, then the engine moves on.

Every call is recorded as usage (tokens and estimated cost) per tenant and
provider, and the answer says which providers were tried and why they were
passed over, so routing decisions can be explained.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol
from collections.abc import Callable, Mapping

from plugins.ai.spec import AIRequest, AIResponse, EventInput, ProviderError
from plugins.manager import PluginRegistry, UnknownPlugin
from services.ai.answers import (
    DEFAULT_CATEGORIES,
    InvalidAnswer,
    check_extraction_schema,
    classification_schema,
    parse_classification,
    parse_extraction,
    parse_reply,
)
from services.ai.gate import ProviderGate
from services.ai.prompts import LabelledExample, render, with_examples
from services.ai.store import AIStore, TenantAISettings
from switchboard import metrics
from switchboard.circuit import CircuitBreakers
from switchboard.errors import InvalidRequest, Unavailable

__all__ = ["Answer", "AIEngine", "LocalModels", "ResponseCache", "LOCAL"]

logger = logging.getLogger(__name__)

LOCAL = "local"
# Providers with tenants' own keys kept (each holds an HTTP client); the least recently used is closed.
MAX_KEYED_PROVIDERS = 1000
_OUTPUT_TOKENS = {"classify": 300, "extract": 800, "reply": 500}


@dataclass(frozen=True)
class Answer:
    value: Any
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False
    # "<provider>: <why it was passed over>" for each provider tried before this one.
    passed_over: tuple[str, ...] = ()


class ResponseCache:
    """Answers by the hash of what was asked, for ``ttl_s``; bounded, least recently used out first."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[float, AIResponse]] = OrderedDict()

    @staticmethod
    def key(tenant_id: str, provider: str, chain: tuple[str, ...], prompt_version: int, request: AIRequest) -> str:
        """What was asked, of whom, for whom: an answer is never shared across tenants (it would tell one
        what another asked), nor kept across a new prompt version or provider chain."""
        asked = json.dumps([tenant_id, provider, chain, prompt_version, request.model, request.task, request.system,
                            request.prompt, request.output_schema], sort_keys=True, default=str)
        return hashlib.sha256(asked.encode()).hexdigest()

    def get(self, key: str) -> AIResponse | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < self.clock():
            self._entries.pop(key, None)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: str, response: AIResponse) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[key] = (self.clock() + self.ttl_s, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class LocalModels(Protocol):
    async def current(self, tenant_id: str) -> Any | None:
        """The local provider's model trained for the tenant (None: the shipped one)."""


def _estimated_tokens(request: AIRequest) -> int:
    # About four characters a token, plus the room the answer may take.
    return (len(request.system) + len(request.prompt)) // 4 + request.max_output_tokens


class AIEngine:
    def __init__(self, registry: PluginRegistry, store: AIStore, default_chain: tuple[str, ...],
                 gate: ProviderGate, circuits: CircuitBreakers, cache: ResponseCache,
                 timeout_s: float = 20.0, max_wait_s: float = 2.0, local_models: LocalModels | None = None) -> None:
        """``local_models``: the tenants' own local models (None: the shipped one for everyone)."""
        self.registry = registry
        self.local_models = local_models
        self.store = store
        self.default_chain = default_chain
        self.gate = gate
        self.circuits = circuits
        metrics.watch_circuits("ai", circuits)
        self.cache = cache
        self.timeout_s = timeout_s
        self.max_wait_s = max_wait_s
        # Until when each provider asked not to be called (its Retry-After), on the circuits' clock.
        self._held_until: dict[str, float] = {}
        # Providers answering with tenants' own keys, by (provider, key digest): one client each, reused.
        self._keyed: OrderedDict[tuple[str, bytes], Any] = OrderedDict()

    # -- the three tasks -------------------------------------------------------------

    async def classify(self, event: EventInput, lane: str | None = None,
                       examples: tuple[LabelledExample, ...] = ()) -> Answer:
        """``examples``: the tenant's labelled events to show model providers (the local provider answers
        with the tenant's own model instead, when it has one)."""
        settings = await self.store.settings(event.tenant_id)
        categories = settings.categories or DEFAULT_CATEGORIES
        prompt = await self.store.prompt(event.tenant_id, "classify")
        schema = classification_schema(categories)
        fallback = settings.fallback_category if settings.fallback_category in categories else ""
        system, text = render(prompt, event, categories=categories, fallback=fallback)
        tuned = await self.local_models.current(event.tenant_id) if self.local_models is not None else None
        request = AIRequest("classify", with_examples(system, examples), text, schema, _OUTPUT_TOKENS["classify"],
                            event=event, categories=categories, fallback_category=fallback, tuned_model=tuned)
        if lane is None:
            # Lanes only order requests waiting for a rate budget: without one, none is needed.
            limited = any(name in self.gate.limits for name in self.chain(settings.providers))
            lane = await self._lane(request, categories) if limited else "normal"
        # Every provider answers on the built-in priority scale; the answer is given on the tenant's.
        scale = settings.priority_scale
        return await self._ask(event.tenant_id, request,
                               lambda answer: scale.applied(parse_classification(answer, categories)),
                               lane, settings, prompt.version)

    async def extract(self, event: EventInput, schema: Mapping[str, Any], lane: str = "normal") -> Answer:
        schema = check_extraction_schema(schema)
        settings = await self.store.settings(event.tenant_id)
        prompt = await self.store.prompt(event.tenant_id, "extract")
        system, text = render(prompt, event, schema=schema)
        request = AIRequest("extract", system, text, schema, _OUTPUT_TOKENS["extract"], event=event)
        return await self._ask(event.tenant_id, request, lambda answer: parse_extraction(answer, schema), lane,
                               settings, prompt.version)

    async def draft_reply(self, event: EventInput, conversation_key: str, lane: str = "normal",
                          author: str = "customer", hold: bool = False) -> Answer:
        """Draft the next reply in the conversation; the customer's message (event.text) joins its context.

        Only a customer's message is answered (anything else could be our own
        reply coming back). The draft joins the conversation as the agent's
        turn, unless it is held for review: then it joins when it is sent
        (:meth:`record_turn`).
        """
        if not conversation_key:
            raise InvalidRequest("a reply needs the conversation_key of the conversation")
        if author != "customer":
            raise InvalidRequest(f"only a customer's message is answered, not a {author}'s")
        if event.text:
            await self.store.add_turn(event.tenant_id, conversation_key, "customer", event.text)
        turns = await self.store.turns(event.tenant_id, conversation_key)
        settings = await self.store.settings(event.tenant_id)
        prompt = await self.store.prompt(event.tenant_id, "reply")
        system, text = render(prompt, event, turns=turns)
        request = AIRequest("reply", system, text, None, _OUTPUT_TOKENS["reply"], event=event, turns=turns)
        answer = await self._ask(event.tenant_id, request, parse_reply, lane, settings, prompt.version)
        if not hold:
            await self.store.add_turn(event.tenant_id, conversation_key, "agent", answer.value)
        return answer

    async def record_turn(self, tenant_id: str, conversation_key: str, role: str, text: str) -> None:
        """A turn said outside :meth:`draft_reply`: a held draft, approved and sent."""
        if role not in ("customer", "agent"):
            raise InvalidRequest("role is customer or agent")
        if not conversation_key or not text:
            raise InvalidRequest("a turn needs a conversation_key and text")
        await self.store.add_turn(tenant_id, conversation_key, role, text)

    # -- the chain -------------------------------------------------------------------

    def chain(self, tenant_chain: tuple[str, ...]) -> list[str]:
        """The providers to try, in order, ending with local."""
        names = [n for n in dict.fromkeys((*(tenant_chain or self.default_chain), LOCAL))]
        return [n for n in names if n in self.registry.ai_providers]

    async def _lane(self, request: AIRequest, categories: tuple[str, ...]) -> str:
        """Urgent when the local provider, which costs nothing, thinks the event is high or urgent."""
        try:
            local = await self.registry.ai_provider(LOCAL).complete(request)
            priority = parse_classification(local.text, categories).priority
        except (UnknownPlugin, ProviderError, InvalidAnswer):
            return "normal"
        return "urgent" if priority in ("urgent", "high") else "normal"

    def _provider(self, tenant_id: str, name: str, own_key: str | None) -> tuple[Any, str]:
        """The provider to ask, and the name its circuit and Retry-After go by: with the tenant's own key,
        the provider answering with it (its failures, a bad key above all, are the tenant's alone)."""
        provider = self.registry.ai_provider(name)
        if not own_key or not hasattr(provider, "with_api_key"):
            return provider, name
        cache_key = (name, hashlib.sha256(own_key.encode()).digest())
        keyed = self._keyed.get(cache_key)
        if keyed is None:
            keyed = self._keyed[cache_key] = provider.with_api_key(own_key)
            while len(self._keyed) > MAX_KEYED_PROVIDERS:
                _, evicted = self._keyed.popitem(last=False)
                if hasattr(evicted, "aclose"):
                    asyncio.get_running_loop().create_task(evicted.aclose())
        self._keyed.move_to_end(cache_key)
        return keyed, f"{name}@{tenant_id}"

    async def _ask(self, tenant_id: str, request: AIRequest, parse: Callable[[str], Any], lane: str,
                   settings: TenantAISettings, prompt_version: int) -> Answer:
        passed_over: list[str] = []
        chain = self.chain(settings.providers)
        for name in chain:
            provider, circuit = self._provider(tenant_id, name, settings.provider_keys.get(name))
            key = ResponseCache.key(tenant_id, name, tuple(chain), prompt_version, request)
            reason = await self._answer_or_reason(tenant_id, provider, request, parse, lane, key, circuit)
            if isinstance(reason, Answer):
                return Answer(**{**reason.__dict__, "passed_over": tuple(passed_over)})
            passed_over.append(f"{name}: {reason}")
            logger.warning("AI provider passed over", extra={"provider": name, "task": request.task,
                                                             "tenant_id": tenant_id, "reason": reason})
        raise Unavailable(f"no AI provider could {request.task} this event: {'; '.join(passed_over)}"[:500])

    async def _answer_or_reason(self, tenant_id: str, provider: Any, request: AIRequest,
                                parse: Callable[[str], Any], lane: str, key: str, circuit: str) -> Answer | str:
        try:
            return await self._consult(tenant_id, provider, request, parse, lane, key, circuit)
        finally:
            self.circuits.release(circuit)  # a probe that asked nothing (cached, over budget)

    async def _consult(self, tenant_id: str, provider: Any, request: AIRequest, parse: Callable[[str], Any],
                       lane: str, key: str, circuit: str) -> Answer | str:
        """``circuit``: the provider's name, or with a tenant's own key, that tenant's share of it."""
        name = provider.name
        if not provider.available:
            return "not configured"
        held_s = self._held_until.get(circuit, 0.0) - self.circuits.clock()
        if held_s > 0:
            return f"asked to wait {held_s:.0f} s more (Retry-After)"
        if name != LOCAL and self.circuits.wait_s(circuit) > 0:
            return "circuit open after repeated failures"
        cached = self.cache.get(key) if name != LOCAL else None
        if cached is not None:
            try:
                value = parse(cached.text)
            except InvalidAnswer:
                pass
            else:
                await self._usage(tenant_id, provider, None, cached=True)
                metrics.record_ai_call(name, request.task, "cached")
                return Answer(value, name, cached.model, cached=True)
        # The deployment's rate budget is for its own key; a tenant's key has the provider's limits of its own.
        if name != LOCAL and circuit == name and \
                not await self.gate.admit(name, _estimated_tokens(request), lane, self.max_wait_s):
            return "over its rate limit"
        problem = "no answer"
        for _ in range(2):  # an invalid answer is asked for once more
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await provider.complete(request)
            except (ProviderError, TimeoutError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                metrics.record_ai_call(name, request.task, "timeout" if timed_out else "error",
                                       time.perf_counter() - started)
                problem = f"timed out after {self.timeout_s:g}s" if timed_out else str(exc).removeprefix(f"{name}: ")
                self.circuits.record(circuit, False)
                if isinstance(exc, ProviderError) and exc.retry_after_s:
                    # The provider said when to come back: nobody asks it before then.
                    self._held_until[circuit] = self.circuits.clock() + exc.retry_after_s
                await self._usage(tenant_id, provider, None, failed=True)
                return problem[:200]
            elapsed = time.perf_counter() - started
            await self._usage(tenant_id, provider, response)
            try:
                value = parse(response.text)
            except InvalidAnswer as exc:
                metrics.record_ai_call(name, request.task, "invalid", elapsed, response.input_tokens,
                                       response.output_tokens)
                problem = f"invalid answer ({exc})"
                continue
            metrics.record_ai_call(name, request.task, "ok", elapsed, response.input_tokens, response.output_tokens)
            self.circuits.record(circuit, True)
            if name != LOCAL:
                self.cache.put(key, response)
            return Answer(value, name, response.model, response.input_tokens, response.output_tokens)
        self.circuits.record(circuit, False)
        return problem[:200]

    async def _usage(self, tenant_id: str, provider: Any, response: AIResponse | None, cached: bool = False,
                     failed: bool = False) -> None:
        """Record a call; a lost record never fails the request."""
        tokens_in = response.input_tokens if response else 0
        tokens_out = response.output_tokens if response else 0
        price_in, price_out = getattr(provider, "cost_per_million_tokens", (0.0, 0.0))
        try:
            await self.store.record_usage(tenant_id, provider.name, tokens_in, tokens_out,
                                          (tokens_in * price_in + tokens_out * price_out) / 1e6, cached, failed)
        except Exception as exc:
            logger.warning("AI usage not recorded", extra={"error": str(exc)})

