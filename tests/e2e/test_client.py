"""switchboard.client against the running platform, as an internal team uses it: sync and async, with an
API key, resources made from keyword fields, events published and their deliveries followed page by
page, and the platform's errors (code and field) raised as its exceptions."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from switchboard.client import AsyncClient, Client
from switchboard.errors import InvalidRequest, NotFound, PermissionDenied
from switchboard.protojson import plain
from switchboard.cli.supervisor import listening_ports
from tests.e2e.test_grpc_access import tenant_with_keys
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def targets(platform: Platform) -> dict[str, str]:
    return {service: f"127.0.0.1:{port}" for service, port in listening_ports(platform.state_dir).items()
            if not service.endswith("_metrics") and service != "http"}


def wait_for(listing, size: int, timeout_s: float = 20.0) -> list:
    deadline = time.monotonic() + timeout_s
    while len(found := listing()) < size and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_an_internal_team_publishes_events_and_manages_endpoints_with_the_client(platform: Platform) -> None:
    _, keys = tenant_with_keys(platform, "team")
    with Receiver() as receiver, Client(keys["admin"], targets=targets(platform)) as sb:
        endpoint = sb.create_endpoint(url=receiver.url, event_types=["order.*"],
                                      options={"timeout_seconds": 5, "retry": {"max_attempts": 3}}).endpoint
        sb.create_route(spec={"name": "orders", "event_types": ["order.*"], "endpoint_ids": [endpoint.id]})
        published = [sb.publish_event(type="order.created", payload_json=json.dumps({"n": n}),
                                      idempotency_key=f"order-{n}") for n in range(3)]
        receiver.wait_for(lambda got: len(got) == 3, timeout=30)
        # Three pages of one delivery each, followed by the helper (a row is written as its attempt settles).
        delivered = wait_for(lambda: list(sb.iter_deliveries(endpoint_id=endpoint.id, limit=1)), size=3)
        assert sorted(d.event_id for d in delivered) == sorted(p.event_id for p in published)
        assert {d.status for d in delivered} == {"succeeded"}
        assert {e.id for e in sb.iter_events(type="order.*", limit=2)} == {p.event_id for p in published}
        assert json.loads(sb.get_event(id=published[0].event_id).payload_json) == {"n": 0}

        changed = sb.update_endpoint(id=endpoint.id, description="orders", options={"max_in_flight": 4})
        assert (changed.description, changed.options.max_in_flight) == ("orders", 4)
        assert plain(changed.options) == {"max_in_flight": 4}  # options are replaced as a whole

        with pytest.raises(NotFound) as missing:
            sb.get_endpoint(id="ep_" + "0" * 26)
        assert missing.value.code == "not_found"
        with pytest.raises(InvalidRequest) as invalid:
            sb.create_endpoint(url="ftp://example.com")
        assert invalid.value.field == "url"
    with Client(keys["read"], targets=targets(platform)) as reader:
        assert [e.id for e in reader.list_endpoints().endpoints] == [endpoint.id]
        with pytest.raises(PermissionDenied):
            reader.delete_endpoint(id=endpoint.id)


async def test_the_async_client_does_the_same(platform: Platform) -> None:
    _, keys = tenant_with_keys(platform, "async-team")
    with Receiver() as receiver:
        async with AsyncClient(keys["admin"], targets=targets(platform)) as sb:
            source = await sb.create_source(name="shop", type="generic", config={"event_type_field": "type"})
            assert plain(source.source.config)["event_type_field"] == "type" and source.secret
            endpoint = (await sb.create_endpoint(url=receiver.url)).endpoint
            await sb.create_route(spec={"endpoint_ids": [endpoint.id]})
            published = await sb.publish_event(type="t", payload_json='{"id": 1152921504606846977}')
            receiver.wait_for(lambda got: len(got) == 1, timeout=30)
            for _ in range(100):
                listed = [d.event_id async for d in sb.iter_deliveries(endpoint_id=endpoint.id)]
                if listed:
                    break
                await asyncio.sleep(0.1)
            assert listed == [published.event_id]
            with pytest.raises(NotFound):
                await sb.get_source(id=source.source.id + "x")
