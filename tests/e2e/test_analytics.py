"""Analytics end to end: signed webhooks delivered (and dead-lettered) by the real platform, then the
/v1/analytics REST API over AnalyticsService, with its failure cases and tenant isolation."""

from __future__ import annotations


import httpx
import pytest

from switchboard.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.slice import send, wait_for
from tests.e2e.test_ai import CI_FAILED, OUTAGE, THANKS
from tests.e2e.test_auth import tenant_with_key
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e




def other_tenant_key(platform: Platform, *scopes: str) -> str:
    with platform.service_channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        tenant = stub.CreateTenant(auth_pb2.CreateTenantRequest(name="other"), timeout=5)
        return stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(tenant_id=tenant.id, scopes=list(scopes)),
                                 timeout=5).secret


def test_analytics_counts_what_the_platform_delivered_and_refuses_bad_questions(platform: Platform) -> None:
    with Receiver() as ok, Receiver(status=500, headers={"webhook-delivery": "abort-message"}) as broken, \
            platform.client() as api:
        source = api.post("/v1/sources", json={"name": "orders", "config": {"event_type_field": "type"}}).json()
        good = api.post("/v1/endpoints", json={"url": ok.url}).json()["id"]
        bad = api.post("/v1/endpoints", json={"url": broken.url}).json()["id"]
        api.post("/v1/routes", json={"name": "both", "endpoint_ids": [good, bad]}).raise_for_status()
        for n in range(3):
            send(platform, source["id"], source["secret"], {"type": "order.created", "n": n})

        # Each event: one delivery succeeds at once, the other is aborted by its receiver: dead at once.
        overview = wait_for(lambda: (o := api.get("/v1/analytics/overview").json())["attempts"] == 6 and o)
        assert {k: overview[k] for k in ("events_received", "deliveries", "attempts", "succeeded", "failed", "dead",
                                         "pending")} == {"events_received": 3, "deliveries": 6, "attempts": 6,
                                                         "succeeded": 3, "failed": 3, "dead": 3, "pending": 0}
        assert overview["success_rate"] == 0.5
        latency = overview["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] < 10_000 and latency["avg"] > 0
        assert overview["since"] < overview["until"]

        minutes = api.get("/v1/analytics/trends", params={"bucket": "minute"}).json()
        assert minutes["bucket"] == "minute" and len(minutes["data"]) in (1440, 1441)
        assert sum(p["attempts"] for p in minutes["data"]) == 6 and sum(p["dead"] for p in minutes["data"]) == 3
        hours = api.get("/v1/analytics/trends").json()  # hour buckets unless asked otherwise
        assert hours["bucket"] == "hour" and sum(p["events_received"] for p in hours["data"]) == 3
        mine = api.get("/v1/analytics/trends", params={"bucket": "day", "endpoint_id": bad}).json()
        assert sum(p["dead"] for p in mine["data"]) == 3

        breakdown = api.get("/v1/analytics/breakdown", params={"by": "endpoint"}).json()["data"]
        by_endpoint = {r["key"]: r for r in breakdown}
        assert (by_endpoint[good]["succeeded"], by_endpoint[good]["dead"]) == (3, 0)
        assert (by_endpoint[bad]["succeeded"], by_endpoint[bad]["dead"], by_endpoint[bad]["success_rate"]) == (0, 3, 0)
        for by, key in (("event_type", "order.created"), ("source", source["id"]), ("category", "")):
            [row] = api.get("/v1/analytics/breakdown", params={"by": by}).json()["data"]
            assert (row["key"], row["attempts"], row["events_received"]) == (key, 6, 3), by

        detail = api.get(f"/v1/analytics/endpoints/{bad}").json()
        assert (detail["endpoint_id"], detail["attempts"], detail["dead"], detail["pending"]) == (bad, 3, 3, 0)
        assert "abort-message" in detail["last_error"] and detail["last_failure_at"]
        assert api.get(f"/v1/analytics/endpoints/{good}").json()["last_error"] is None
        [failing] = api.get("/v1/analytics/failing-endpoints").json()["data"]
        assert (failing["endpoint_id"], failing["failures"], failing["dead"]) == (bad, 3, 3)
        assert "abort-message" in failing["last_error"]

        # A range in the future is empty, not an error.
        future = {"since": "2999-01-01T00:00:00Z", "until": "2999-01-02T00:00:00Z"}
        empty = api.get("/v1/analytics/overview", params=future).json()
        assert (empty["attempts"], empty["pending"], empty["success_rate"]) == (0, 0, 0)
        assert api.get("/v1/analytics/trends", params={**future, "bucket": "minute"}).json()["data"] == []
        assert api.get("/v1/analytics/breakdown", params={**future, "by": "source"}).json()["data"] == []
        assert api.get("/v1/analytics/failing-endpoints", params=future).json()["data"] == []
        # An empty range is empty.
        same = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
        assert api.get("/v1/analytics/overview", params=same).json()["attempts"] == 0

        for path, params in (("/v1/analytics/trends", {"bucket": "week"}),
                             ("/v1/analytics/trends", {"bucket": ""}),
                             ("/v1/analytics/trends", {"bucket": "minute", "since": "2020-01-01T00:00:00Z"}),
                             ("/v1/analytics/trends", {"bucket": "minute", "endpoint_id": good}),
                             ("/v1/analytics/breakdown", {"by": "colour"}),
                             ("/v1/analytics/breakdown", {}),
                             ("/v1/analytics/breakdown", {"by": "endpoint", "limit": "x"}),
                             ("/v1/analytics/failing-endpoints", {"limit": "-3"}),
                             ("/v1/analytics/overview", {"since": "yesterday"}),
                             ("/v1/analytics/overview", {"since": "2026-01-02T00:00:00Z",
                                                         "until": "2026-01-01T00:00:00Z"})):
            reply = api.get(path, params=params)
            assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_request", (path, params)
        unknown = api.get("/v1/analytics/endpoints/ep_00000000000000000000000000000000")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        assert api.get("/v1/analytics/trends", params={"endpoint_id": "ep_nope"}).status_code == 404

        # Another tenant sees none of it, and cannot name this tenant's endpoints.
        with platform.client(other_tenant_key(platform, "read")) as other:
            assert other.get(f"/v1/analytics/endpoints/{good}").status_code == 404
            assert other.get("/v1/analytics/trends", params={"endpoint_id": good}).status_code == 404
            assert other.get("/v1/analytics/overview").json()["attempts"] == 0
            assert other.get("/v1/analytics/breakdown", params={"by": "endpoint"}).json()["data"] == []
            assert other.get("/v1/analytics/failing-endpoints").json()["data"] == []
        # Analytics takes the read scope.
        with platform.client(other_tenant_key(platform, "events:publish")) as publisher:
            denied = publisher.get("/v1/analytics/overview")
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"

        document = httpx.get(f"{platform.edge_url}/openapi.json").json()
        assert document["paths"]["/v1/analytics/trends"]["get"]["x-required-scope"] == "read"


def every_page(api: httpx.Client, path: str, **params: str) -> list[dict]:
    """Every item of a listing, page by page."""
    found, cursor = [], None
    while True:
        page = api.get(path, params={**params, "limit": 1000, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        found += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return found


def test_the_overview_counts_every_event_and_every_unsettled_delivery(platform_factory) -> None:
    # A long cooldown: once the down endpoint's circuit opens, it stays open for the whole test.
    platform = platform_factory(SWITCHBOARD_CIRCUIT_COOLDOWN="600")
    with Receiver() as up, Receiver(status=503) as down, platform.client() as api:
        def new_source(name: str) -> dict:
            return api.post("/v1/sources", json={"name": name, "config": {"event_type_field": "type"}}).json()

        routed, unrouted, dropped = new_source("orders"), new_source("nobody listens"), new_source("noise")
        good = api.post("/v1/endpoints", json={"url": up.url}).json()["id"]
        bad = api.post("/v1/endpoints", json={"url": down.url}).json()["id"]
        api.post("/v1/routes", json={"name": "orders", "source_id": routed["id"],
                                     "endpoint_ids": [good, bad]}).raise_for_status()
        api.post("/v1/routes", json={"name": "no noise", "source_id": dropped["id"],
                                     "action": "drop"}).raise_for_status()
        sent = [send(platform, s["id"], s["secret"], {"type": "order.created", "n": n})
                for s, count in ((unrouted, 60), (routed, 60), (dropped, 10)) for n in range(count)]

        def ground_truth() -> dict | None:
            """What happened, from the router's events and the delivery service's log (None: not all routed yet)."""
            events = every_page(api, "/v1/events")
            if {e["id"] for e in events} != set(sent):
                return None
            planned = sum(e["deliveries"] for e in events)
            log = every_page(api, "/v1/deliveries", endpoint_id=good) + every_page(api, "/v1/deliveries",
                                                                                    endpoint_id=bad)
            settled = {s: sum(d["status"] == s for d in log) for s in ("succeeded", "failed")}
            return {"events_received": len(events),
                    **{status: sum(e["status"] == status for e in events)
                       for status in ("routed", "unrouted", "dropped")},
                    "deliveries": planned, "succeeded": settled["succeeded"], "dead": settled["failed"],
                    # Unsettled: attempted and waiting, or never attempted (held by the open circuit).
                    "pending": planned - settled["succeeded"] - settled["failed"],
                    "never_attempted": planned - len(log)}

        # Settled once the good endpoint has everything and the down one's circuit holds the rest.
        truth = wait_for(lambda: (t := ground_truth()) and t["succeeded"] == 60 and t["never_attempted"] > 0 and t, 60)
        assert truth["events_received"] == 130
        assert (truth["routed"], truth["unrouted"], truth["dropped"]) == (60, 60, 10)
        assert truth["pending"] == 60 and truth["dead"] == 0

        def overview_matches() -> dict | None:
            o = api.get("/v1/analytics/overview").json()
            by_reason = o.get("pending_by_reason", {})
            # Everything the circuit holds is said to be held by it: the deliveries never attempted at
            # least, and the attempted ones too once their retry comes back to the open circuit.
            if {k: o.get(k) for k in truth if k != "never_attempted"} == {
                    k: v for k, v in truth.items() if k != "never_attempted"} \
                    and by_reason.get("circuit_open") == 60:
                return o
            return None

        try:
            overview = wait_for(overview_matches, 30)
        except AssertionError:
            o = api.get("/v1/analytics/overview").json()
            raise AssertionError(f"overview {o} does not match the ground truth {truth}") from None
        assert sum(overview["pending_by_reason"].values()) == overview["pending"] == 60
        assert ground_truth() == truth  # nothing moved meanwhile: the comparison was with the same state

        # Per endpoint: the down one holds all of its deliveries; the good one none.
        mine = api.get(f"/v1/analytics/endpoints/{bad}").json()
        assert (mine["deliveries"], mine["pending"], mine["pending_by_reason"]["circuit_open"]) == (60, 60, 60)
        theirs = api.get(f"/v1/analytics/endpoints/{good}").json()
        assert (theirs["deliveries"], theirs["succeeded"], theirs["pending"]) == (60, 60, 0)
        # Per source: each source's events, with what became of them.
        sources = api.get("/v1/analytics/breakdown", params={"by": "source"})
        assert sources.status_code == 200, sources.text
        by_source = {r["key"]: r for r in sources.json()["data"]}
        assert (by_source[unrouted["id"]]["events_received"], by_source[unrouted["id"]]["unrouted"]) == (60, 60)
        assert (by_source[dropped["id"]]["events_received"], by_source[dropped["id"]]["dropped"]) == (10, 10)
        assert (by_source[routed["id"]]["routed"], by_source[routed["id"]]["deliveries"]) == (60, 120)


def test_analytics_break_down_by_ai_priority_on_each_tenants_own_levels(platform: Platform) -> None:
    """Events the AI classified, counted by their priority as routes saw it: the built-in levels for a tenant
    that keeps them, its own for a tenant with two (where the built-in high folds onto "urgent")."""
    _, two_levels_key = tenant_with_key(platform, "two levels", "admin")
    with Receiver() as receiver, platform.client() as builtin, platform.client(two_levels_key) as two_levels:
        scale = two_levels.patch("/v1/ai/settings", json={"priority_levels": ["urgent", "normal"]})
        assert scale.status_code == 200, scale.text
        for api in (builtin, two_levels):
            levels = api.get("/v1/ai/settings").json()["priority_levels"]
            endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
            # A route on every level: each event is classified, and delivered.
            api.post("/v1/routes", json={"name": "classified", "ai": {"priority": levels},
                                         "endpoint_ids": [endpoint]}).raise_for_status()
            for event in (OUTAGE, CI_FAILED, CI_FAILED, THANKS):
                api.post("/v1/events", json=event).raise_for_status()

        # The local provider's rules: the outage is urgent, a failed CI run high, a thank-you low.
        expected = {"builtin": (builtin, {"urgent": 1, "high": 2, "low": 1}),
                    "two levels": (two_levels, {"urgent": 3, "normal": 1})}
        for name, (api, counts) in expected.items():
            def by_priority() -> list[dict] | None:
                reply = api.get("/v1/analytics/breakdown", params={"by": "priority"})
                assert reply.status_code == 200, reply.text
                rows = reply.json()["data"]
                return rows if sum(r["succeeded"] for r in rows) == 4 else None

            rows = wait_for(by_priority)
            assert {r["key"]: r["events_received"] for r in rows} == counts, name
            assert {r["key"]: (r["deliveries"], r["attempts"]) for r in rows} == {
                key: (n, n) for key, n in counts.items()}, name
            # The first row has the most attempts.
            assert rows[0]["key"] == max(counts, key=counts.__getitem__), name

        refused = builtin.get("/v1/analytics/breakdown", params={"by": "unknown"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request", refused.text
        assert "priority" in refused.json()["error"]["message"]
