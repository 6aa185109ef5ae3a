"""The thin slice end to end through real processes: a signed webhook in,
a Standard Webhooks-signed POST out, every attempt recorded."""

from __future__ import annotations

import time
from datetime import datetime

import grpc
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from switchboard.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.slice import create_slice, sign_raw, signed
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def wait_for_delivery(api: httpx.Client, event_id: str, status: str = "succeeded", timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = api.get(f"/v1/events/{event_id}")
        if reply.status_code == 200 and reply.json()["deliveries"] and \
                all(d["status"] == status for d in reply.json()["deliveries"]):
            return reply.json()
        time.sleep(0.1)
    raise AssertionError(f"event {event_id} not {status}: {api.get(f'/v1/events/{event_id}').text}")


def test_signed_event_is_delivered_with_a_standard_webhooks_signature(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        payload = {"type": "order.created", "order": {"id": 42, "total": "19.99"}}
        body, headers = signed(s.source_secret, payload)

        accepted = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers)

        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]
        [request] = receiver.wait_for(lambda r: len(r) == 1)
        # The receiver's own reference library accepts our signature...
        verified = Webhook(s.endpoint_secret).verify(request.body, request.headers)
        assert verified == payload
        assert request.headers["webhook-id"] == f"{event_id}:{s.endpoint_id}"
        # ...and rejects it under any other secret.
        with pytest.raises(Exception):
            Webhook("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)

        event = wait_for_delivery(api, event_id)
        assert event["type"] == "order.created"
        assert event["payload"] == payload
        [delivery] = event["deliveries"]
        [attempt] = delivery["attempts"]
        assert attempt["outcome"] == "succeeded" and attempt["status_code"] == 200
        assert attempt["latency_ms"] > 0
        # Received, then routed (the router's decision), then sent.
        received, routed, sent = (datetime.fromisoformat(t.replace("Z", "+00:00"))
                                  for t in (event["received_at"], event["routed_at"], attempt["started_at"]))
        assert received <= routed <= sent


def test_failed_attempts_are_recorded_and_retried_until_success(platform: Platform) -> None:
    with Receiver(status=503) as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        body, headers = signed(s.source_secret, {"type": "invoice.paid"})
        event_id = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers).json()["event_id"]
        receiver.wait_for(lambda r: len(r) >= 2)
        receiver.status = 200
        event = wait_for_delivery(api, event_id)
        attempts = event["deliveries"][0]["attempts"]
        assert [a["outcome"] for a in attempts[:-1]] == ["retrying"] * (len(attempts) - 1)
        assert attempts[0]["status_code"] == 503
        assert attempts[-1]["outcome"] == "succeeded"
        assert [a["number"] for a in attempts] == list(range(1, len(attempts) + 1))
        # Every retry carried the same webhook-id, so the receiver can de-duplicate.
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_provider_retries_of_one_delivery_collapse_into_one_event(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url, config={"id_header": "x-delivery-id"})
        body, headers = signed(s.source_secret, {"n": 1})
        headers["x-delivery-id"] = "provider-delivery-7"
        first = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers)
        second = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers)
        assert first.status_code == second.status_code == 202
        assert first.json()["event_id"] == second.json()["event_id"]
        assert second.json()["duplicate"] is True
        wait_for_delivery(api, first.json()["event_id"])
        time.sleep(1.0)
        assert len(receiver.requests) == 1


def test_bad_input_is_rejected_with_json_errors_and_nothing_is_published(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        url = f"{platform.edge_url}/in/{s.source_id}"
        body, headers = signed(s.source_secret, {"type": "x"})

        wrong = httpx.post(url, content=body, headers={**headers, "x-signature": "0" * 64})
        missing = httpx.post(url, content=body, headers={"content-type": "application/json"})
        tampered = httpx.post(url, content=body + b" ", headers=headers)
        oversized_body = b"{" + b" " * (1024 * 1024) + b"}"
        oversized = httpx.post(url, content=oversized_body, headers=signed(s.source_secret, {})[1])
        not_json = httpx.post(url, content=b"{not json",
                              headers={"x-signature": sign_raw(s.source_secret, b"{not json")})
        unknown_source = httpx.post(f"{platform.edge_url}/in/src_doesnotexist", content=body, headers=headers)

        for reply, status, code in [
            (wrong, 401, "invalid_signature"), (missing, 401, "invalid_signature"),
            (tampered, 401, "invalid_signature"), (oversized, 413, "payload_too_large"),
            (not_json, 400, "malformed_request"), (unknown_source, 404, "not_found"),
        ]:
            assert reply.status_code == status, reply.text
            assert reply.json()["error"]["code"] == code
            assert reply.json()["error"]["message"]

        # A good request afterwards is the only thing that ever reaches the receiver.
        good = httpx.post(url, content=body, headers=headers)
        assert good.status_code == 202
        receiver.wait_for(lambda r: len(r) >= 1)
        time.sleep(1.0)
        assert len(receiver.requests) == 1


def test_rest_api_requires_a_key_and_scopes_every_query_to_its_tenant(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        body, headers = signed(s.source_secret, {"type": "a"})
        event_id = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers).json()["event_id"]
        wait_for_delivery(api, event_id)

        assert httpx.get(f"{platform.edge_url}/v1/sources").status_code == 401
        assert httpx.get(f"{platform.edge_url}/v1/sources", headers={"Authorization": "Bearer nope"}).json() == {
            "error": {"code": "unauthenticated", "message": "malformed API key"}}

        # A second tenant, made over AuthService's gRPC API, sees none of the first's resources.
        with platform.service_channel("auth") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            tenant = stub.CreateTenant(auth_pb2.CreateTenantRequest(name="other"), timeout=5)
            other_key = stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(
                tenant_id=tenant.id, name="other", scopes=["admin"]), timeout=5).secret
            reader_key = stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(
                tenant_id=tenant.id, name="reader", scopes=["read"]), timeout=5).secret
        with platform.client(other_key) as other:
            for path in (f"/v1/sources/{s.source_id}", f"/v1/endpoints/{s.endpoint_id}", f"/v1/events/{event_id}"):
                reply = other.get(path)
                assert reply.status_code == 404, (path, reply.text)
                assert reply.json()["error"]["code"] == "not_found"
            assert other.get("/v1/sources").json() == {"data": []}
            assert other.get("/v1/routes").json() == {"data": []}
            # Routing another tenant's endpoint or source is refused as not found too.
            assert other.post("/v1/routes", json={"endpoint_ids": [s.endpoint_id]}).status_code == 404
            ep = other.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
            assert other.post("/v1/routes", json={"endpoint_ids": [ep], "source_id": s.source_id}).status_code == 404
        with platform.client(reader_key) as reader:
            denied = reader.post("/v1/sources", json={"name": "x"})
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
            assert reader.get("/v1/sources").status_code == 200


def test_openapi_document_describes_the_api(platform: Platform) -> None:
    document = httpx.get(f"{platform.edge_url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/in/{source_id}", "/v1/sources", "/v1/endpoints", "/v1/routes", "/v1/events/{event_id}"} <= set(
        document["paths"])
    assert document["paths"]["/v1/sources"]["post"]["x-required-scope"] == "admin"
    missing = httpx.get(f"{platform.edge_url}/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = httpx.delete(f"{platform.edge_url}/v1/sources")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"



def test_a_body_just_under_the_size_limit_is_accepted_and_delivered(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        payload = {"type": "big", "blob": "x" * (1024 * 1024 - 100)}
        body, headers = signed(s.source_secret, payload)
        assert 1024 * 1024 - 100 < len(body) <= 1024 * 1024
        accepted = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers, timeout=30)
        assert accepted.status_code == 202, accepted.text
        [request] = receiver.wait_for(lambda r: len(r) == 1)
        assert len(request.body) >= len(payload["blob"])


def test_every_service_serves_health_and_reflection_and_nothing_embedded_started(platform: Platform) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    expected = {"ingest": "IngestService", "router": "RouterService", "ai": "AIService",
                "delivery": "DeliveryService", "auth": "AuthService", "analytics": "AnalyticsService"}
    for service, grpc_name in expected.items():
        with grpc.insecure_channel(platform.grpc_target(service)) as channel:
            names = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert {f"switchboard.v1.{grpc_name}", "grpc.health.v1.Health"} <= names, service
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=f"switchboard.v1.{grpc_name}"), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    # SWITCHBOARD_NATS_URL and _DATABASE_URL were set: no embedded server, no data of its own.
    assert not (platform.state_dir / "nats").exists()
    assert not (platform.state_dir / "postgres").exists()


def test_unstorable_or_strange_input_gets_a_json_4xx_never_a_500(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        nul_body = b'{"type": "x", "a": "\\u0000"}'
        nul = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=nul_body,
                         headers={"x-signature": sign_raw(s.source_secret, nul_body)})
        assert nul.status_code == 400 and nul.json()["error"]["code"] == "malformed_request"

        for method, path, body, status in [
            ("POST", "/in/%00", b"{}", 404),
            ("GET", "/v1/sources/%00", None, 400),
            ("GET", "/v1/endpoints/%00", None, 400),
            ("GET", "/v1/events/%00", None, 400),
            ("POST", "/v1/sources", b'{"name": "a\\u0000"}', 400),
            ("POST", "/v1/sources", b'{"name": "\\ud800"}', 400),
            ("POST", "/v1/sources", b"[" * 100_000, 400),
            ("POST", "/v1/sources", b'{"name": 5}', 400),
            ("POST", "/v1/sources", b'{"name": "x", "config": []}', 400),
            ("POST", "/v1/sources", b'{"name": "x", "type": "nope"}', 400),
            ("POST", "/v1/endpoints", b'{"url": "ftp://x"}', 400),
            ("POST", "/v1/endpoints", b'{}', 400),
            ("POST", "/v1/routes", b'{"endpoint_ids": ["ep_\\u0000"]}', 400),
            ("POST", "/v1/routes", b'{"endpoint_ids": "ep_1"}', 400),
            ("POST", "/v1/routes", b'{"endpoint_ids": ["ep_00000000000000000000000000000000"]}', 404),
        ]:
            reply = api.request(method, path, content=body)
            assert reply.status_code == status, (path, body[:40] if body else None, reply.text)
            assert reply.json()["error"]["code"] and reply.json()["error"]["message"]


def test_receivers_get_the_exact_bytes_the_sender_sent(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        raw = b'{"type": "n", "big": 123456789012345678901234567890, "f": 1e9,  "s": "\\u00e9"}'
        reply = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=raw,
                           headers={"x-signature": sign_raw(s.source_secret, raw)})
        assert reply.status_code == 202
        [request] = receiver.wait_for(lambda r: len(r) == 1)
        assert request.body == raw
        Webhook(s.endpoint_secret).verify(request.body, request.headers)
