"""AIService over gRPC: a thin translation to and from :mod:`services.ai.engine`."""

from __future__ import annotations

import json
from datetime import date, timedelta, UTC

from plugins.ai.local import MODEL
from plugins.ai.spec import TASKS, EventInput
from services.ai.answers import DEFAULT_CATEGORIES, check_categories
from services.ai.engine import AIEngine, Answer
from switchboard.event_text import event_text
from services.ai.gate import LANES
from services.ai.priority_scale import checked_scale
from services.ai.prompts import LabelledExample, PromptTemplate, check_template
from services.ai.store import AIStore
from services.ai.tenant_models import ModelState, TenantModels
from switchboard.errors import InvalidRequest, Unavailable
from switchboard.protojson import changed_fields, plain, struct
from switchboard.rpc import servicer, timestamp
from switchboard.v1 import ai_pb2 as pb, ai_pb2_grpc as rpc


def _event(message: pb.AIEvent) -> EventInput:
    if not message.tenant_id:
        raise InvalidRequest("event.tenant_id is required")
    try:
        payload = json.loads(message.payload_json or "null")
    except ValueError:
        raise InvalidRequest("event.payload_json is not valid JSON") from None
    return EventInput(tenant_id=message.tenant_id, source_type=message.source_type or "api",
                      event_type=message.event_type, payload=payload,
                      text=message.text or event_text(payload))


def _lane(lane: str, default: str | None = "normal") -> str | None:
    if not lane:
        return default
    if lane not in LANES:
        raise InvalidRequest(f"lane is one of {', '.join(LANES)}")
    return lane


def _meta(answer: Answer) -> pb.AIMeta:
    return pb.AIMeta(provider=answer.provider, model=answer.model, input_tokens=answer.input_tokens,
                     output_tokens=answer.output_tokens, cached=answer.cached, passed_over=answer.passed_over)


def _prompt(prompt: PromptTemplate) -> pb.Prompt:
    return pb.Prompt(task=prompt.task, version=prompt.version, system=prompt.system, template=prompt.template,
                     builtin_revision=prompt.builtin_revision)


def _examples(request: pb.ClassifyRequest) -> tuple[LabelledExample, ...]:
    return tuple(LabelledExample(e.source_type or "api", e.event_type, e.text, e.category, e.priority, e.sentiment)
                 for e in request.examples if e.category)


def _local_model(state: ModelState) -> pb.LocalModel:
    return pb.LocalModel(tenant_id=state.tenant_id, model=state.model, status=state.status,
                         corrections=state.corrections, trained_at=timestamp(state.trained_at),
                         training_started_at=timestamp(state.training_since), error=state.error or "",
                         categories=state.categories)


def _fallback(chosen: str, categories: tuple[str, ...]) -> str:
    """The category events that fit none go to, as the local provider decides it."""
    if chosen in categories:
        return chosen
    return "other" if "other" in categories else categories[-1]


@servicer
class AIServicer(rpc.AIServiceServicer):
    def __init__(self, engine: AIEngine, store: AIStore, models: TenantModels | None = None) -> None:
        """``models``: the tenants' own local models (None: every tenant has the shipped one)."""
        self.engine = engine
        self.store = store
        self.models = models

    async def Classify(self, request, context):
        answer = await self.engine.classify(_event(request.event), _lane(request.lane, None), _examples(request))
        c = answer.value
        return pb.Classification(category=c.category, priority=c.priority, sentiment=c.sentiment, summary=c.summary,
                                 confidence=c.confidence, meta=_meta(answer), reasons=c.reasons,
                                 priority_builtin=c.priority_builtin)

    async def Extract(self, request, context):
        if not request.HasField("schema"):
            raise InvalidRequest("schema is required", field="schema")
        answer = await self.engine.extract(_event(request.event), plain(request.schema), _lane(request.lane))
        return pb.Extraction(data=struct(answer.value), meta=_meta(answer))

    async def DraftReply(self, request, context):
        answer = await self.engine.draft_reply(_event(request.event), request.conversation_key, _lane(request.lane),
                                               request.author or "customer", request.hold)
        return pb.Reply(text=answer.value, meta=_meta(answer))

    async def RecordTurn(self, request, context):
        await self.engine.record_turn(request.tenant_id,
                                      request.conversation_key, request.role, request.text)
        return pb.TurnRecorded()

    async def GetSettings(self, request, context):
        return await self._settings(request.tenant_id)

    async def UpdateSettings(self, request, context):
        providers = categories = fallback = None
        # provider_keys may be named too: its entries are merged into the tenant's keys whatever the mask says.
        changed = changed_fields(request, ("providers", "categories", "provider_keys", "fallback_category",
                                           "priority_levels", "priority_mapping"))
        if "providers" in changed:
            providers = tuple(dict.fromkeys(request.providers))
            unknown = [p for p in providers if p not in self.engine.registry.ai_providers]
            if unknown:
                raise InvalidRequest(f"unknown AI providers {', '.join(unknown)}; known: "
                                     f"{', '.join(sorted(self.engine.registry.ai_providers))}")
        if "categories" in changed:
            categories = check_categories(list(request.categories)) if request.categories else ()
        if "fallback_category" in changed:
            fallback = request.fallback_category.strip()
            current = categories
            if current is None:
                current = (await self.store.settings(request.tenant_id)).categories
            if fallback and fallback not in (current or DEFAULT_CATEGORIES):
                raise InvalidRequest(f"fallback_category {fallback!r} is not one of the tenant's categories",
                                     field="fallback_category")
        levels = mapping = None
        if "priority_levels" in changed or "priority_mapping" in changed:
            levels, mapping = checked_scale(
                list(request.priority_levels) if "priority_levels" in changed else None,
                dict(request.priority_mapping) if "priority_mapping" in changed else None,
                (await self.store.settings(request.tenant_id)).priority_levels)
        keys = {name: self._checked_key(name, key) for name, key in request.provider_keys.items()}
        await self.store.save_settings(request.tenant_id, providers, categories, keys, fallback, levels, mapping)
        return await self._settings(request.tenant_id)

    def _checked_key(self, provider: str, key: str) -> str | None:
        """A tenant's own key for ``provider`` (None: remove it); InvalidRequest for a provider that takes none."""
        field = f"provider_keys.{provider}"
        found = self.engine.registry.ai_providers.get(provider)
        if found is None or not hasattr(found, "with_api_key"):
            takes = sorted(n for n, p in self.engine.registry.ai_providers.items() if hasattr(p, "with_api_key"))
            raise InvalidRequest(f"{provider!r} takes no key of a tenant's own; these do: {', '.join(takes)}",
                                 field=field)
        if not key:
            return None
        if not 8 <= len(key) <= 500 or not key.isprintable() or key != key.strip():
            raise InvalidRequest("a provider key is 8 to 500 printable characters", field=field)
        return key

    async def SavePrompt(self, request, context):
        if request.task not in TASKS:
            raise InvalidRequest(f"task is one of {', '.join(TASKS)}")
        check_template(request.system, request.template)
        prompt = await self.store.save_prompt(request.tenant_id, request.task, request.system, request.template)
        return _prompt(prompt)

    async def RetrainModel(self, request, context):
        if self.models is None:
            raise Unavailable("this AI service keeps no tenant models")
        return _local_model(await self.models.retrain(request.tenant_id))

    async def GetLocalModel(self, request, context):
        if self.models is None:
            return _local_model(ModelState(request.tenant_id, MODEL, "builtin"))
        return _local_model(await self.models.state(request.tenant_id))

    async def GetUsage(self, request, context):
        since = (request.since.ToDatetime(tzinfo=UTC).date() if request.since.seconds
                 else date.today() - timedelta(days=30))
        rows = await self.store.usage(request.tenant_id, since)
        return pb.Usage(rows=[pb.UsageRow(
            provider=r.provider, day=r.day.isoformat(), requests=r.requests, input_tokens=r.input_tokens,
            output_tokens=r.output_tokens, cost_usd=round(r.cost_usd, 6), cached=r.cached, failures=r.failures)
            for r in rows])

    async def _settings(self, tenant_id: str) -> pb.AISettings:
        settings = await self.store.settings(tenant_id)
        prompts = [await self.store.prompt(tenant_id, task) for task in TASKS]
        return pb.AISettings(
            tenant_id=tenant_id, providers=self.engine.chain(settings.providers),
            categories=settings.categories or DEFAULT_CATEGORIES,
            fallback_category=_fallback(settings.fallback_category, settings.categories or DEFAULT_CATEGORIES),
            provider_keys={name: "…" + key[-4:] for name, key in settings.provider_keys.items()},
            priority_levels=settings.priority_scale.levels, priority_mapping=settings.priority_scale.mapping,
            prompts=[_prompt(p) for p in prompts])
