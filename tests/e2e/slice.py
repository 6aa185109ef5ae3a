"""Setting up the thin slice through the REST API, as the README walkthrough does."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

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
