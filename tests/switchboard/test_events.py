"""The AI labels the bus carries to analytics: category and priority survive a message, and messages written
before priority was carried (or read by a process from before) still parse."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.events import AttemptRecord, DeliveryMessage, DeliveryNotice, RoutingOutcome

LABELLED: list[Any] = [
    DeliveryMessage(event_id="evt_1", tenant_id="t", endpoint_id="ep", route_id="rt", event_type="a", source_id="s",
                    received_at=1.0, payload={"a": 1}, category="billing", priority="urgent"),
    AttemptRecord(delivery_id="evt_1:ep", number=1, tenant_id="t", endpoint_id="ep", event_type="a",
                  outcome="succeeded", status_code=200, latency_ms=3.0, at=2.0, source_id="s", category="billing",
                  priority="urgent"),
    RoutingOutcome(event_id="evt_1", tenant_id="t", source_id="s", event_type="a", received_at=1.0, routed_at=1.5,
                   outcome="routed", endpoint_ids=("ep",), category="billing", priority="urgent"),
    DeliveryNotice(delivery_id="evt_1:ep", tenant_id="t", endpoint_id="ep", event_type="a", state="skipped", at=2.0,
                   source_id="s", category="billing", priority="urgent"),
]


def written(message: Any) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(message.to_message()))


@pytest.mark.parametrize("message", LABELLED, ids=lambda m: type(m).__name__)
def test_the_ai_category_and_priority_travel_with_each_message(message: Any) -> None:
    data = written(message)
    assert (data["category"], data["priority"]) == ("billing", "urgent")
    assert type(message).from_message(data) == message


@pytest.mark.parametrize("message", LABELLED, ids=lambda m: type(m).__name__)
def test_a_message_from_before_priority_was_carried_reads_without_one(message: Any) -> None:
    old = {k: v for k, v in written(message).items() if k != "priority"}
    read = type(message).from_message(old)
    assert (read.category, read.priority) == ("billing", None)
