"""The typed gRPC contract on the running platform, as an internal team uses it with an API key:
endpoints with typed options and a config Struct, routes with a typed spec changed through a FieldMask,
sources' whole lifecycle and PublishEvent on IngestService, an extraction schema as a Struct; and no
JSON packed into strings but event bodies, which stay exact."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import descriptor_pool, struct_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from switchboard.protojson import plain, struct, to_message
from switchboard.rpc_access import method_access  # noqa: F401  (loads every service's descriptors)
from switchboard.v1 import (
    ai_pb2,
    ai_pb2_grpc,
    delivery_pb2,
    delivery_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tests.e2e.test_grpc_access import tenant_with_keys
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

# Event bodies travel as their JSON text: a Struct would hold numbers as doubles (ids above 2**53 rounded).
EXACT_BODIES = {"switchboard.v1.AIEvent.payload_json", "switchboard.v1.PublishEventRequest.payload_json",
                "switchboard.v1.GivenEvent.payload_json", "switchboard.v1.Rendered.payload_json",
                "switchboard.v1.Event.payload_json", "switchboard.v1.SimulatedDelivery.payload_json",
                # A corrected event as a training row (RouterService.ListCorrections, internal).
                "switchboard.v1.Correction.payload_json"}


def test_no_json_is_packed_into_strings_but_exact_event_bodies() -> None:
    pool = descriptor_pool.Default()
    packed = set()
    for name in ("ingest", "router", "ai", "delivery", "auth", "analytics"):
        for message in pool.FindFileByName(f"switchboard/v1/{name}.proto").message_types_by_name.values():
            for field in message.fields:
                if field.name.endswith("_json") or field.name == "json":
                    packed.add(field.full_name)
    assert packed == EXACT_BODIES


def test_an_internal_team_runs_sources_endpoints_routes_and_events_over_grpc(platform: Platform) -> None:
    _, keys = tenant_with_keys(platform, "team")
    admin = (("authorization", f"Bearer {keys['admin']}"),)
    publisher = (("authorization", f"Bearer {keys['events:publish']}"),)
    with Receiver() as receiver, grpc.insecure_channel(platform.grpc_target("ingest")) as ingest_channel, \
            grpc.insecure_channel(platform.grpc_target("delivery")) as delivery_channel, \
            grpc.insecure_channel(platform.grpc_target("router")) as router_channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(ingest_channel)
        delivery = delivery_pb2_grpc.DeliveryServiceStub(delivery_channel)
        router = router_pb2_grpc.RouterServiceStub(router_channel)

        # A source, all five operations.
        created = ingest.CreateSource(ingest_pb2.CreateSourceRequest(
            name="orders", type="generic", config=struct({"event_type_field": "type"})), metadata=admin, timeout=10)
        source_id = created.source.id
        assert plain(created.source.config)["event_type_field"] == "type" and created.secret
        changed = ingest.UpdateSource(ingest_pb2.UpdateSourceRequest(
            id=source_id, name="orders-v2", allowed_ips=["127.0.0.0/8"]),
            metadata=admin, timeout=10)
        assert (changed.name, list(changed.allowed_ips)) == ("orders-v2", ["127.0.0.0/8"])
        assert plain(changed.config) == plain(created.source.config)  # not set: kept
        assert ingest.DisableSource(ingest_pb2.GetSourceRequest(id=source_id),
                                    metadata=admin, timeout=10).HasField("disabled_at")
        rotated = ingest.RotateSourceSecret(ingest_pb2.RotateSourceSecretRequest(id=source_id, grace_seconds=60),
                                            metadata=admin, timeout=10)
        assert rotated.secret != created.secret and rotated.source.HasField("previous_secret_expires_at")
        assert ingest.DeleteSource(ingest_pb2.GetSourceRequest(id=source_id), metadata=admin, timeout=10).id == \
            source_id
        with pytest.raises(grpc.RpcError) as gone:
            ingest.GetSource(ingest_pb2.GetSourceRequest(id=source_id), metadata=admin, timeout=10)
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND

        # An endpoint with typed options and its destination's config.
        endpoint = delivery.CreateEndpoint(delivery_pb2.CreateEndpointRequest(
            url=receiver.url, config=struct({"headers": {"X-Team": "ops"}}),
            options=delivery_pb2.DeliveryOptions(timeout_seconds=5, retry=delivery_pb2.RetryOptions(
                max_attempts=3, retry_statuses=to_message([503], struct_pb2.ListValue)))),
            metadata=admin, timeout=10).endpoint
        assert endpoint.options.timeout_seconds == 5 and endpoint.options.retry.max_attempts == 3
        assert plain(endpoint.options.retry)["retry_statuses"] == [503]
        assert not endpoint.options.HasField("max_in_flight")  # unset: the deployment's default
        assert plain(endpoint.config) == {"headers": {"X-Team": "ops"}}
        with pytest.raises(grpc.RpcError) as refused:
            delivery.CreateEndpoint(delivery_pb2.CreateEndpointRequest(
                url=receiver.url, options=delivery_pb2.DeliveryOptions(max_in_flight=0)), metadata=admin, timeout=10)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        # A route with a typed spec; an update changes what its mask names, clearing what is named but unset.
        route = router.CreateRoute(router_pb2.RouteSpecRequest(spec=router_pb2.RouteSpec(
            name="big orders", event_types=["order.*"], endpoint_ids=[endpoint.id],
            filters=router_pb2.RouteFilters(all=[router_pb2.PayloadCondition(
                path="$.amount", op="gt", value=to_message(100, struct_pb2.Value))]))), metadata=admin, timeout=10)
        assert plain(route.filters) == {"all": [{"path": "$.amount", "op": "gt", "value": 100}]} and route.enabled
        updated = router.UpdateRoute(router_pb2.RouteSpecRequest(
            id=route.id, spec=router_pb2.RouteSpec(name="all orders", enabled=False),
            update_mask=FieldMask(paths=["name", "filters", "enabled"])), metadata=admin, timeout=10)
        assert (updated.name, updated.enabled, updated.HasField("filters")) == ("all orders", False, False)
        assert list(updated.event_types) == ["order.*"]  # not in the mask: kept
        router.UpdateRoute(router_pb2.RouteSpecRequest(id=route.id, spec=router_pb2.RouteSpec(enabled=True),
                                                       update_mask=FieldMask(paths=["enabled"])),
                           metadata=admin, timeout=10)
        with pytest.raises(grpc.RpcError) as unknown:
            router.UpdateRoute(router_pb2.RouteSpecRequest(id=route.id, update_mask=FieldMask(paths=["colour"])),
                               metadata=admin, timeout=10)
        assert unknown.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        # An event published over gRPC keeps its body exact, big integers included.
        body = {"id": 2 ** 60 + 1, "amount": 250, "note": "café"}
        published = ingest.PublishEvent(ingest_pb2.PublishEventRequest(
            type="order.created", payload_json=json.dumps(body), idempotency_key="order-1"),
            metadata=publisher, timeout=10)
        again = ingest.PublishEvent(ingest_pb2.PublishEventRequest(
            type="order.created", payload_json=json.dumps(body), idempotency_key="order-1"),
            metadata=publisher, timeout=10)
        assert again.event_id == published.event_id and again.duplicate
        for bad in ({"payload_json": '{"a": "\\u0000"}'}, {"payload_json": "{nope"}, {"payload_json": ""},
                    {"payload_json": "{}", "type": ""}):
            with pytest.raises(grpc.RpcError) as refused_event:
                ingest.PublishEvent(ingest_pb2.PublishEventRequest(**{"type": "t", **bad}), metadata=publisher,
                                    timeout=10)
            assert refused_event.value.code() is grpc.StatusCode.INVALID_ARGUMENT, bad
        delivered = receiver.wait_for(lambda got: len(got) >= 1, timeout=30)
        assert json.loads(delivered[0].body) == body
        event = router.GetEvent(router_pb2.GetEventRequest(id=published.event_id), metadata=admin, timeout=10)
        assert json.loads(event.payload_json) == body
        assert plain(event.routing)["deliveries"][0]["endpoint_id"] == endpoint.id


def test_an_extraction_schema_and_its_answer_are_structs(platform: Platform) -> None:
    _, keys = tenant_with_keys(platform, "extract")
    admin = (("authorization", f"Bearer {keys['admin']}"),)
    schema = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
    with grpc.insecure_channel(platform.grpc_target("ai")) as channel:
        answer = ai_pb2_grpc.AIServiceStub(channel).Extract(ai_pb2.ExtractRequest(
            event=ai_pb2.AIEvent(event_type="order.created", payload_json=json.dumps({"order_id": "A-17"})),
            schema=struct(schema)), metadata=admin, timeout=30)
    assert plain(answer.data) == {"order_id": "A-17"} and answer.meta.provider == "local"
