"""Receiver control, disabled endpoints, the delivery log and dead-letter retries, end to end."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from switchboard.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.slice import create_slice, send
from tests.e2e.test_slice import wait_for_delivery
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e



def test_a_receiver_can_abort_retries_and_disable_its_endpoint_then_dead_letters_are_retried(platform) -> None:
    with Receiver(status=500, headers={"webhook-delivery": "abort-message"}) as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        aborted = send(platform, s.source_id, s.source_secret, {"type": "a", "n": 1})
        event = wait_for_delivery(api, aborted, status="failed")
        [attempt] = event["deliveries"][0]["attempts"]  # no retry after abort-message
        assert attempt["outcome"] == "failed" and "abort-message" in attempt["error"]

        receiver.headers.clear()
        receiver.status = 410
        gone = send(platform, s.source_id, s.source_secret, {"type": "a", "n": 2})
        wait_for_delivery(api, gone, status="failed")
        endpoint = api.get(f"/v1/endpoints/{s.endpoint_id}").json()
        assert endpoint["disabled_reason"] == "receiver answered 410 Gone" and endpoint["disabled_at"]

        # While disabled nothing is sent; the delivery fails at once and waits as a dead letter.
        received = len(receiver.requests)
        held = send(platform, s.source_id, s.source_secret, {"type": "a", "n": 3})
        held_event = wait_for_delivery(api, held, status="failed")
        assert "endpoint disabled" in held_event["deliveries"][0]["attempts"][0]["error"]
        assert len(receiver.requests) == received

        failed = api.get("/v1/deliveries", params={"status": "failed", "endpoint_id": s.endpoint_id}).json()
        assert {d["event_id"] for d in failed["data"]} == {aborted, gone, held}

        receiver.status = 200
        assert api.post(f"/v1/endpoints/{s.endpoint_id}/enable").json().get("disabled_at") is None
        one = api.post(f"/v1/deliveries/{aborted}:{s.endpoint_id}/retry")
        assert one.status_code == 202 and one.json()["status"] == "pending"
        wait_for_delivery(api, aborted)
        again = api.post(f"/v1/deliveries/{aborted}:{s.endpoint_id}/retry")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        assert api.post(f"/v1/endpoints/{s.endpoint_id}/retry-failed").json() == {"retried": 2}
        for event_id in (gone, held):
            wait_for_delivery(api, event_id)
        # A retry is the same delivery: the receiver sees the same webhook-id again.
        ids = [r.headers["webhook-id"] for r in receiver.requests]
        assert ids.count(f"{aborted}:{s.endpoint_id}") == 2
        actions = {e["action"] for e in api.get("/v1/audit").json()["data"]}
        assert {"delivery.retry", "endpoint.retry_failed", "endpoint.enable"} <= actions


def test_the_delivery_log_filters_and_pages_within_the_tenant(platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        events = [send(platform, s.source_id, s.source_secret, {"type": "t", "n": n}) for n in range(5)]
        for event_id in events:
            wait_for_delivery(api, event_id)
        seen, created, cursor = [], [], None
        while True:
            page = api.get("/v1/deliveries", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            seen += [d["event_id"] for d in page["data"]]
            created += [datetime.fromisoformat(d["created_at"]) for d in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(events) and len(seen) == 5
        assert created == sorted(created, reverse=True)  # newest first
        one = api.get(f"/v1/deliveries/{events[0]}:{s.endpoint_id}").json()
        assert one["status"] == "succeeded" and one["attempts"][0]["status_code"] == 200
        assert api.get("/v1/deliveries", params={"event_id": events[1]}).json()["data"][0]["event_id"] == events[1]
        future = api.get("/v1/deliveries", params={"since": "2999-01-01T00:00:00Z"}).json()
        assert future == {"data": [], "next_cursor": None}
        for params in ({"status": "lost"}, {"cursor": "garbage"}, {"since": "yesterday"}, {"limit": "x"}):
            reply = api.get("/v1/deliveries", params=params)
            assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_request", params

        with platform.service_channel("auth") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            tenant = stub.CreateTenant(auth_pb2.CreateTenantRequest(name="other"), timeout=5)
            other_key = stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(
                tenant_id=tenant.id, scopes=["admin"]), timeout=5).secret
        with platform.client(other_key) as other:
            assert other.get(f"/v1/deliveries/{events[0]}:{s.endpoint_id}").status_code == 404
            assert other.post(f"/v1/deliveries/{events[0]}:{s.endpoint_id}/retry").status_code == 404
            assert other.post(f"/v1/endpoints/{s.endpoint_id}/disable").status_code == 404
            assert other.post(f"/v1/endpoints/{s.endpoint_id}/retry-failed").status_code == 404
            assert other.get("/v1/deliveries").json()["data"] == []


def test_a_slow_endpoint_never_delays_deliveries_to_others(platform_factory) -> None:
    platform = platform_factory(SWITCHBOARD_DELIVERY_CONCURRENCY="8", SWITCHBOARD_ENDPOINT_MAX_IN_FLIGHT="2",
                                SWITCHBOARD_DELIVERY_TIMEOUT="30")
    with Receiver(delay_s=10) as slow, Receiver() as fast, platform.client() as api:
        source = api.post("/v1/sources", json={"name": "s"}).json()
        slow_ep = api.post("/v1/endpoints", json={"url": slow.url}).json()["id"]
        fast_ep = api.post("/v1/endpoints", json={"url": fast.url, "options": {"max_in_flight": 8}}).json()["id"]
        api.post("/v1/routes", json={"endpoint_ids": [slow_ep, fast_ep]}).raise_for_status()
        started = time.monotonic()
        for n in range(12):
            send(platform, source["id"], source["secret"], {"type": "t", "n": n})
        fast.wait_for(lambda r: len(r) == 12, timeout=30)
        elapsed = time.monotonic() - started
        # The slow receiver holds two slots for 10 s at a time; the fast one never waits for it.
        # (Without the per-endpoint cap the slow deliveries fill all 8 slots and this takes > 10 s.)
        assert elapsed < 6, elapsed
        assert len(slow.requests) <= 2
        bad = api.post("/v1/endpoints", json={"url": fast.url, "options": {"max_in_flight": 0}})
        assert bad.status_code == 400 and "max_in_flight" in bad.json()["error"]["message"]


def test_private_destinations_are_refused_at_creation_unless_allowed(platform_factory) -> None:
    platform = platform_factory(SWITCHBOARD_DESTINATION_ALLOWLIST="")
    with platform.client() as api:
        for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/",
                    "http://localhost/x", "http://[::1]/x"):
            reply = api.post("/v1/endpoints", json={"url": url})
            assert reply.status_code == 400 and "refused" in reply.json()["error"]["message"], url


def test_the_allowlist_admits_its_networks_only(platform) -> None:
    # The default test platform allows 127.0.0.0/8 and nothing else.
    with platform.client() as api:
        assert api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}).status_code == 201
        for url in ("http://10.0.0.1/", "http://169.254.169.254/latest/meta-data", "http://[::1]/x"):
            reply = api.post("/v1/endpoints", json={"url": url})
            assert reply.status_code == 400 and "refused" in reply.json()["error"]["message"], url


def test_an_endpoint_test_event_takes_the_normal_path(platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()
        sent = api.post(f"/v1/endpoints/{endpoint['id']}/test")
        assert sent.status_code == 202
        # Followed at once: stored (pending) before it is queued, not when its first attempt is recorded.
        assert api.get(f"/v1/deliveries/{sent.json()['delivery_id']}").json()["status"] in ("pending", "succeeded")
        [request] = receiver.wait_for(lambda r: len(r) == 1)
        assert request.headers["x-switchboard-event-type"] == "switchboard.test"
        assert request.headers["webhook-id"] == sent.json()["delivery_id"]
        deadline = time.monotonic() + 10
        while api.get(f"/v1/deliveries/{sent.json()['delivery_id']}").json().get("status") != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert api.post("/v1/endpoints/ep_00000000000000000000000000000000/test").status_code == 404
