"""Alerts end to end: a receiver failing with 500s raises a failure-rate alert, which the platform
routes like any event (a route on ``switchboard.alert.*``) to a second receiver; once the receiver
recovers, the alert resolves. Each is delivered once."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.e2e.slice import signed, wait_for
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e



def alerts_received(receiver: Receiver) -> list[tuple[dict, str]]:
    return [(json.loads(r.body), r.headers["webhook-id"]) for r in list(receiver.requests)]


def test_a_failing_endpoint_raises_an_alert_event_routed_to_another_endpoint(platform_factory) -> None:
    platform: Platform = platform_factory(SWITCHBOARD_ALERT_INTERVAL="0.5", SWITCHBOARD_ALERT_WINDOW="5",
                                          SWITCHBOARD_ALERT_MIN_ATTEMPTS="3", SWITCHBOARD_ALERT_COOLDOWN="0")
    with Receiver(status=500) as broken, Receiver() as on_call, platform.client() as api:
        source = api.post("/v1/sources", json={"name": "orders", "config": {"event_type_field": "type"}}).json()
        bad = api.post("/v1/endpoints", json={"url": broken.url}).json()["id"]
        pager = api.post("/v1/endpoints", json={"url": on_call.url}).json()["id"]
        api.post("/v1/routes", json={"name": "orders", "source_id": source["id"],
                                     "endpoint_ids": [bad]}).raise_for_status()
        # The opt-in the docs show: the platform's own source, which is no tenant's source.
        api.post("/v1/routes", json={"name": "alerts", "source_id": "switchboard",
                                     "event_types": ["switchboard.alert.*"],
                                     "endpoint_ids": [pager]}).raise_for_status()
        for n in range(3):
            body, headers = signed(source["secret"], {"type": "order.created", "n": n})
            reply = httpx.post(f"{platform.edge_url}/in/{source['id']}", content=body, headers=headers)
            assert reply.status_code == 202, reply.text

        [(alert, webhook_id)] = wait_for(lambda: alerts_received(on_call), timeout=45.0)
        assert {k: alert[k] for k in ("alert", "state", "endpoint_id", "threshold", "window_s", "resolved_at")} == {
            "alert": "failure_rate", "state": "firing", "endpoint_id": bad, "threshold": 0.5, "window_s": 5.0,
            "resolved_at": None}
        assert alert["value"] > 0.5 and alert["details"]["attempts"] >= 3 and alert["started_at"]
        # An event of the tenant like any other, from the platform's own source.
        event_id, endpoint_id = webhook_id.split(":")[:2]
        assert endpoint_id == pager
        stored = api.get(f"/v1/events/{event_id}").json()
        assert (stored["source_id"], stored["type"]) == ("switchboard", "switchboard.alert.failure_rate")

        # The receiver recovers: retries succeed, failures leave the window, the alert resolves.
        broken.status = 200
        wait_for(lambda: len(alerts_received(on_call)) >= 2, timeout=45.0)
        time.sleep(2)  # a few more rounds: nothing fires or resolves again
        received = alerts_received(on_call)
        assert [(a["alert"], a["state"]) for a, _ in received] == [("failure_rate", "firing"),
                                                                 ("failure_rate", "resolved")]
        resolved = received[1][0]
        assert resolved["started_at"] == alert["started_at"] and resolved["resolved_at"] >= alert["started_at"]
        assert resolved["endpoint_id"] == bad
