"""Secrets at rest: a dump of the database holds none, and a new master key keeps everything working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable

from standardwebhooks.webhooks import Webhook

from switchboard.cli.embedded import postgres_bin_dir
from tests.e2e.slice import create_slice, send
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform
from tests.receivers import Receiver


def dump(database_url: str) -> str:
    """``pg_dump`` of the whole database, as an operator (or a stolen backup) would have it."""
    return subprocess.run([str(postgres_bin_dir() / "pg_dump"), "--dbname", database_url], check=True,
                          capture_output=True, text=True).stdout


def test_no_secret_is_in_a_dump_and_a_master_key_rotation_keeps_sources_verifying_and_endpoints_signing(
        platform_factory: Callable[..., Platform], database_url: str, tmp_path: Path) -> None:
    with Receiver() as receiver:
        first = platform_factory()
        with first.client() as api:
            s = create_slice(api, receiver.url)
            credential = "Bearer e2e-credential-" + "c" * 24  # a header the receiver wants: a credential too
            configured = api.patch(f"/v1/endpoints/{s.endpoint_id}",
                                   json={"config": {"headers": {"Authorization": credential}}})
            assert configured.status_code == 200, configured.text
            assert credential not in configured.text  # masked
            rotated = api.post(f"/v1/endpoints/{s.endpoint_id}/rotate-secret", json={"grace_seconds": 3600})
            assert rotated.status_code == 200, rotated.text
            signing = [s.endpoint_secret, rotated.json()["secret"]]
            ai_key = "sk-ant-e2e-tenant-" + "k" * 24  # the tenant's own Anthropic key
            settings = api.patch("/v1/ai/settings", json={"provider_keys": {"anthropic": ai_key}})
            assert settings.status_code == 200 and settings.json()["provider_keys"] == {"anthropic": "…kkkk"}
            wait_for_delivery(api, send(first, s.source_id, s.source_secret, {"type": "t", "n": 1}))
        admin_key = first.admin_key
        assert receiver.requests[-1].headers["authorization"] == credential
        secrets = [s.source_secret, *signing, *(secret.removeprefix("whsec_") for secret in signing),
                   credential.removeprefix("Bearer "), ai_key]
        before = dump(database_url)
        assert "ingest.sources" in before and "delivery.endpoints" in before  # the dump is of the platform
        assert not [secret for secret in secrets if secret in before]
        assert first.stop() == 0

        rotation = subprocess.run([sys.executable, "-m", "switchboard.cli", "keys", "rotate-master"],
                                  env={**first.env, "PATH": os.environ.get("PATH", "")}, capture_output=True,
                                  text=True)
        assert rotation.returncode == 0, rotation.stderr
        old_key = (first.state_dir / "master.key.previous").read_text().strip()
        assert old_key and old_key != (first.state_dir / "master.key").read_text().strip()

        second = platform_factory()
        with second.client(admin_key) as api:  # an API key hashed under the old master key still works
            event_id = send(second, s.source_id, s.source_secret, {"type": "t", "n": 2})  # the source verifies
            wait_for_delivery(api, event_id)
            assert api.get("/v1/ai/settings").json()["provider_keys"] == {"anthropic": "…kkkk"}  # opens
        delivered = receiver.requests[-1]
        for secret in signing:  # the endpoint signs with both of its secrets, as before
            assert Webhook(secret).verify(delivered.body, delivered.headers)["n"] == 2
        assert delivered.headers["authorization"] == credential
        after = dump(database_url)
        assert not [secret for secret in secrets if secret in after]
        # Everything was sealed again with the new master key: the old one could go.
        # The source's, two signing secrets, the header, the AI key.
        assert before.count("sb1:") == after.count("sb1:") == 5
        old_id = _key_id(old_key)
        assert f"sb1:{old_id}:" in before and f"sb1:{old_id}:" not in after


def _key_id(master_key: str) -> str:
    from switchboard.secretbox import SecretBox

    return SecretBox(master_key).key_id
