"""Listing and searching stored events on real PostgreSQL: each filter, the keyset cursor
(ties, events stored while paging), tenant isolation, refusals, the glob translation and
the indexes the listing walks."""

from __future__ import annotations

import base64
import json
import random
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from services.router.event_search import EventQuery, EventSearch, glob_to_regex
from services.router.event_store import EventStore
from switchboard.database import apply_migrations
from switchboard.errors import InvalidRequest
from switchboard.events import Event
from switchboard.patterns import matches_any

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"
NOW = datetime.now(UTC).replace(microsecond=0)

ROUTED = {"routes": [], "ai": None, "dropped_by": None,
          "deliveries": [{"route_id": "rt_1", "endpoint_id": "ep_1", "action": "deliver"}]}
UNROUTED: dict = {"routes": [], "ai": None, "dropped_by": None, "deliveries": []}
DROPPED: dict = {"routes": [], "ai": None, "dropped_by": "rt_drop", "deliveries": []}


def classified(decision: dict, category: str) -> dict:
    return {**decision, "ai": {"category": category, "confidence": 0.9, "provider": "local"}}


def event_id(n: int) -> str:
    return f"evt_{n:032x}"


def event(n: int, *, tenant: str = "t1", source: str = "s1", type_: str = "order.created",
          at: datetime | None = None) -> Event:
    return Event(id=event_id(n), tenant_id=tenant, source_id=source, type=type_,
                 received_at=(at or NOW - timedelta(minutes=100 - n)).timestamp(), payload={"n": n})


@pytest.fixture
async def stores(pool):
    await apply_migrations(pool, "router", MIGRATIONS)
    return EventStore(pool), EventSearch(pool)


async def walk(search: EventSearch, tenant: str, query: EventQuery) -> list[list[str]]:
    """Every page of the listing, following the cursors."""
    pages: list[list[str]] = []
    cursor = query.cursor
    while True:
        page = await search.page(tenant, EventQuery(**{**query.__dict__, "cursor": cursor}))
        pages.append([e.id for e in page.events])
        if not page.next_cursor:
            return pages
        cursor = page.next_cursor


async def test_each_filter_and_the_outcome_of_each_event(stores) -> None:
    events, search = stores
    await events.store(event(1, type_="invoice.paid"), classified(ROUTED, "billing"))
    await events.store(event(2, type_="invoice.payment_failed", source="s2"), classified(UNROUTED, "billing"))
    await events.store(event(3, type_="order.created"), DROPPED)
    await events.store(event(4, type_="order.created", source="s2"), classified(ROUTED, "support"))
    await events.store(event(5, type_="invoices.x"), None)  # no decision recorded: nothing was planned
    await events.store(event(6, tenant="t2", type_="invoice.paid"), classified(ROUTED, "billing"))

    async def ids(**filters) -> list[int]:
        page = await search.page("t1", EventQuery(**filters))
        return [int(e.id[4:], 16) for e in page.events]

    assert await ids() == [5, 4, 3, 2, 1]  # newest first, t1 only
    assert await ids(source_id="s2") == [4, 2]
    assert await ids(type="invoice.*") == [2, 1]
    assert await ids(type="invoice.pa?d") == [1]
    assert await ids(type="*.created") == [4, 3]
    assert await ids(type="[io]*s.[!y]") == [5]
    assert await ids(status="routed") == [4, 1]
    assert await ids(status="unrouted") == [5, 2]
    assert await ids(status="dropped") == [3]
    assert await ids(category="billing") == [2, 1]
    assert await ids(category="support", status="routed") == [4]
    assert await ids(since=NOW - timedelta(minutes=98), until=NOW - timedelta(minutes=96)) == [3, 2]  # until excluded
    assert await ids(since=NOW - timedelta(minutes=97)) == [5, 4, 3]
    assert await ids(source_id="s3") == []

    [listed] = (await search.page("t1", EventQuery(type="invoice.paid"))).events
    assert (listed.status, listed.category, listed.deliveries, listed.source_id) == ("routed", "billing", 1, "s1")
    assert listed.received_at == NOW - timedelta(minutes=99)
    assert [e.id for e in (await search.page("t2", EventQuery())).events] == [event_id(6)]


async def test_a_redelivered_event_with_a_new_decision_lists_its_new_outcome(stores) -> None:
    events, search = stores
    await events.store(event(1), UNROUTED)
    await events.store(event(1), classified(ROUTED, "billing"))
    [listed] = (await search.page("t1", EventQuery())).events
    assert (listed.status, listed.category) == ("routed", "billing")


async def test_the_cursor_walks_every_event_once_even_with_ties_and_new_events(stores) -> None:
    events, search = stores
    same_instant = NOW - timedelta(hours=1)
    for n in range(1, 41):
        # Ties: events received in the same microsecond are ordered by id.
        await events.store(event(n, at=same_instant if n % 3 == 0 else None,
                                 type_="order.created" if n % 2 else "invoice.paid"), ROUTED)
    await events.store(event(99, tenant="t2"), ROUTED)

    pages = await walk(search, "t1", EventQuery(limit=7))
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    listed = [i for page in pages for i in page]
    assert len(listed) == len(set(listed)) == 40
    expected = sorted((event(n, at=same_instant if n % 3 == 0 else None) for n in range(1, 41)),
                      key=lambda e: (e.received_at, e.id), reverse=True)
    assert listed == [e.id for e in expected]

    # Filtered, with events stored between pages: newer ones do not shift the walk.
    query = EventQuery(type="order.*", limit=6)
    first = await search.page("t1", query)
    for n in range(41, 46):
        await events.store(event(n, at=NOW + timedelta(seconds=n), type_="order.created"), ROUTED)
    rest = await walk(search, "t1", EventQuery(type="order.*", limit=6, cursor=first.next_cursor))
    walked = [e.id for e in first.events] + [i for page in rest for i in page]
    assert walked == [event_id(n) for n in sorted(
        (n for n in range(1, 41) if n % 2), key=lambda n: (expected_key(n, same_instant)), reverse=True)]

    # A page that is exactly the rest has no next cursor.
    assert (await search.page("t1", EventQuery(limit=45))).next_cursor == ""


def expected_key(n: int, same_instant: datetime) -> tuple[float, str]:
    e = event(n, at=same_instant if n % 3 == 0 else None)
    return e.received_at, e.id


@pytest.mark.parametrize("filters,field", [
    ({"type": ""}, "type"),
    ({"type": "x" * 201}, "type"),
    ({"type": "order.\x00"}, "type"),
    ({"source_id": "s\x00"}, "source_id"),
    ({"category": ""}, "category"),
    ({"status": "delivered"}, "status"),
    ({"since": NOW, "until": NOW - timedelta(seconds=1)}, "until"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"cursor": "not a cursor"}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'[1, "evt_1", "x"]').decode()}, "cursor"),
])
async def test_bad_filters_are_refused_naming_the_field(stores, filters, field) -> None:
    _, search = stores
    with pytest.raises(InvalidRequest) as refused:
        await search.page("t1", EventQuery(**filters))
    assert refused.value.message.startswith(f"{field}:")


async def test_a_cursor_is_refused_when_edited_or_used_by_another_tenant_or_other_filters(stores) -> None:
    events, search = stores
    for n in range(1, 6):
        await events.store(event(n), ROUTED)
        await events.store(event(100 + n, tenant="t2"), ROUTED)
    cursor = (await search.page("t1", EventQuery(limit=2))).next_cursor
    assert [e.id for e in (await search.page("t1", EventQuery(limit=2, cursor=cursor))).events] == \
        [event_id(3), event_id(2)]
    position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    position[0] += 1_000_000  # a forged position, with the old check
    forged = base64.urlsafe_b64encode(json.dumps(position).encode()).decode()
    for tenant, query in (("t2", EventQuery(limit=2, cursor=cursor)),
                          ("t1", EventQuery(limit=2, cursor=cursor, status="routed")),
                          ("t1", EventQuery(limit=2, cursor=forged)),
                          ("t1", EventQuery(limit=2, cursor=cursor[:-3]))):
        with pytest.raises(InvalidRequest, match="^cursor:"):
            await search.page(tenant, query)


async def test_globs_match_in_postgresql_exactly_as_routes_match_them(pool) -> None:
    """The listing's SQL translation against switchboard.patterns, over awkward globs and types."""
    rng = random.Random(7)
    alphabet = "ab.-!^]\\[*?$(|)+{}"
    patterns = ["*", "invoice.*", "a?c", "[a-c]x", "[!a]*", "[]]", "[!]]", "[]-a]", "[a-]", "[!]", "[]",
                "[z-a]", "[a-c-e]", "[--a]", "a[", "a[b", "[^a]", "\\.*", "a.b", "(a|b)", "a+", "$x",
                "[\\]]", "*[!.]*", "***a"]
    patterns += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    types = ["", "a", "b", "c", "x", "ax", "bx", "dx", "]", "-", "!", "^", "\\", "[", "a[", "a[b", "abc", "aXc",
             "invoice.paid", "invoice", "a.b", "axb", "(a|b)", "a+", "$x", ".", "\\.", "a\nb", "é"]
    types += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(100)]
    async with pool.connection() as conn:
        for pattern in patterns:
            regex = glob_to_regex(pattern)
            cur = await conn.execute("SELECT t, t ~ %s AS m FROM unnest(%s::text[]) AS t", (regex, types))
            for row in await cur.fetchall():
                assert row["m"] == matches_any(row["t"], [pattern]), (pattern, row["t"], regex)


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(n for child in plan.get("Plans", ()) for n in _nodes(child))]


@pytest.mark.parametrize("filters,index", [
    ({}, "events_tenant_received"),
    ({"type": "invoice.*"}, "events_tenant_received"),
    ({"source_id": "s1"}, "events_tenant_source_received"),
    ({"status": "dropped"}, "events_tenant_status_received"),
    ({"category": "billing"}, "events_tenant_category_received"),
])
async def test_each_listing_walks_an_index_in_order_without_sorting(stores, pool, filters, index) -> None:
    events, search = stores
    for n in range(1, 30):
        await events.store(event(n, tenant=f"t{n % 3}", source=f"s{n % 2}"),
                           classified(DROPPED if n % 5 == 0 else ROUTED, "billing" if n % 4 == 0 else "other"))
    cursor = (await search.page("t1", EventQuery(limit=2, **filters))).next_cursor
    statement, params = search.statement("t1", EventQuery(limit=2, cursor=cursor or None, **filters))
    async with pool.connection() as conn:
        await conn.execute("SET enable_seqscan = off")  # a tiny table would be read whole otherwise
        cur = await conn.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        [[plan]] = (await cur.fetchone()).values()
    nodes = _nodes(plan["Plan"])
    assert not any(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes), nodes
    assert any(n.get("Index Name") == index for n in nodes), nodes
