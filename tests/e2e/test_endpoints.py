"""Endpoint management end to end: CRUD with clear 400s, method and headers, event-type
filters, secret rotation with both signatures, deletion, and other tenants' endpoints."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.e2e.slice import create_slice
from tests.e2e.test_auth import tenant_with_key
from tests.e2e.test_delivery_control import send
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def error(reply) -> tuple[int, str]:
    return reply.status_code, reply.json()["error"]["message"]


def test_endpoints_are_created_changed_and_deleted_with_method_headers_and_type_filters(platform: Platform) -> None:
    with Receiver() as receiver, Receiver() as other, platform.client() as api:
        s = create_slice(api, receiver.url)
        changed = api.patch(f"/v1/endpoints/{s.endpoint_id}", json={
            "description": "orders to the ERP",
            "config": {"method": "PUT", "headers": {"Authorization": "Bearer erp-token-1234", "X-Team": "ops"}},
            "options": {"timeout_seconds": 5, "retry": {"max_attempts": 3, "multiplier": 3, "retry_statuses": [503]}},
            "event_types": ["order.*"],
        })
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["description"] == "orders to the ERP" and body["event_types"] == ["order.*"]
        assert body["options"]["retry"]["multiplier"] == 3
        # Secrets in a config are shown masked.
        assert body["config"]["headers"] == {"Authorization": "…1234", "X-Team": "ops"}
        assert api.get(f"/v1/endpoints/{s.endpoint_id}").json()["url"] == receiver.url

        taken = send(platform, s.source_id, s.source_secret, {"type": "order.created", "n": 1})
        skipped = send(platform, s.source_id, s.source_secret, {"type": "invoice.paid", "n": 2})
        wait_for_delivery(api, taken)
        [got] = receiver.wait_for(lambda r: len(r) >= 1)
        assert got.method == "PUT" and got.headers["authorization"] == "Bearer erp-token-1234"
        assert got.headers["x-team"] == "ops" and json.loads(got.body)["n"] == 1
        time.sleep(1.0)  # the filtered event had its chance to arrive
        assert len(receiver.requests) == 1
        skipped_event = api.get(f"/v1/events/{skipped}").json()
        # Left out by the router: no delivery, and the explanation names none.
        assert skipped_event["deliveries"] == [] and skipped_event["routing"]["deliveries"] == []
        assert [f["endpoint_id"] for f in skipped_event["routing"]["filtered_out"]] == [s.endpoint_id]

        moved = api.patch(f"/v1/endpoints/{s.endpoint_id}", json={"url": other.url, "event_types": []})
        assert moved.status_code == 200 and moved.json()["url"] == other.url
        wait_for_delivery(api, send(platform, s.source_id, s.source_secret, {"type": "invoice.paid", "n": 3}),
                          timeout=30)
        assert [json.loads(r.body)["n"] for r in other.requests] == [3]

        assert api.patch(f"/v1/endpoints/{s.endpoint_id}", json={"enabled": False}).json()["disabled_at"]
        assert api.patch(f"/v1/endpoints/{s.endpoint_id}", json={"enabled": True}).json().get("disabled_at") is None

        deleted = api.delete(f"/v1/endpoints/{s.endpoint_id}")
        assert deleted.status_code == 200 and deleted.json() == {"id": s.endpoint_id, "deleted": True}
        assert api.get(f"/v1/endpoints/{s.endpoint_id}").status_code == 404
        assert api.delete(f"/v1/endpoints/{s.endpoint_id}").status_code == 404
        assert s.endpoint_id not in {e["id"] for e in api.get("/v1/endpoints").json()["data"]}
        # Its log stays.
        assert api.get("/v1/deliveries", params={"endpoint_id": s.endpoint_id}).json()["data"]
        actions = {e["action"] for e in api.get("/v1/audit").json()["data"]}
        assert {"endpoint.update", "endpoint.delete"} <= actions


INVALID, BAD_CONFIG = "invalid_request", "invalid_endpoint_config"


# The code and field at fault, whichever side refused the change: the edge's request schema, or the
# delivery service (its destination plugin, its failover rules) with the code it gave crossing gRPC.
@pytest.mark.parametrize("change,message,code,field", [
    ({"colour": "red"}, "colour: unknown field", INVALID, "colour"),
    ({"url": "ftp://x/y"}, "http", BAD_CONFIG, "url"),
    ({"url": 5}, "url: must be a string", INVALID, "url"),
    ({"config": {"method": "TRACE"}}, "method is one of", BAD_CONFIG, "config.method"),
    ({"config": {"headers": {"webhook-signature": "v1,forged"}}}, "cannot be overridden", BAD_CONFIG, "config.headers"),
    ({"config": {"headers": {"X-Bad": "line\r\nbreak"}}}, "printable ASCII", BAD_CONFIG, "config.headers"),
    ({"config": {"headers": {"bad name": "x"}}}, "not a valid HTTP header name", BAD_CONFIG, "config.headers"),
    ({"config": {"proxy": "x"}}, "unknown webhook config", BAD_CONFIG, "config"),
    ({"options": {"retry": {"multiplier": 50}}}, "options.retry.multiplier: must be at most 10", INVALID,
     "options.retry.multiplier"),
    ({"options": {"retry": {"retry_statuses": [200]}}}, "retry_statuses", INVALID, "options.retry.retry_statuses[0]"),
    ({"options": {"auto_disable_after_seconds": -1}}, "auto_disable_after_seconds", INVALID,
     "options.auto_disable_after_seconds"),
    ({"event_types": [""]}, "event_types[0]: must have at least 1 character", INVALID, "event_types[0]"),
    ({"event_types": "order.*"}, "event_types: must be a list", INVALID, "event_types"),
    ({"enabled": "yes"}, "enabled: must be true or false", INVALID, "enabled"),
    ({"failover_endpoint_id": "ep_0000000000000000000000000"}, "not found", INVALID, "failover_endpoint_id"),
])
def test_bad_changes_are_400_with_a_clear_message(refusing_platform: Platform, change: dict, message: str, code: str,
                                                  field: str) -> None:
    with refusing_platform.client() as api:
        endpoint = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}).json()
        reply = api.patch(f"/v1/endpoints/{endpoint['id']}", json=change)
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert message in error["message"]
        assert (error["code"], error.get("field")) == (code, field), reply.text
        # Nothing changed.
        assert api.get(f"/v1/endpoints/{endpoint['id']}").json()["updated_at"] == endpoint["updated_at"]


def test_failover_rules_and_other_tenants_endpoints(platform: Platform) -> None:
    with platform.client() as api:
        a = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/a"}).json()["id"]
        assert error(api.patch(f"/v1/endpoints/{a}", json={"failover_endpoint_id": a})) == \
            (400, "an endpoint cannot be its own failover")
        b = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/b", "failover_endpoint_id": a}).json()
        assert b["failover_endpoint_id"] == a
        c = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/c"}).json()["id"]
        assert error(api.patch(f"/v1/endpoints/{c}", json={"failover_endpoint_id": b["id"]})) == \
            (400, "a failover endpoint cannot have a failover of its own")
        # Deleting a failover target unlinks it.
        assert api.delete(f"/v1/endpoints/{a}").status_code == 200
        assert api.get(f"/v1/endpoints/{b['id']}").json().get("failover_endpoint_id", "") == ""

        _, other_key = tenant_with_key(platform, "other", "admin")
        with platform.client(other_key) as other:
            for reply in (other.get(f"/v1/endpoints/{c}"), other.patch(f"/v1/endpoints/{c}", json={"description": "x"}),
                          other.delete(f"/v1/endpoints/{c}"), other.post(f"/v1/endpoints/{c}/rotate-secret", json={})):
                assert reply.status_code == 404, reply.text
            # Nor can another tenant's endpoint be named as a failover.
            mine = other.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/o"}).json()["id"]
            assert other.patch(f"/v1/endpoints/{mine}", json={"failover_endpoint_id": c}).status_code == 400
        assert api.get(f"/v1/endpoints/{c}").json().get("description", "") == ""


def test_secret_rotation_signs_with_both_secrets_during_the_grace_period(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        rotated = api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret", json={"grace_seconds": 3600})
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret.startswith("whsec_") and new_secret != s.endpoint_secret
        assert rotated.json()["previous_secret_expires_at"]

        wait_for_delivery(api, send(platform, s.source_id, s.source_secret, {"type": "t", "n": 1}))
        [during] = receiver.requests
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        # A receiver on either secret verifies it, with the reference library.
        for secret in (s.endpoint_secret, new_secret):
            assert Webhook(secret).verify(during.body, during.headers)["n"] == 1

        immediate = api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret", json={"grace_seconds": 0})
        assert immediate.status_code == 200
        latest = api.get(f"/v1/endpoints/{s.endpoint_id}").json()
        assert not latest.get("previous_secret_expires_at")
        assert error(api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret", json={"grace_seconds": 10**8}))[0] == 400
        assert error(api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret", json={"secret": "plain"}))[0] == 400

        receiver.requests.clear()
        wait_for_delivery(api, send(platform, s.source_id, s.source_secret, {"type": "t", "n": 2}))
        [after] = receiver.requests
        assert " " not in after.headers["webhook-signature"]
        assert Webhook(immediate.json()["secret"]).verify(after.body, after.headers)["n"] == 2
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret).verify(after.body, after.headers)  # the grace-0 rotation replaced it at once


async def test_slack_and_nats_destinations_deliver_through_the_platform(platform: Platform, nats_server) -> None:
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        subscription = await nc.subscribe("team.orders")
        await nc.flush()  # the SUB reaches the server before this test blocks the loop
        with Receiver(response_body=b"ok") as slack, platform.client() as api:
            s = create_slice(api, slack.url)
            hook = api.post("/v1/endpoints", json={"url": slack.url, "destination": "slack"}).json()
            bus = api.post("/v1/endpoints", json={"url": "nats:team.orders", "destination": "nats"})
            assert bus.status_code == 201, bus.text
            route = api.post("/v1/routes", json={"endpoint_ids": [hook["id"], bus.json()["id"]]})
            assert route.status_code == 201
            event_id = send(platform, s.source_id, s.source_secret, {"type": "order.created", "text": "New order 42"})
            wait_for_delivery(api, event_id)
            published = await subscription.next_msg(timeout=10)
            assert json.loads(published.data)["text"] == "New order 42"
            assert published.headers is not None
            assert Webhook(bus.json()["secret"]).verify(published.data, dict(published.headers))
            posted = [json.loads(r.body) for r in slack.requests if "webhook-id" not in r.headers]
            assert posted == [{"text": "New order 42"}]
            assert api.post("/v1/endpoints", json={"url": "nats:events.t.x", "destination": "nats"}).status_code == 400
    finally:
        await nc.close()


def test_v1a_and_svix_named_endpoints_deliver_what_receivers_verify(platform: Platform) -> None:
    from svix.webhooks import Webhook as SvixWebhook

    from tests.plugins.test_webhook_destination import v1a_verifies

    with Receiver() as signed, Receiver() as migrating, platform.client() as api:
        source = api.post("/v1/sources", json={"name": "orders", "config": {"event_type_field": "type"}}).json()
        v1a = api.post("/v1/endpoints", json={"url": signed.url, "signature_scheme": "v1a"})
        assert v1a.status_code == 201, v1a.text
        created = v1a.json()
        # Receivers need only the public key: the private key is never shown.
        assert created["signature_scheme"] == "v1a" and created["public_key"].startswith("whpk_")
        assert created["secret"] is None and "whsk_" not in v1a.text
        shown = api.get(f"/v1/endpoints/{created['id']}")
        assert shown.json()["public_key"] == created["public_key"] and "whsk_" not in shown.text
        assert "whsk_" not in api.get("/v1/endpoints").text

        svix = api.post("/v1/endpoints", json={"url": migrating.url, "config": {"header_names": "svix"}})
        assert svix.status_code == 201, svix.text
        assert svix.json()["signature_scheme"] == "v1" and svix.json()["public_key"] is None
        assert svix.json()["config"] == {"header_names": "svix"} and svix.json()["secret"].startswith("whsec_")
        route = api.post("/v1/routes", json={"endpoint_ids": [created["id"], svix.json()["id"]]})
        assert route.status_code == 201, route.text

        wait_for_delivery(api, send(platform, source["id"], source["secret"], {"type": "order.created", "n": 1}))
        [got] = signed.requests
        assert v1a_verifies(created["public_key"], got.headers, got.body) == [True]
        [old] = migrating.requests
        assert "webhook-signature" not in old.headers
        SvixWebhook(svix.json()["secret"]).verify(old.body, old.headers)  # raises unless a signature matches
        assert json.loads(old.body)["n"] == 1 and old.headers["svix-id"].endswith(":" + svix.json()["id"])


def test_a_v1a_rotation_sends_two_v1a_signatures_and_a_v1_endpoint_can_move_to_v1a(platform: Platform,
                                                                                    database_url: str) -> None:
    import psycopg
    from standardwebhooks.webhooks import Webhook as Reference

    from switchboard.signatures import generate_signing_key, public_key_of
    from tests.plugins.test_webhook_destination import v1a_verifies

    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        # A v1 endpoint moves to v1a by a rotation: both schemes sign during the grace period.
        moved = api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret",
                         json={"signature_scheme": "v1a", "grace_seconds": 3600})
        assert moved.status_code == 200, moved.text
        assert moved.json()["secret"] is None and moved.json()["signature_scheme"] == "v1a"
        first_public = moved.json()["public_key"]
        wait_for_delivery(api, send(platform, s.source_id, s.source_secret, {"type": "t", "n": 1}))
        [during_move] = receiver.requests
        v1a_part, v1_part = during_move.headers["webhook-signature"].split(" ")
        assert Reference(s.endpoint_secret).verify(during_move.body, during_move.headers)["n"] == 1
        assert v1a_verifies(first_public, {**during_move.headers, "webhook-signature": v1a_part},
                            during_move.body) == [True]

        # A key the client brings: accepted, its public key shown, itself never.
        key = generate_signing_key()
        rotated = api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret", json={"secret": key, "grace_seconds": 600})
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["public_key"] == public_key_of(key) and rotated.json()["secret"] is None
        assert key not in rotated.text
        # Sealed at rest exactly as a whsec_ secret is.
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT secret, previous_secret FROM delivery.endpoints WHERE id = %s",
                                  (s.endpoint_id,)).fetchone()
        assert stored is not None and all(value.startswith("sb1:") and "whsk_" not in value for value in stored)
        assert key.removeprefix("whsk_") not in "".join(stored)
        receiver.requests.clear()
        wait_for_delivery(api, send(platform, s.source_id, s.source_secret, {"type": "t", "n": 2}))
        [during] = receiver.requests
        assert v1a_verifies(public_key_of(key), during.headers, during.body) == [True, False]
        assert v1a_verifies(first_public, during.headers, during.body) == [False, True]

        # Without a secret a rotation keeps the scheme: a new generated key.
        again = api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret", json={"grace_seconds": 0}).json()
        assert again["signature_scheme"] == "v1a" and again["public_key"] not in (first_public, public_key_of(key))
        assert api.get(f"/v1/endpoints/{s.endpoint_id}").json()["public_key"] == again["public_key"]


@pytest.mark.parametrize("body,code,field", [
    ({"signature_scheme": "v2"}, INVALID, "signature_scheme"),
    ({"secret": "whsk_" + "A" * 86 + "=="}, BAD_CONFIG, "secret"),
    ({"secret": "whsk_short"}, BAD_CONFIG, "secret"),
    ({"signature_scheme": "v1", "secret": "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRq"
                                          "SKJp4AJ6p9lMicMFs6Kvg=="}, INVALID, "secret"),
    ({"config": {"header_names": "stripe"}}, BAD_CONFIG, "config.header_names"),
])
def test_unknown_schemes_and_malformed_keys_are_400s_naming_the_field(refusing_platform: Platform, body: dict,
                                                                      code: str, field: str) -> None:
    with refusing_platform.client() as api:
        reply = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook", **body})
        assert reply.status_code == 400, reply.text
        assert (reply.json()["error"]["code"], reply.json()["error"].get("field")) == (code, field), reply.text
        endpoint = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}).json()
        if "config" not in body:
            rotated = api.post(f"/v1/endpoints/{endpoint['id']}/rotate-secret", json=body)
            assert rotated.status_code == 400, rotated.text
            assert rotated.json()["error"].get("field") == field, rotated.text
