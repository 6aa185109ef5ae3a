"""REST is transcoded from the contract: every RPC with a REST binding, called through the Python client over
gRPC and over REST, answers the same (reads: equal messages; changes: equal but for ids, times and secrets;
refusals: the same error and code)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, UTC
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from switchboard.client import Client
from switchboard.client_methods_gen import snake
from switchboard.errors import SwitchboardError
from switchboard.transcoding import bindings
from tests.e2e.test_client import targets
from tests.e2e.test_grpc_access import tenant_with_keys
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

# What differs between two resources made alike: their ids, times, secrets and what is derived from them.
_OWN = ("id", "secret", "ingest_url", "version", "cached", "endpoint_ids", "event_id", "delivery_id", "token", "url")


def _normal(value: Any, own: bool = False) -> Any:
    """``value`` with JSON text compared as JSON (REST carries it as a value: its spacing is not kept), and
    without what differs between two resources made alike unless ``own``."""
    if isinstance(value, dict):
        return {k: json.loads(v) if k.endswith("_json") and v else _normal(v, own) for k, v in value.items()
                if own or (k not in _OWN and not k.endswith(("_at", "_id")))}
    if isinstance(value, list):
        return [_normal(v, own) for v in value]
    return value


def _shown(message: Any, own: bool = False) -> Any:
    return _normal(MessageToDict(message, preserving_proto_field_name=True), own)


def test_every_rest_binding_answers_as_its_rpc_does(platform: Platform) -> None:
    _, keys = tenant_with_keys(platform, "both-ways")
    called: set[str] = set()
    with Receiver() as receiver, Client(keys["admin"], targets=targets(platform)) as over_grpc, \
            Client(keys["admin"], rest_url=platform.edge_url) as over_rest:

        def same(name: str, **fields: Any) -> Any:
            """A read: the same message both ways."""
            called.add(name)
            answer = getattr(over_grpc, name)(**fields)
            assert _shown(getattr(over_rest, name)(**fields), own=True) == _shown(answer, own=True), name
            return answer

        def alike(name: str, grpc_fields: dict[str, Any], rest_fields: dict[str, Any] | None = None) -> tuple:
            """A change: each transport makes its own, alike but for ids, times and secrets."""
            called.add(name)
            by_grpc = getattr(over_grpc, name)(**grpc_fields)
            by_rest = getattr(over_rest, name)(**(grpc_fields if rest_fields is None else rest_fields))
            assert _shown(by_grpc) == _shown(by_rest), name
            return by_grpc, by_rest

        def refused(name: str, **fields: Any) -> None:
            """A refusal: the same error, with the same code, both ways."""
            called.add(name)
            errors = []
            for client in (over_grpc, over_rest):
                with pytest.raises(SwitchboardError) as caught:
                    getattr(client, name)(**fields)
                errors.append((type(caught.value), caught.value.code))
            assert errors[0] == errors[1], (name, errors)

        # Sources.
        g, r = alike("create_source", {"name": "shop", "type": "generic", "allowed_ips": ["127.0.0.0/8"],
                                       "config": {"event_type_field": "type"},
                                       "rate_limit": {"per_second": 5, "burst": 10}})
        assert g.source.rate_limit.burst == r.source.rate_limit.burst == 10
        sources = (g.source.id, r.source.id)
        same("get_source", id=sources[0])
        same("list_sources")
        alike("update_source", {"id": sources[0], "name": "shop-2", "allowed_ips": []},
              {"id": sources[1], "name": "shop-2", "allowed_ips": []})
        for name in ("rotate_source_secret", "disable_source", "enable_source"):
            alike(name, {"id": sources[0]}, {"id": sources[1]})

        # Endpoints.
        g, r = alike("create_endpoint", {"url": receiver.url, "event_types": ["order.*"],
                                         "options": {"timeout_seconds": 5, "retry": {"max_attempts": 2}}})
        endpoints = (g.endpoint.id, r.endpoint.id)
        same("get_endpoint", id=endpoints[0])
        same("list_endpoints")
        same("get_endpoint_secret", id=endpoints[0])
        alike("update_endpoint", {"id": endpoints[0], "description": "orders", "event_types": ["order.*", "x"]},
              {"id": endpoints[1], "description": "orders", "event_types": ["order.*", "x"]})
        alike("rotate_endpoint_secret", {"id": endpoints[0], "grace_seconds": 30},
              {"id": endpoints[1], "grace_seconds": 30})
        alike("disable_endpoint", {"id": endpoints[0], "reason": "maintenance"},
              {"id": endpoints[1], "reason": "maintenance"})
        for name in ("enable_endpoint", "test_endpoint"):
            alike(name, {"id": endpoints[0]}, {"id": endpoints[1]})

        # Routes and templates.
        spec = {"name": "orders", "event_types": ["order.*"], "endpoint_ids": [endpoints[0]],
                "filters": {"all": [{"path": "$.n", "op": "gte", "value": 0}]}}
        g, r = alike("create_route", {"spec": spec})
        same("get_route", id=g.id)
        same("list_routes")
        alike("update_route", {"id": g.id, "spec": {"position": 5}, "update_mask": "position"},
              {"id": r.id, "spec": {"position": 5}, "update_mask": "position"})
        routes = (g.id, r.id)
        given = {"event": {"type": "order.created", "payload_json": '{"n": 1}'}}
        g, r = over_grpc.simulate_routes(**given), over_rest.simulate_routes(**given)
        called.add("simulate_routes")
        # REST shows a simulation flat (as it always has): the rendered deliveries stand where the decision's
        # planned ones are; everything else is the same.
        shown = [[_shown(d) for d in answer.deliveries]
                 for answer in (g, r)]
        assert shown[0] == shown[1] and shown[0]
        assert {k: v for k, v in g.decision.items() if k != "deliveries"} == \
            {k: v for k, v in r.decision.items() if k != "deliveries"}
        g, r = alike("create_template", {"name": "t", "source": '{"n": {{ payload.n }}}'})
        templates = (g.id, r.id)
        same("get_template", id=templates[0])
        same("list_templates")
        alike("update_template", {"id": templates[0], "name": "t2"}, {"id": templates[1], "name": "t2"})
        same("test_template", id=templates[0], sample={"type": "a", "payload_json": '{"n": 7}'})

        # Events and deliveries.
        g, r = alike("publish_event", {"type": "order.created", "payload_json": json.dumps({"n": 2 ** 60 + 1})})
        receiver.wait_for(lambda got: len(got) >= 4, timeout=30)  # two test events, two published ones
        deadline = time.monotonic() + 20
        while {d.status for d in over_grpc.list_deliveries(endpoint_id=endpoints[0]).deliveries} != {"succeeded"} \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        event = same("get_event", id=g.event_id)
        assert json.loads(event.payload_json) == {"n": 2 ** 60 + 1} and event.deliveries
        refused("retrain_model")  # no corrections yet: nothing to learn from
        # A correction of its labels: the same event both ways (the second replaces the first).
        alike("label_event", {"id": g.event_id, "category": "billing", "priority": "low"})
        same("get_label_accuracy", days=7)
        refused("label_event", id=g.event_id, category="no-such-category")
        same("list_events", type="order.*")
        same("list_deliveries", endpoint_id=endpoints[0], limit=10)
        same("get_delivery", id=event.deliveries[0].id)
        refused("retry_delivery", id=event.deliveries[0].id)  # it succeeded: nothing to retry
        same("retry_failed_deliveries", endpoint_id=endpoints[0])

        # Replays.
        now = datetime.now(UTC)
        window = {"since": now - timedelta(minutes=5), "until": now, "endpoint_id": endpoints[0]}
        g, r = alike("create_replay", window)
        for replay in (g.id, r.id):  # read once settled: a running replay changes between two reads
            deadline = time.monotonic() + 30
            while over_grpc.get_replay(id=replay).status in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.2)
        same("get_replay", id=g.id)
        same("list_replays")
        refused("cancel_replay", id=g.id)  # finished: no longer running

        # Replies: none was drafted here; the same refusals.
        same("list_replies", status="held")
        for name in ("get_reply", "approve_reply", "reject_reply"):
            refused(name, id="rpl_" + "0" * 32)

        # The event-type catalogue: a type's id is its name, so each transport makes its own.
        schema = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}}
        typed = {"schema": schema, "example": {"amount": 5}, "validate": True, "retry": {"retry_for_seconds": 3600}}
        alike("create_event_type", {"id": "invoice.paid", **typed}, {"id": "invoice.paid.rest", **typed})
        same("get_event_type", id="invoice.paid")
        alike("update_event_type", {"id": "invoice.paid", "deprecated": True, "example": None,
                                    "update_mask": "deprecated,example"},
              {"id": "invoice.paid.rest", "deprecated": True, "example": None, "update_mask": "deprecated,example"})
        same("list_event_types", deprecated="only", limit=1)
        refused("create_event_type", id="invoice.paid")
        alike("delete_event_type", {"id": "invoice.paid"}, {"id": "invoice.paid.rest"})
        refused("get_event_type", id="invoice.paid")

        # Consumer-portal sessions: each a new token.
        alike("create_portal_session", {"application_id": "acme", "ttl_seconds": 600,
                                        "allowed_origins": ["https://app.example.com"]})
        refused("create_portal_session", application_id="a b")

        # AI.
        same("get_settings")
        alike("update_settings", {"categories": ["billing", "other"], "update_mask": "categories"})
        alike("save_prompt", {"task": "classify", "system": "You sort events.", "template": "$event_type: $payload"})
        same("get_usage")
        ai_event = {"event_type": "invoice.payment_failed", "payload_json": '{"amount": 5}'}
        alike("classify", {"event": ai_event})
        alike("extract", {"event": ai_event, "schema": {"type": "object", "properties": {
            "amount": {"type": "number"}}}})
        alike("draft_reply", {"event": {**ai_event, "text": "Hello, my invoice failed"}, "conversation_key": "c-1"},
              {"event": {**ai_event, "text": "Hello, my invoice failed"}, "conversation_key": "c-2"})
        same("get_local_model")

        # Analytics and the audit log.
        same("get_overview")
        same("get_trends", bucket="hour")
        same("get_breakdown", by="endpoint")
        same("get_endpoint_stats", endpoint_id=endpoints[0])
        same("list_failing_endpoints")
        same("list_audit", limit=20)

        # Deletes.
        alike("delete_route", {"id": routes[0]}, {"id": routes[1]})
        alike("delete_template", {"id": templates[0]}, {"id": templates[1]})
        alike("delete_endpoint", {"id": endpoints[0]}, {"id": endpoints[1]})
        alike("delete_source", {"id": sources[0]}, {"id": sources[1]})
        refused("get_source", id=sources[0])

    assert called == {snake(b.method.name) for b in bindings()}
