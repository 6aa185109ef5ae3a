"""Issue 3 end to end: keys, scopes, tenant isolation, rate limits, allow-lists, audit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.slice import create_slice, sign_raw, signed, wait_routed
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def cli(platform: Platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "switchboard.cli", *args], env=platform.env,
                          capture_output=True, text=True, timeout=60)


def cli_json(platform: Platform, *args: str) -> list[dict]:
    done = cli(platform, *args, "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def tenant_with_key(platform: Platform, name: str, *scopes: str, expires_in: str | None = None) -> tuple[str, str]:
    [tenant] = cli_json(platform, "tenants", "create", name)
    extra = ["--expires-in", expires_in] if expires_in else []
    [key] = cli_json(platform, "keys", "create", "--tenant", tenant["id"], *[a for s in scopes for a in ("--scope", s)],
                     *extra)
    return tenant["id"], key["secret"]


def add_key(platform: Platform, tenant: str, *scopes: str, expires_in: str | None = None) -> dict:
    extra = ["--expires-in", expires_in] if expires_in else []
    [key] = cli_json(platform, "keys", "create", "--tenant", tenant, *[a for s in scopes for a in ("--scope", s)],
                     *extra)
    return key


def error(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error"]["code"]


def test_every_bad_credential_is_401_and_a_missing_scope_403(platform_factory) -> None:
    platform = platform_factory(SWITCHBOARD_AUTH_CACHE_TTL="1")
    tenant, admin = tenant_with_key(platform, "acme", "admin")
    url = f"{platform.edge_url}/v1/sources"
    revoked = add_key(platform, tenant, "read")
    expiring = add_key(platform, tenant, "read", expires_in="2s")
    publisher = add_key(platform, tenant, "events:publish")
    reader = add_key(platform, tenant, "read")

    def get(key: str | None = None, header: str | None = None) -> httpx.Response:
        headers = {"Authorization": header} if header else ({"Authorization": f"Bearer {key}"} if key else {})
        return httpx.get(url, headers=headers)

    assert get(revoked["secret"]).status_code == 200
    assert cli(platform, "keys", "revoke", "--tenant", tenant, revoked["id"]).returncode == 0
    time.sleep(1.2)  # the edge's cache TTL: the documented bound on revocation
    for reply in (get(), get(header="Basic abc"), get(header="Bearer"), get("sb_live_nope"),
                  get("sb_live_" + "a" * 12 + "_" + "b" * 40), get(revoked["secret"])):
        assert error(reply) == (401, "unauthenticated"), reply.text
    time.sleep(1.5)
    assert error(get(expiring["secret"])) == (401, "unauthenticated")

    assert error(get(publisher["secret"])) == (403, "permission_denied")
    reply = httpx.post(f"{platform.edge_url}/v1/events", json={"type": "a", "payload": {}},
                       headers={"Authorization": f"Bearer {reader['secret']}"})
    assert error(reply) == (403, "permission_denied")
    assert get(admin).status_code == 200 and get(reader["secret"]).status_code == 200


def test_another_tenants_resources_are_404_of_every_kind(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        body, headers = signed(s.source_secret, {"type": "t"})
        event_id = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers).json()["event_id"]
        # Stored and routed: what the other tenant is refused exists.
        wait_routed(api, event_id)
        _, other_key = tenant_with_key(platform, "other", "admin")
        with platform.client(other_key) as other:
            for path in (f"/v1/sources/{s.source_id}", f"/v1/endpoints/{s.endpoint_id}", f"/v1/events/{event_id}"):
                assert error(other.get(path)) == (404, "not_found"), path
            for path in ("/v1/sources", "/v1/endpoints", "/v1/routes"):
                assert other.get(path).json() == {"data": []}, path
            # Its audit log holds its own creation only, nothing of the first tenant.
            assert {e["action"] for e in other.get("/v1/audit").json()["data"]} == {"tenant.create", "key.create"}
            assert error(other.post("/v1/routes", json={"endpoint_ids": [s.endpoint_id]})) == (404, "not_found")
            # Nor can it correct the first tenant's AI labels.
            assert error(other.post(f"/v1/events/{event_id}/labels", json={"category": "other"})) == (404, "not_found")
        assert api.get(f"/v1/events/{event_id}").json()["labels"] is None
        listed = cli(platform, "keys", "list", "--tenant", "ten_" + "0" * 32)
        assert listed.returncode == 0 and listed.stdout == ""


def test_keys_are_listed_without_secrets_and_rotated_with_a_grace_period(platform: Platform) -> None:
    tenant, admin = tenant_with_key(platform, "acme", "admin")
    old = add_key(platform, tenant, "read")
    [rotated] = cli_json(platform, "keys", "rotate", "--tenant", tenant, old["id"], "--grace", "1h")
    assert rotated["secret"] != old["secret"] and rotated["scopes"] == ["read"]
    for key in (old, rotated):
        assert httpx.get(f"{platform.edge_url}/v1/sources",
                         headers={"Authorization": f"Bearer {key['secret']}"}).status_code == 200
    listing = cli(platform, "keys", "list", "--tenant", tenant)
    assert listing.returncode == 0
    assert old["secret"] not in listing.stdout and rotated["secret"] not in listing.stdout
    old_row = next(json.loads(line) for line in cli(platform, "keys", "list", "--tenant", tenant, "--json").stdout
                   .splitlines() if json.loads(line)["id"] == old["id"])
    assert "expires_at" in old_row and "last_used_at" in old_row


def test_auth_service_down_means_503_for_uncached_keys_never_allow(platform_factory) -> None:
    platform = platform_factory(SWITCHBOARD_RPC_TIMEOUT="1")
    tenant, cached = tenant_with_key(platform, "acme", "read")
    uncached = add_key(platform, tenant, "read")["secret"]
    url = f"{platform.edge_url}/v1/sources"
    assert httpx.get(url, headers={"Authorization": f"Bearer {cached}"}).status_code == 200
    auth_pid = platform.pids()["auth"]
    os.kill(auth_pid, signal.SIGSTOP)  # hung, not dead: the supervisor does not restart it
    try:
        for key in (uncached, "sb_live_" + "a" * 12 + "_" + "b" * 40):
            reply = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert error(reply) == (503, "unavailable") and reply.headers["retry-after"]
        assert httpx.get(url, headers={"Authorization": f"Bearer {cached}"}).status_code == 200
    finally:
        os.kill(auth_pid, signal.SIGCONT)


def test_bursts_over_the_limits_get_429_with_retry_after(platform_factory) -> None:
    platform = platform_factory(SWITCHBOARD_KEY_RATE="1", SWITCHBOARD_KEY_BURST="3")
    with platform.client() as api:
        replies = [api.get("/v1/routes") for _ in range(4)]
        assert [r.status_code for r in replies] == [200, 200, 200, 429]
        assert replies[0].headers["ratelimit-limit"] == "3" and replies[0].headers["x-ratelimit-remaining"] == "2"
        assert error(replies[3]) == (429, "rate_limited")
        assert int(replies[3].headers["retry-after"]) >= 1
        time.sleep(1.1)
        assert api.get("/v1/routes").status_code == 200

    with Receiver() as receiver, platform.client() as api:
        time.sleep(3)  # refill the key's bucket for the set-up calls
        source = api.post("/v1/sources", json={"name": "slow", "rate_limit": {"per_second": 1, "burst": 2}}).json()
        assert source["rate_limit"] == {"per_second": 1.0, "burst": 2}
        body, headers = signed(source["secret"], {"type": "x"})
        statuses = [httpx.post(f"{platform.edge_url}/in/{source['id']}", content=body, headers=headers)
                    for _ in range(3)]
        assert [r.status_code for r in statuses] == [202, 202, 429]
        assert statuses[2].headers["retry-after"] and statuses[2].headers["ratelimit-remaining"] == "0"
        del receiver


def test_source_ip_allow_list_honours_trusted_proxies_only(platform_factory) -> None:
    platform = platform_factory(SWITCHBOARD_TRUSTED_PROXIES="127.0.0.1/32")
    with platform.client() as api:
        source = api.post("/v1/sources", json={"name": "office", "allowed_ips": ["10.0.0.0/8"]}).json()
        assert source["allowed_ips"] == ["10.0.0.0/8"]
        bad = api.post("/v1/sources", json={"name": "x", "allowed_ips": ["not-an-ip"]})
        assert error(bad) == (400, "invalid_request")
    body = b'{"type": "x"}'
    url = f"{platform.edge_url}/in/{source['id']}"
    headers = {"x-signature": sign_raw(source["secret"], body)}
    assert error(httpx.post(url, content=body, headers=headers)) == (403, "ip_not_allowed")
    via_proxy = httpx.post(url, content=body, headers={**headers, "x-forwarded-for": "10.1.2.3"})
    assert via_proxy.status_code == 202
    spoofed = httpx.post(url, content=body, headers={**headers, "x-forwarded-for": "10.1.2.3, 192.0.2.7"})
    assert error(spoofed) == (403, "ip_not_allowed")


def test_published_events_are_idempotent_and_mutations_are_audited(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        tenant = api.get(f"/v1/endpoints/{s.endpoint_id}").json()["tenant_id"]
        publisher = add_key(platform, tenant, "events:publish")
        with platform.client(publisher["secret"]) as pub:
            event = {"type": "invoice.paid", "payload": {"amount": 5}, "idempotency_key": "inv-5"}
            first, second = pub.post("/v1/events", json=event), pub.post("/v1/events", json=event)
            other = pub.post("/v1/events", json={"type": "invoice.paid", "payload": {"amount": 6}})
            missing = pub.post("/v1/events", json={"type": "x"})
        assert first.status_code == second.status_code == other.status_code == 202
        assert first.json()["event_id"] == second.json()["event_id"] != other.json()["event_id"]
        assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
        assert error(missing) == (400, "invalid_request")
        receiver.wait_for(lambda r: len(r) >= 2)
        time.sleep(1)
        assert sorted(json.loads(r.body)["amount"] for r in receiver.requests) == [5, 6]

        entries = api.get("/v1/audit").json()["data"]
        actions = [(e["action"], e["resource"]) for e in entries]
        assert ("source.create", s.source_id) in actions and ("endpoint.create", s.endpoint_id) in actions
        assert any(a == "route.create" for a, _ in actions)
        assert ("key.create", publisher["id"]) in actions
        assert platform.admin_key is not None
        admin_key_id = platform.admin_key.split("_")[2]
        assert {e["actor"] for e in entries
                if e["action"] in ("source.create", "endpoint.create", "route.create")} == {admin_key_id}
        assert {e["actor"] for e in entries if e["action"] == "key.create"} == {"system", "cli"}
        dumped = json.dumps(entries)
        assert publisher["secret"] not in dumped and s.source_secret not in dumped
