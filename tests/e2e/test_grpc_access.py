"""Authenticated gRPC on the running platform: every RPC of every service refuses a caller without a
credential, an API key without the method's scope, and a key of another tenant; an API key with the
scope works in its own tenant only; the services' token works; health and reflection stay open."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from switchboard.errors import RateLimited
from switchboard.masterkey import service_token
from switchboard.rpc import error_from_status
from switchboard.rpc_access import method_access  # loads every service's descriptors
from switchboard.settings import Settings
from switchboard.transcoding import SERVICES
from switchboard.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    delivery_pb2,
    delivery_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tests.platform_runner import Platform

pytestmark = pytest.mark.e2e



def rpcs() -> Iterator[tuple[str, str, type]]:
    """(process, method path, request class) of every RPC the platform serves."""
    pool = descriptor_pool.Default()
    for process, name in SERVICES.items():
        for method in pool.FindServiceByName(f"switchboard.v1.{name}").methods:
            yield process, f"/switchboard.v1.{name}/{method.name}", GetMessageClass(method.input_type)


def call(platform: Platform, process: str, path: str, request, key: str | None) -> grpc.StatusCode:
    """The status code of one call (OK or the refusal), as any gRPC client sees it."""
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.insecure_channel(platform.grpc_target(process)) as channel:
        method = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                     response_deserializer=lambda raw: raw)
        try:
            method(request, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def tenant_with_keys(platform: Platform, name: str) -> tuple[str, dict[str, str]]:
    """A tenant made with the service token, and a key of each scope."""
    with platform.service_channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        tenant = stub.CreateTenant(auth_pb2.CreateTenantRequest(name=name), timeout=10)
        keys = {scope: stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(tenant_id=tenant.id, name=scope,
                                                                      scopes=[scope]), timeout=10).secret
                for scope in ("read", "admin", "events:publish")}
    return tenant.id, keys


def test_every_rpc_refuses_a_missing_wrong_scope_or_cross_tenant_key(platform: Platform) -> None:
    mine, keys = tenant_with_keys(platform, "mine")
    theirs, _ = tenant_with_keys(platform, "theirs")
    access = method_access(f"switchboard.v1.{name}" for name in SERVICES.values())
    refused: dict[str, set[grpc.StatusCode]] = {}
    for process, path, request_class in rpcs():
        codes = {
            "missing": call(platform, process, path, request_class(), None),
            "malformed": call(platform, process, path, request_class(), "not-a-key"),
            "unknown key": call(platform, process, path, request_class(), "sb_live_" + "x" * 40),
        }
        rule = access[path]
        if rule.scope is None:  # internal: no API key at all
            codes["admin key on an internal method"] = call(platform, process, path, request_class(), keys["admin"])
        elif rule.scope != "read":
            codes["read key"] = call(platform, process, path, request_class(), keys["read"])
        if rule.scope is not None:
            # The request names the other tenant: refused before the servicer sees it.
            request = request_class()
            holder = request
            for name in rule.tenant_path[:-1]:
                holder = getattr(holder, name)
            setattr(holder, rule.tenant_path[-1], theirs)
            codes["cross-tenant"] = call(platform, process, path, request, keys["admin"])
        for case, code in codes.items():
            expected = grpc.StatusCode.UNAUTHENTICATED if case in ("missing", "malformed", "unknown key") \
                else grpc.StatusCode.PERMISSION_DENIED
            if code is not expected:
                refused.setdefault(f"{path} {case}", set()).add(code)
    assert refused == {}, refused
    assert mine != theirs


def test_an_api_key_works_over_grpc_in_its_own_tenant_only(platform: Platform) -> None:
    mine, keys = tenant_with_keys(platform, "mine")
    theirs, their_keys = tenant_with_keys(platform, "theirs")
    admin = (("authorization", f"Bearer {keys['admin']}"),)
    reader = (("authorization", f"Bearer {keys['read']}"),)
    with grpc.insecure_channel(platform.grpc_target("delivery")) as channel:
        delivery = delivery_pb2_grpc.DeliveryServiceStub(channel)
        # No tenant in the request: it comes from the key.
        created = delivery.CreateEndpoint(delivery_pb2.CreateEndpointRequest(url="http://127.0.0.1:9/hook"),
                                          metadata=admin, timeout=10)
        assert created.endpoint.tenant_id == mine
        listed = delivery.ListEndpoints(delivery_pb2.ListEndpointsRequest(), metadata=reader, timeout=10)
        assert [e.id for e in listed.endpoints] == [created.endpoint.id]
        # The same request with the other tenant's key: not theirs to see.
        other = (("authorization", f"Bearer {their_keys['admin']}"),)
        assert not delivery.ListEndpoints(delivery_pb2.ListEndpointsRequest(), metadata=other, timeout=10).endpoints
        with pytest.raises(grpc.RpcError) as hidden:
            delivery.GetEndpoint(delivery_pb2.GetEndpointRequest(id=created.endpoint.id), metadata=other,
                                 timeout=10)
        assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
    # A route or replay may not name another tenant's source, whoever asks (RouterService checks it).
    with grpc.insecure_channel(platform.grpc_target("ingest")) as channel:
        their_source = ingest_pb2_grpc.IngestServiceStub(channel).CreateSource(
            ingest_pb2.CreateSourceRequest(name="theirs"), metadata=other, timeout=10).source.id
    with grpc.insecure_channel(platform.grpc_target("router")) as channel:
        router = router_pb2_grpc.RouterServiceStub(channel)
        with pytest.raises(grpc.RpcError) as foreign:
            router.CreateRoute(router_pb2.RouteSpecRequest(spec=router_pb2.RouteSpec(
                source_id=their_source, endpoint_ids=[created.endpoint.id])), metadata=admin, timeout=10)
        assert foreign.value.code() is grpc.StatusCode.NOT_FOUND
    with platform.client(keys["admin"]) as api:
        assert api.post("/v1/routes", json={"source_id": their_source, "endpoint_ids": [created.endpoint.id]}
                        ).status_code == 404
        assert api.post("/v1/replays", json={"since": "2026-01-01T00:00:00Z", "source_id": their_source}
                        ).status_code == 404
    with grpc.insecure_channel(platform.grpc_target("auth")) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        # A tenant admin manages its own keys; the audit log names the key that asked, not the request.
        issued = auth.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="ci", scopes=["read"], actor="someone"),
                                   metadata=admin, timeout=10)
        assert issued.key.tenant_id == mine
        entries = auth.ListAudit(auth_pb2.ListAuditRequest(limit=5), metadata=admin, timeout=10).entries
        created_by = {e.resource: e.actor for e in entries if e.action == "key.create"}
        with platform.service_channel("auth") as service:
            admin_key_id = auth_pb2_grpc.AuthServiceStub(service).VerifyApiKey(
                auth_pb2.VerifyApiKeyRequest(key=keys["admin"]), timeout=10).key_id
        assert created_by[issued.key.id] == admin_key_id
        # A mutation of another service made with the key is in the audit log too, as over REST.
        audited = {(e.action, e.resource): e.actor for e in auth.ListAudit(
            auth_pb2.ListAuditRequest(limit=20), metadata=admin, timeout=10).entries}
        assert audited[("endpoint.create", created.endpoint.id)] == admin_key_id
        assert auth.GetTenant(auth_pb2.GetTenantRequest(), metadata=reader, timeout=10).id == mine
        assert theirs != mine


def test_health_and_reflection_need_no_credential_and_the_service_token_reaches_every_service(
        platform: Platform) -> None:
    for process, name in SERVICES.items():
        with grpc.insecure_channel(platform.grpc_target(process)) as channel:
            names = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert f"switchboard.v1.{name}" in names and "grpc.health.v1.Health" in names, process
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=f"switchboard.v1.{name}"), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    token = service_token(Settings(state_dir=platform.state_dir))
    _, keys = tenant_with_keys(platform, "verified")
    # Empty requests: refused for what they lack (invalid or not found), never for who sent them
    # (VerifyApiKey answers UNAUTHENTICATED for the key it is asked about: it gets a real one).
    requests = {"/switchboard.v1.AuthService/VerifyApiKey": auth_pb2.VerifyApiKeyRequest(key=keys["read"])}
    let_through = {path: call(platform, process, path, requests.get(path) or request_class(), token)
                   for process, path, request_class in rpcs()}
    assert not {path: code for path, code in let_through.items()
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)}
    assert let_through["/switchboard.v1.AuthService/ListTenants"] is grpc.StatusCode.OK
    assert let_through["/switchboard.v1.AuthService/VerifyApiKey"] is grpc.StatusCode.OK


def test_an_api_key_over_its_rate_on_grpc_is_told_when_to_come_back(platform_factory) -> None:
    platform = platform_factory(SWITCHBOARD_KEY_RATE="0.5", SWITCHBOARD_KEY_BURST="3")
    _, keys = tenant_with_keys(platform, "busy")
    reader = (("authorization", f"Bearer {keys['read']}"),)
    with grpc.insecure_channel(platform.grpc_target("delivery")) as channel:
        delivery = delivery_pb2_grpc.DeliveryServiceStub(channel)
        for _ in range(3):
            delivery.ListEndpoints(delivery_pb2.ListEndpointsRequest(), metadata=reader, timeout=10)
        with pytest.raises(grpc.RpcError) as limited:
            delivery.ListEndpoints(delivery_pb2.ListEndpointsRequest(), metadata=reader, timeout=10)
    assert limited.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    error = error_from_status(limited.value.code(), limited.value.details(), limited.value.trailing_metadata())
    assert isinstance(error, RateLimited) and 0 < error.retry_after_s <= 2
