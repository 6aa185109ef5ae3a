"""A tenant's fallback category, end to end in AIService: stored, checked, and answered by the local provider.

Small talk fits none of a tenant's categories: it is answered with the
fallback (``other`` by default) at a low confidence, so a route's
``min_confidence`` skips it; the local provider says why in ``reasons``.
"""

from pathlib import Path

import pytest

from plugins.ai.spec import EventInput
from plugins.manager import load_registry
from services.ai.engine import AIEngine, ResponseCache
from services.ai.gate import ProviderGate
from services.ai.servicer import AIServicer
from services.ai.store import AIStore
from services.router.conditions import AIConditions
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations
from switchboard.v1 import ai_pb2 as pb
from tests.sealing import BOX
from tests.servicer_context import Aborted, Context

MIGRATIONS = Path(__file__).parents[3] / "services/ai/migrations"
SMALL_TALK = EventInput("t1", "slack", "message", {"event": {"type": "message", "text": "haha ok, thanks!"}},
                        "haha ok, thanks!")


@pytest.fixture
async def service(pool):
    await apply_migrations(pool, "ai", MIGRATIONS)
    store = AIStore(pool, BOX)
    engine = AIEngine(load_registry(env={}), store, ("local",), ProviderGate({}),
                      CircuitBreakers(threshold=2, cooldown_s=60), ResponseCache(0))
    return engine, store, AIServicer(engine, store)


async def test_small_talk_is_the_fallback_at_a_low_confidence(service) -> None:
    engine, store, _ = service
    answer = await engine.classify(SMALL_TALK, lane="normal")
    assert (answer.provider, answer.value.category) == ("local", "other")
    assert answer.value.confidence <= 0.45 and answer.value.reasons
    labels = {"category": answer.value.category, "confidence": answer.value.confidence}
    assert AIConditions.parse({"min_confidence": 0.6}).evaluate(labels)[0] is False  # type: ignore[union-attr]

    await store.save_settings("t1", None, ("billing", "support", "sales", "triage"), None, "triage")
    answer = await engine.classify(SMALL_TALK, lane="normal")
    assert answer.value.category == "triage" and answer.value.confidence <= 0.45
    billing = await engine.classify(EventInput("t1", "slack", "message", {}, "We were charged twice, refund please"),
                                    lane="normal")
    assert billing.value.category == "billing" and billing.value.confidence > 0.6


async def test_the_setting_is_checked_shown_and_cleared(service) -> None:
    _, store, servicer = service
    context = Context()
    shown = await servicer.GetSettings(pb.GetAISettingsRequest(tenant_id="t1"), context)
    assert shown.fallback_category == "other"
    with pytest.raises(Aborted, match="not one of the tenant's categories"):
        await servicer.UpdateSettings(pb.UpdateAISettingsRequest(tenant_id="t1", fallback_category="vip"), context)
    changed = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(
        tenant_id="t1", categories=["billing", "code", "misc", "other"], fallback_category="misc"), context)
    assert (list(changed.categories), changed.fallback_category) == (["billing", "code", "misc", "other"], "misc")
    assert (await store.settings("t1")).fallback_category == "misc"
    # Changing the categories alone keeps the fallback; "" goes back to the default.
    kept = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(tenant_id="t1", providers=["local"]), context)
    assert kept.fallback_category == "misc"
    cleared = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(tenant_id="t1", fallback_category=""), context)
    assert cleared.fallback_category == "other"
    # A fallback the categories no longer hold is not used.
    await store.save_settings("t1", None, ("billing", "misc"), None, "misc")
    await store.save_settings("t1", None, ("billing", "support"), None, None)
    assert (await servicer.GetSettings(pb.GetAISettingsRequest(tenant_id="t1"), context)).fallback_category \
        == "support"
