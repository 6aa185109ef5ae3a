"""Every source type through the real edge: verified, de-duplicated, delivered."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import parse_qsl

import httpx
import pytest
import stripe
from twilio.request_validator import RequestValidator

from plugins.manager import load_registry
from tests.platform_runner import Platform
from tests.plugins.test_sources import CASES, sample
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e
REGISTRY = load_registry()


def make_source(api: httpx.Client, source_type: str, **extra) -> dict:
    case = next(c for c in CASES if c.type == source_type)
    reply = api.post("/v1/sources", json={"name": source_type, "type": source_type, "secret": case.secret,
                                          "config": case.config or {}, **extra})
    assert reply.status_code == 201, reply.text
    return reply.json()


def post(platform: Platform, source: dict, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{platform.edge_url}/in/{source['id']}", content=body, headers=headers, timeout=30)


def sender_headers(source: dict, body: bytes, url: str) -> dict[str, str]:
    plugin = REGISTRY.source(source["type"])
    return plugin.sign(body, source["secret"], plugin.validate_config(source["config"]), url)


def test_every_source_type_accepts_its_provider_and_refuses_the_rest(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()
        api.post("/v1/routes", json={"endpoint_ids": [endpoint["id"]]}).raise_for_status()
        accepted: dict[str, str] = {}
        for case in CASES:
            source = make_source(api, case.type)
            url = source["ingest_url"]
            body = sample(case.type)
            good = sender_headers(source, body, url)
            reply = post(platform, source, body, good)
            if case.type == "twilio":
                assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/xml")
                assert "<Response></Response>" in reply.text
            else:
                assert reply.status_code == 202, (case.type, reply.text)
                accepted[case.type] = reply.json()["event_id"]
            # A plugin's answer is never a page a browser would render or sniff.
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in reply.headers["content-security-policy"]
            tampered = post(platform, source, body + b" ", good)
            assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "invalid_signature", case.type
            wrong_type = post(platform, source, body, {**good, "content-type": "multipart/form-data; boundary=b"})
            assert wrong_type.status_code in (401, 415), case.type  # twilio's signature covers the form
            if case.type != "twilio":
                assert wrong_type.status_code == 415 and wrong_type.json()["error"]["code"] == "unsupported_media_type"
        receiver.wait_for(lambda r: len(r) >= len(CASES))
        time.sleep(1)
        assert len(receiver.requests) == len(CASES)
        # Deliveries carry the provider's exact bytes.
        stripe_event = api.get(f"/v1/events/{accepted['stripe']}").json()
        assert stripe_event["type"] == "invoice.paid" and stripe_event["provider_event_id"].startswith("evt_")
        assert any(r.body == sample("stripe") for r in receiver.requests)


def test_duplicates_handshakes_rotation_and_disabled_sources(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()
        api.post("/v1/routes", json={"endpoint_ids": [endpoint["id"]]}).raise_for_status()

        # Stripe retries the same event: one event, the second answer says so.
        source = make_source(api, "stripe")
        body = sample("stripe")
        header = {"stripe-signature": stripe.WebhookSignature.generate_signature_header(
            body.decode(), source["secret"]), "content-type": "application/json"}
        first, again = post(platform, source, body, header), post(platform, source, body, header)
        assert first.json()["event_id"] == again.json()["event_id"] and again.json()["duplicate"] is True

        # Slack's url_verification and GitHub's ping are answered, not stored.
        slack = make_source(api, "slack")
        challenge = b'{"token": "t", "challenge": "abc123", "type": "url_verification"}'
        reply = post(platform, slack, challenge, sender_headers(slack, challenge, slack["ingest_url"]))
        assert reply.status_code == 200 and reply.json() == {"challenge": "abc123"}
        github = make_source(api, "github")
        ping = b'{"zen": "Design for failure.", "hook_id": 1}'
        pong = post(platform, github, ping, {**sender_headers(github, ping, ""), "x-github-event": "ping"})
        assert pong.status_code == 200

        # Twilio behind a proxy: signed for the public URL, verified through the configured base.
        twilio = make_source(api, "twilio", config={"public_base_url": "https://hooks.example.com"})
        form = sample("twilio")
        public_url = f"https://hooks.example.com/in/{twilio['id']}"
        signature = RequestValidator(twilio["secret"]).compute_signature(
            public_url, dict(parse_qsl(form.decode(), keep_blank_values=True)))
        reply = post(platform, twilio, form, {"x-twilio-signature": signature,
                                              "content-type": "application/x-www-form-urlencoded"})
        assert reply.status_code == 200 and "<Response>" in reply.text

        # Secret rotation: the old secret verifies during the grace period only.
        generic = make_source(api, "generic")
        plain = sample("generic")
        old_headers = sender_headers(generic, plain, "")
        rotated = api.post(f"/v1/sources/{generic['id']}/rotate-secret", json={"grace_seconds": 3600}).json()
        assert rotated["secret"] != generic["secret"] and rotated["previous_secret_expires_at"]
        assert post(platform, generic, plain, old_headers).status_code == 202
        assert post(platform, generic, plain, sender_headers(rotated, plain, "")).status_code == 202
        api.post(f"/v1/sources/{generic['id']}/rotate-secret", json={"grace_seconds": 0}).raise_for_status()
        assert post(platform, generic, plain, sender_headers(rotated, plain, "")).status_code == 401

        # A disabled source answers 410 and stores nothing.
        assert api.post(f"/v1/sources/{source['id']}/disable").json()["disabled_at"]
        gone = post(platform, source, body, header)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "source_disabled"
        actions = {e["action"] for e in api.get("/v1/audit").json()["data"]}
        assert {"source.rotate_secret", "source.disable"} <= actions
        receiver.wait_for(lambda r: len(r) >= 4)  # stripe once, twilio once, generic twice
        time.sleep(1)
        assert len(receiver.requests) == 4


def test_send_sample_and_plugins_list_commands(platform: Platform) -> None:
    with platform.client() as api:
        source = make_source(api, "intercom")
    done = subprocess.run([sys.executable, "-m", "switchboard.cli", "send-sample", "intercom", "--source",
                           source["id"], "--secret", source["secret"]], env=platform.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("202 ") and json.loads(done.stdout[4:])["event_id"].startswith("evt_")
    listed = subprocess.run([sys.executable, "-m", "switchboard.cli", "plugins", "list", "--json"],
                            env=platform.env, capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["name"] for r in rows if r["kind"] == "source"} == {c.type for c in CASES}
    assert all(r["from"].startswith("built-in") for r in rows)
