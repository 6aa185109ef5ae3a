"""The REST shape of the contract (switchboard/transcoding.py) and the schemas generated from it, without a
running platform: names, nulls, inline messages, exact JSON, masks, and answers that round-trip."""

from __future__ import annotations

from datetime import datetime, UTC

import pytest
from jsonschema import Draft202012Validator

from gateway.openapi import openapi_document
from switchboard.errors import InvalidRequest
from switchboard.protojson import struct
from switchboard.rpc import timestamp
from switchboard.transcoding import binding_for, bindings, from_rest, from_rest_answer, rest_request, to_rest
from switchboard.v1 import ai_pb2, analytics_pb2, delivery_pb2, ingest_pb2, router_pb2

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_every_route_is_one_rpc_and_names_its_path_fields_as_rest_does() -> None:
    routes = [(b.verb, b.path) for b in bindings()]
    assert len(routes) == len(set(routes)) == 68
    get_endpoint = binding_for("/switchboard.v1.DeliveryService/GetEndpoint")
    assert get_endpoint is not None and get_endpoint.path == "/v1/endpoints/{endpoint_id}"
    assert [ref.path for ref in get_endpoint.path_fields] == [("id",)]
    # Literal segments first: /v1/routes/simulate is not taken for a route id.
    paths = [b.path for b in bindings()]
    assert paths.index("/v1/routes/simulate") < paths.index("/v1/routes/{route_id}")


def test_answers_use_json_names_show_every_field_and_null_for_nullable_ones() -> None:
    answer = to_rest(delivery_pb2.ListDeliveriesResponse(deliveries=[delivery_pb2.Delivery(id="d1")]))
    assert answer["next_cursor"] is None and answer["data"][0]["id"] == "d1"
    assert answer["data"][0]["attempts"] == [] and answer["data"][0]["status"] == ""
    created = to_rest(ingest_pb2.CreateSourceResponse(
        source=ingest_pb2.Source(id="src_1", config=struct({"n": 5}), created_at=timestamp(NOW)), secret="s3"))
    # Inline: the source's fields beside the secret; a Struct's whole numbers as integers; nulls said.
    assert created["id"] == "src_1" and created["secret"] == "s3" and created["config"] == {"n": 5}
    assert created["rate_limit"] is None and created["disabled_at"] is None
    assert created["created_at"] == "2026-12-04T12:00:00Z"


def test_exact_json_text_is_shown_as_its_value_and_int64_as_numbers() -> None:
    event = to_rest(router_pb2.Event(id="evt_1", payload_json='{"id": 1152921504606846977}'))
    assert event["payload"] == {"id": 2**60 + 1} and "payload_json" not in event
    stats = to_rest(analytics_pb2.Overview(stats=analytics_pb2.Stats(attempts=2**40, latency=analytics_pb2.Latency(
        p50_ms=1.5)), pending_by_reason={"queued": 3}))
    assert stats["attempts"] == 2**40 and stats["latency_ms"]["p50"] == 1.5 and stats["pending_by_reason"] == {
        "queued": 3}


def test_requests_refuse_unknown_fields_take_lenient_times_and_null_as_not_given() -> None:
    with pytest.raises(InvalidRequest) as unknown:
        from_rest({"colour": "red"}, delivery_pb2.CreateEndpointRequest())
    assert unknown.value.field == "colour"
    replay = from_rest({"since": "2026-12-04T12:00:00", "source_id": None}, router_pb2.CreateReplayRequest())
    assert isinstance(replay, router_pb2.CreateReplayRequest)
    assert replay.since == timestamp(NOW) and replay.source_id == ""
    keys = from_rest({"provider_keys": {"anthropic": None}}, ai_pb2.UpdateAISettingsRequest())
    assert isinstance(keys, ai_pb2.UpdateAISettingsRequest)
    assert dict(keys.provider_keys) == {"anthropic": ""}  # null: remove it
    with pytest.raises(InvalidRequest):
        from_rest({"url": 5}, delivery_pb2.CreateEndpointRequest())


def test_the_client_sends_a_patch_as_its_mask_says_and_reads_answers_back_whole() -> None:
    binding = binding_for("/switchboard.v1.DeliveryService/UpdateEndpoint")
    assert binding is not None
    request = delivery_pb2.UpdateEndpointRequest(id="ep/1", description="x")
    request.update_mask.paths.extend(["description", "event_types"])
    path, query, body = rest_request(binding, request)
    # event_types named in the mask but unset: sent as null, which clears it.
    assert path == "/v1/endpoints/ep%2F1" and query == {} and body == {"description": "x", "event_types": None}
    listing = binding_for("/switchboard.v1.DeliveryService/ListDeliveries")
    assert listing is not None
    _, query, body = rest_request(listing, delivery_pb2.ListDeliveriesRequest(limit=5, since=timestamp(NOW)))
    assert query == {"limit": "5", "since": "2026-12-04T12:00:00Z"} and body is None
    for message in (ingest_pb2.CreateSourceResponse(source=ingest_pb2.Source(id="src_1", config=struct({"a": 1}),
                                                                             created_at=timestamp(NOW)), secret="s"),
                    router_pb2.Simulation(decision=struct({"routes": [], "ai": None}), deliveries=[
                        router_pb2.SimulatedDelivery(route_id="rt", payload_json='{"a":1}', body="b")]),
                    router_pb2.Rendered(ok=False, error="boom")):
        assert from_rest_answer(to_rest(message), type(message)()) == message


def test_every_answer_the_contract_can_give_fits_the_published_schema() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    samples = {
        "Endpoint": delivery_pb2.Endpoint(id="ep", options=delivery_pb2.DeliveryOptions(max_in_flight=2)),
        "Source": ingest_pb2.Source(id="src", rate_limit=ingest_pb2.SourceRateLimit(per_second=1, burst=2)),
        "Event": router_pb2.Event(id="evt", payload_json="[1]", author="bot"),
        "Simulation": router_pb2.Simulation(decision=struct({"routes": []})),
        "Overview": analytics_pb2.Overview(),
        "Rendered": router_pb2.Rendered(ok=True, payload_json="{}", body="{}"),
    }
    for name, message in samples.items():
        validator = Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}})
        assert not list(validator.iter_errors(to_rest(message))), name
