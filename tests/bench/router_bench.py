"""The router with 1 and with 100 routes per tenant, and the AI response cache's hit rate.

1. Routing cost: ``decide`` alone (matching, filters, explanations) per event.
2. Router events/s: the EVENTS handler as the service runs it (store the event,
   dispatch, publish the deliveries, keep the explanation) on embedded
   PostgreSQL and NATS, 64 events at a time. With 100 routes, 99 do not match
   (other types, payload filters that fail) and one does.
3. Cache hit rate: 2,000 classifications of 200 distinct events through the
   real Anthropic SDK against a loopback stand-in for its API.

    .venv/bin/python -m tests.bench.router_bench
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import nats

from plugins.ai.spec import EventInput
from plugins.manager import load_registry
from services.ai.engine import AIEngine, ResponseCache
from services.ai.gate import ProviderGate
from services.ai.store import AIStore
from services.router.consumer import EventRouter
from services.router.dispatch import Dispatcher
from services.router.event_store import EventStore
from services.router.route_store import RouteStore
from services.router.routing import RouteSet, decide, parse_route_spec, route_from_spec
from services.router.replies import ReplyStore
from services.router.templates import TemplateStore
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations, open_pool
from switchboard.events import Event
from switchboard.ids import new_id
from switchboard.messaging import ensure_streams
from switchboard.settings import Settings
from tests.services.router.endpoint_types import NO_FILTERS
from tests.services.router.no_ai import NO_AI
from tests.ai_servers import FakeAIServer, Reply, anthropic_message
from tests.bench.common import infrastructure
from tests.sealing import BOX
from switchboard.bus import Bus

EVENTS = int(os.environ.get("BENCH_EVENTS", "3000"))
ROOT = Path(__file__).parents[2]


def specs(count: int) -> list[dict]:
    """``count`` routes: the last matches the benchmark's events, the others do not."""
    misses = [{"name": f"miss {n}", "endpoint_ids": [f"ep_{n:026d}"], "event_types": [f"other{n}.*"]}
              if n % 2 else
              {"name": f"miss {n}", "endpoint_ids": [f"ep_{n:026d}"], "event_types": ["order.*"],
               "filters": {"all": [{"path": "$.order.total", "op": "gt", "value": 10_000 + n},
                                   {"path": "$.order.currency", "op": "in", "value": ["eur", "gbp"]}]}}
              for n in range(count - 1)]
    hit = {"name": "hit", "endpoint_ids": ["ep_hit0000000000000000000000"], "event_types": ["order.*"],
           "filters": {"all": [{"path": "$.order.total", "op": "gte", "value": 10}]}}
    return [*misses, hit]


def event(n: int) -> Event:
    return Event(id=new_id("evt"), tenant_id="t1", source_id="src_bench", type="order.created",
                 received_at=time.time(), payload={"order": {"id": n, "total": 99, "currency": "usd",
                                                             "lines": [{"sku": "x", "qty": 1}] * 5}})


def decide_rate(count: int) -> float:
    routes = RouteSet([route_from_spec("t1", parse_route_spec(s), f"rt_{i}") for i, s in enumerate(specs(count))])
    sample = [event(n) for n in range(200)]
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < 2:
        for e in sample:
            assert len(decide(e, routes).deliveries) == 1
        done += len(sample)
    return done / (time.perf_counter() - start)


async def router_rate(database_url: str, nats_url: str, count: int) -> float:
    pool = await open_pool(database_url, max_size=20)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await apply_migrations(pool, "router", ROOT / "services/router/migrations")
        await ensure_streams(js, Settings.from_env({}))
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM router.routes")
        routes = RouteStore(pool)
        for spec in specs(count):
            await routes.create("t1", parse_route_spec(spec))
        dispatcher = Dispatcher(routes, TemplateStore(pool), ai=NO_AI, replies=ReplyStore(pool),
                                endpoint_types=NO_FILTERS)
        router = EventRouter(Bus(js, 5.0), EventStore(pool), dispatcher)
        events = [event(n) for n in range(EVENTS)]
        limit = asyncio.Semaphore(64)

        async def one(e: Event) -> None:
            async with limit:
                assert (await router.route(e)).action == "ack"

        start = time.perf_counter()
        await asyncio.gather(*(one(e) for e in events))
        return EVENTS / (time.perf_counter() - start)
    finally:
        await nc.close()
        await pool.close()


async def cache_hit_rate(database_url: str) -> tuple[float, float]:
    pool = await open_pool(database_url, max_size=10)
    try:
        await apply_migrations(pool, "ai", ROOT / "services/ai/migrations")
        with FakeAIServer() as anthropic:
            labels = {"category": "sales", "priority": "normal", "sentiment": "neutral", "confidence": 0.8,
                      "summary": "An order"}
            anthropic.reply(*[Reply(body=anthropic_message(
                [{"type": "tool_use", "id": "toolu_1", "name": "answer", "input": labels}]))] * 200)
            registry = load_registry(env={"SWITCHBOARD_AI_ANTHROPIC_API_KEY": "k",
                                          "SWITCHBOARD_AI_ANTHROPIC_BASE_URL": anthropic.url})
            engine = AIEngine(registry, AIStore(pool, BOX), ("anthropic",), ProviderGate({}),
                              CircuitBreakers(threshold=5, cooldown_s=30), ResponseCache(3600))
            start = time.perf_counter()
            for n in range(2000):
                await engine.classify(EventInput("t1", "shop", "order.created", {"order": n % 200}, ""),
                                      lane="normal")
            rate = 2000 / (time.perf_counter() - start)
            return engine.cache.hits / (engine.cache.hits + engine.cache.misses), rate
    finally:
        await pool.close()


def main() -> None:
    one, hundred = decide_rate(1), decide_rate(100)
    with infrastructure() as (nats_url, database_url, _):
        rates = {count: asyncio.run(router_rate(database_url, nats_url, count)) for count in (1, 100)}
        hit_rate, classify_rate = asyncio.run(cache_hit_rate(database_url))
    print("\nrouter benchmark (one process, embedded PostgreSQL and NATS on the same 2 cores)")
    print(f"  decide() alone:   {one:8.0f} events/s with 1 route, {hundred:8.0f} with 100 "
          f"(100 routes cost {one / hundred:.2f}x one)")
    print(f"  router handler:   {rates[1]:8.0f} events/s with 1 route, {rates[100]:8.0f} with 100 "
          f"(100 routes cost {rates[1] / rates[100]:.2f}x one)")
    print(f"  AI cache:         {hit_rate:.1%} hits on 2,000 classifications of 200 distinct events "
          f"({classify_rate:.0f} classifications/s)")


if __name__ == "__main__":
    main()
