"""Replays end to end: through the REST API and the CLI's progress bar, to real receivers."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, UTC

import pytest

from tests.e2e.slice import create_slice
from tests.e2e.test_auth import cli, tenant_with_key
from tests.e2e.test_delivery_control import send
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def wait_finished(api, replay_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replay = api.get(f"/v1/replays/{replay_id}").json()
        if replay["status"] in ("succeeded", "failed", "cancelled"):
            return replay
        time.sleep(0.1)
    raise AssertionError(f"replay {replay_id} did not finish: {replay}")


def test_replays_redeliver_a_time_range_through_routes_or_to_one_endpoint(platform: Platform) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    with Receiver() as receiver, Receiver() as archive, platform.client() as api:
        s = create_slice(api, receiver.url)
        events = [send(platform, s.source_id, s.source_secret, {"type": t, "n": n})
                  for n, t in enumerate(["order.created", "order.paid", "invoice.sent"])]
        for event_id in events:
            wait_for_delivery(api, event_id)
        first_ids = {r.headers["webhook-id"] for r in receiver.requests}

        started = api.post("/v1/replays", json={"since": since, "event_types": ["order.*"]})
        assert started.status_code == 202, started.text
        assert started.json()["total"] == 2 and started.json()["status"] in ("queued", "running", "succeeded")
        done = wait_finished(api, started.json()["id"])
        assert (done["status"], done["done"], done["total"], done["deliveries"]) == ("succeeded", 2, 2, 2)
        replayed = receiver.wait_for(lambda r: len(r) == 5)
        new_ids = [r.headers["webhook-id"] for r in replayed[3:]]
        # New deliveries (receivers de-duplicating by webhook-id still take them), each once.
        assert not set(new_ids) & first_ids and len(set(new_ids)) == 2
        assert all(i.endswith(":" + done["id"]) for i in new_ids)
        assert sorted(json.loads(r.body)["n"] for r in replayed[3:]) == [0, 1]

        archive_ep = api.post("/v1/endpoints", json={"url": archive.url}).json()["id"]
        to_one = api.post("/v1/replays", json={"since": since, "endpoint_id": archive_ep,
                                               "source_id": s.source_id}).json()
        assert wait_finished(api, to_one["id"])["deliveries"] == 3
        assert sorted(json.loads(r.body)["n"] for r in archive.wait_for(lambda r: len(r) == 3)) == [0, 1, 2]
        time.sleep(0.5)
        assert len(receiver.requests) == 5  # the route's endpoint got nothing from the one-endpoint replay

        listed = api.get("/v1/replays").json()["data"]
        assert [r["id"] for r in listed] == [to_one["id"], done["id"]]
        assert api.post(f"/v1/replays/{done['id']}/cancel").status_code == 409
        actions = {e["action"] for e in api.get("/v1/audit").json()["data"]}
        assert "replay.create" in actions


def test_the_cli_starts_a_replay_and_draws_its_progress(platform: Platform) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        for n in range(4):
            wait_for_delivery(api, send(platform, s.source_id, s.source_secret, {"type": "t", "n": n}))
        done = cli(platform, "replay", "--since", since, "--json", "--interval", "0.1")
        assert done.returncode == 0, done.stderr
        replay = json.loads(done.stdout)
        assert (replay["status"], replay["done"], replay["total"]) == ("succeeded", 4, 4)
        assert "[##############################] 100%  4/4" in done.stderr
        receiver.wait_for(lambda r: len(r) == 8)

        refused = cli(platform, "replay", "--since", "not-a-time")
        assert refused.returncode == 1 and "since must be an ISO 8601 time" in refused.stderr


@pytest.mark.parametrize("body,status,code", [
    ({}, 400, "invalid_request"),
    ({"since": "yesterday"}, 400, "invalid_request"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400, "invalid_request"),
    ({"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400, "invalid_request"),
    ({"since": "2026-01-01T00:00:00Z", "endpoint_id": "ep_nope"}, 404, "not_found"),
    ({"since": "2026-01-01T00:00:00Z", "source_id": "src_nope"}, 404, "not_found"),
    ({"since": "2026-01-01T00:00:00Z", "event_types": [""]}, 400, "invalid_request"),
])
def test_bad_replays_are_refused(refusing_platform: Platform, body: dict, status: int, code: str) -> None:
    with refusing_platform.client() as api:
        reply = api.post("/v1/replays", json=body)
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text


def test_another_tenants_replays_are_404(platform: Platform) -> None:
    with platform.client() as api:
        since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        mine = api.post("/v1/replays", json={"since": since}).json()["id"]
        _, other_key = tenant_with_key(platform, "other", "admin")
        with platform.client(other_key) as other:
            assert other.get(f"/v1/replays/{mine}").status_code == 404
            assert other.post(f"/v1/replays/{mine}/cancel").status_code == 404
            assert other.get("/v1/replays").json()["data"] == []
