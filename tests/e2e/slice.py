"""Setting up the thin slice through the REST API, as the README walkthrough does."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import httpx


@dataclass(frozen=True)
class Slice:
    source_id: str
    source_secret: str
    endpoint_id: str
    endpoint_secret: str


def create_slice(api: httpx.Client, receiver_url: str, config: dict | None = None) -> Slice:
    source = api.post("/v1/sources", json={"name": "orders", "config": config or {"event_type_field": "type"}})
    assert source.status_code == 201, source.text
    endpoint = api.post("/v1/endpoints", json={"url": receiver_url, "description": "test receiver"})
    assert endpoint.status_code == 201, endpoint.text
    route = api.post("/v1/routes", json={"name": "everything", "endpoint_ids": [endpoint.json()["id"]]})
    assert route.status_code == 201, route.text
    return Slice(source.json()["id"], source.json()["secret"], endpoint.json()["id"], endpoint.json()["secret"])


def sign_raw(secret: str, body: bytes) -> str:
    """What a generic HMAC sender puts in x-signature."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(secret: str, payload: object) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"x-signature": sign_raw(secret, body), "content-type": "application/json"}


def send(platform: Any, source_id: str, secret: str, payload: dict) -> str:
    """POST a signed webhook to ``platform``'s edge; the accepted event's id."""
    body, headers = signed(secret, payload)
    reply = httpx.post(f"{platform.edge_url}/in/{source_id}", content=body, headers=headers)
    assert reply.status_code == 202, reply.text
    return reply.json()["event_id"]


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()``'s first truthy value, polled; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def publish(api, event: dict) -> str:
    reply = api.post("/v1/events", json=event)
    assert reply.status_code == 202, reply.text
    return reply.json()["event_id"]


def wait_routed(api, event_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = api.get(f"/v1/events/{event_id}")
        if reply.status_code == 200 and reply.json().get("routing"):
            return reply.json()
        time.sleep(0.1)
    raise AssertionError(f"event {event_id} not routed")
