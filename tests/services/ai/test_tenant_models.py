"""Learning from corrections in AIService: the examples a model provider is shown, and a tenant's own local model,
trained on the corpus and its corrections (a category of its own included), claimed once at a time, kept in
PostgreSQL and answering that tenant's classifications only."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import pytest

from plugins.ai.local.classification import classify
from plugins.ai.local.model import LABELS, Weights
from plugins.ai.local.training import CORRECTION_WEIGHT, TRAIN, load, train
from plugins.ai.spec import AIRequest, AIResponse, EventInput
from plugins.manager import load_registry
from services.ai.engine import AIEngine, ResponseCache
from services.ai.gate import ProviderGate
from services.ai.prompts import LabelledExample, with_examples
from services.ai.store import AIStore
from services.ai.tenant_models import Correction, TenantModels, train_in_subprocess
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations
from switchboard.errors import Conflict, InvalidRequest
from tests.sealing import BOX

MIGRATIONS = Path(__file__).parents[3] / "services/ai/migrations"
PARCELS = ["my parcel is stuck at the depot, tracking hasn't moved since monday",
           "the courier left my parcel at the wrong address yesterday",
           "parcel tracking says delivered but nothing arrived at my door"]
PARAPHRASE = "tracking for my parcel still hasn't moved, it's stuck at the depot"
CATEGORIES = (*LABELS, "logistics")


def message(text: str, tenant: str = "t1") -> EventInput:
    return EventInput(tenant, "api", "message.received", {"text": text}, text)


def corrections() -> list[Correction]:
    return [Correction("api", "message.received", {"text": text}, text, "logistics", datetime.now(UTC))
            for text in PARCELS]


# A slice of the corpus: the same training, in a fraction of the time.
SMALL_CORPUS = load(TRAIN)[::8]


async def small_trainer(rows: list[dict[str, Any]]) -> str:
    weighted = [row for row in rows for _ in range(CORRECTION_WEIGHT)]
    return (await asyncio.to_thread(train, SMALL_CORPUS + weighted)).to_json()


def test_examples_follow_the_system_prompt_one_line_each() -> None:
    assert with_examples("Triage.", ()) == "Triage."
    shown = with_examples("Triage.", (
        LabelledExample("slack", "message", 'where is "my" parcel', "shipping", "high", "negative"),
        LabelledExample("api", "ping", "{}", "other", "P2", "")))
    assert shown.startswith("Triage.\n\nEvents of this tenant that a person labelled")
    assert '1. Event type: message; source: slack; text: "where is \\"my\\" parcel"\n' \
        "   → category: shipping, priority: high, sentiment: negative" in shown
    # A level of the tenant's own scale is not shown: the model answers on the built-in one.
    assert shown.endswith("2. Event type: ping; source: api; text: \"{}\"\n   → category: other")


def test_a_corrected_category_of_the_tenants_own_is_learnt() -> None:
    rows = [c.row() for c in corrections()]
    weights = train(SMALL_CORPUS + rows * CORRECTION_WEIGHT)
    assert weights.labels == CATEGORIES
    for text in (PARCELS[0], PARAPHRASE):
        assert classify(message(text), CATEGORIES, weights=weights)["category"] == "logistics", text
        assert classify(message(text), CATEGORIES)["category"] != "logistics", text
    # A tenant without the category is answered from the categories it has.
    assert classify(message(PARAPHRASE), LABELS, weights=weights)["category"] in LABELS
    assert Weights.from_json(weights.to_json()).labels == CATEGORIES


class Corrections:
    def __init__(self, found: list[Correction]) -> None:
        self.found = found

    async def corrections(self, tenant_id: str, limit: int) -> list[Correction]:
        return self.found[:limit] if tenant_id == "t1" else []


@pytest.fixture
async def models(pool):
    await apply_migrations(pool, "ai", MIGRATIONS)
    return TenantModels(pool, Corrections(corrections()), small_trainer, cache_ttl_s=0)


async def wait_trained(models: TenantModels) -> None:
    await asyncio.gather(*models._tasks)


async def test_a_tenants_model_trains_once_at_a_time_and_answers_its_classifications(models, pool) -> None:
    assert (await models.state("t1")).status == "builtin" and await models.current("t1") is None
    with pytest.raises(InvalidRequest, match="no corrections"):
        await models.retrain("t2")
    assert (await models.state("t2")).status == "builtin"  # its claim released

    started = await models.retrain("t1")
    assert (started.status, started.model) == ("training", "local-linear-2")
    with pytest.raises(Conflict):
        await models.retrain("t1")
    await wait_trained(models)
    ready = await models.state("t1")
    assert (ready.status, ready.model, ready.corrections, ready.categories) == \
        ("ready", "local-linear-2-tenant-v1", 3, CATEGORIES)

    store = AIStore(pool, BOX)
    engine = AIEngine(load_registry(env={}), store, ("local",), ProviderGate({}),
                      CircuitBreakers(threshold=2, cooldown_s=60), ResponseCache(0), local_models=models)
    for tenant in ("t1", "t2"):
        await store.save_settings(tenant, None, CATEGORIES)
    answer = await engine.classify(message(PARAPHRASE), lane="normal")
    assert (answer.value.category, answer.model) == ("logistics", "local-linear-2-tenant-v1")
    other = await engine.classify(message(PARAPHRASE, "t2"), lane="normal")
    assert other.value.category != "logistics" and other.model == "local-linear-2"

    await models.retrain("t1")
    await wait_trained(models)
    current = await models.current("t1")
    assert current is not None and current.name == "local-linear-2-tenant-v2"


async def test_a_failed_training_keeps_the_model_answering(models) -> None:
    async def failing(rows: list[dict[str, Any]]) -> str:
        raise RuntimeError("the corpus is not installed")

    await models.retrain("t1")
    await wait_trained(models)
    models.trainer = failing
    await models.retrain("t1")
    await wait_trained(models)
    failed = await models.state("t1")
    assert (failed.status, failed.model) == ("failed", "local-linear-2-tenant-v1")
    assert failed.error == "training failed: the corpus is not installed"
    assert (await models.current("t1")) is not None


async def test_the_local_provider_ignores_a_model_not_its_own() -> None:
    provider = load_registry(env={}).ai_provider("local")
    request = AIRequest("classify", "", "", None, event=message(PARAPHRASE), categories=CATEGORIES,
                        tuned_model="not a model")
    answer: AIResponse = await provider.complete(request)
    assert answer.model == "local-linear-2"


async def test_nightly_the_tenants_with_newer_corrections_are_retrained(models) -> None:
    assert await models.retrain_due() == 0  # no tenant has a model of its own yet
    await models.retrain("t1")
    await wait_trained(models)
    assert await models.retrain_due() == 0  # nothing new since
    models.source.found.insert(0, Correction("api", "message.received", {"text": "where is my parcel"},
                                             "where is my parcel", "logistics", datetime.now(UTC)))
    assert await models.retrain_due() == 1
    state = await models.state("t1")
    assert (state.model, state.corrections) == ("local-linear-2-tenant-v2", 4)


async def test_the_training_process_reads_the_data_directory_it_is_given(tmp_path) -> None:
    """A deployment's copy of the training rows (SWITCHBOARD_AI_TRAINING_DATA; a slice here, to train in seconds):
    the installed package has no source tree to find them in."""
    (tmp_path / "corpus_train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in SMALL_CORPUS))
    for name in ("corpus_dev.jsonl", "corpus_holdout.jsonl"):
        (tmp_path / name).write_text("")
    text = await train_in_subprocess(str(tmp_path))([c.row() for c in corrections()])
    assert Weights.from_json(text).labels == CATEGORIES
    with pytest.raises(RuntimeError, match=r"No such file or directory: .*missing/corpus_"):
        await train_in_subprocess(str(tmp_path / "missing"))([c.row() for c in corrections()])
