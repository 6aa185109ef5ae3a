"""Secrets at rest: sealed under the master key, opened by it or a previous one, never by another."""

from __future__ import annotations

import pytest

from switchboard.secretbox import SealedWithUnknownKey, SecretBox


def test_a_sealed_secret_opens_and_shows_nothing_of_itself() -> None:
    box = SecretBox("master-one")
    sealed = box.seal("whsec_very_secret_value")
    assert "very_secret" not in sealed and sealed.startswith("sb1:")
    assert box.open(sealed) == "whsec_very_secret_value"
    assert box.seal("same") != box.seal("same")  # a fresh nonce each time


def test_a_previous_master_key_still_opens_what_it_sealed_and_the_value_is_due_again() -> None:
    old = SecretBox("master-one")
    sealed = old.seal("s3cret")
    new = SecretBox("master-two", previous_master_keys=["master-one"])
    assert new.open(sealed) == "s3cret"
    assert not new.is_current(sealed) and new.is_current(new.seal("s3cret"))


def test_another_master_key_or_an_altered_value_is_refused() -> None:
    sealed = SecretBox("master-one").seal("s3cret")
    with pytest.raises(SealedWithUnknownKey):
        SecretBox("master-two").open(sealed)
    key_id, blob = sealed[4:].split(":", 1)
    # A character mid-blob: near the end, base64 padding can leave a changed character's low bits unused.
    middle = len(blob) // 2
    flipped = blob[:middle] + ("A" if blob[middle] != "A" else "B") + blob[middle + 1:]
    with pytest.raises(SealedWithUnknownKey):
        SecretBox("master-one").open(f"sb1:{key_id}:{flipped}")


def test_a_value_stored_before_sealing_is_read_as_it_is_and_is_due() -> None:
    box = SecretBox("master-one")
    assert box.open("plain-old-secret") == "plain-old-secret"
    assert not box.is_current("plain-old-secret") and box.is_current(None)


def test_a_deployments_box_takes_the_master_key_and_the_previous_ones_from_its_settings(tmp_path) -> None:
    from switchboard.masterkey import secret_box
    from switchboard.settings import Settings

    sealed = SecretBox("master-one").seal("s3cret")
    settings = Settings.from_env({"SWITCHBOARD_STATE_DIR": str(tmp_path), "SWITCHBOARD_MASTER_KEY": "master-two",
                                  "SWITCHBOARD_PREVIOUS_MASTER_KEYS": " master-one , master-zero"})
    assert settings.previous_master_keys == ("master-one", "master-zero")
    assert Settings.from_env(settings.as_env()).previous_master_keys == settings.previous_master_keys
    box = secret_box(settings)
    assert box.open(sealed) == "s3cret" and box.key_id == SecretBox("master-two").key_id


def test_a_configs_credentials_are_sealed_at_any_depth_and_nothing_else_is() -> None:
    box = SecretBox("master-one")
    config = {"method": "POST", "headers": {"Authorization": "Bearer abc123", "X-Api-Key": "k-456", "X-Trace": "on"},
              "access_token": "xoxb-789", "channel": "#ops", "retries": 3}
    sealed = box.seal_config(config)
    assert sealed["method"] == "POST" and sealed["channel"] == "#ops" and sealed["retries"] == 3
    assert sealed["headers"]["X-Trace"] == "on"
    for value in (sealed["headers"]["Authorization"], sealed["headers"]["X-Api-Key"], sealed["access_token"]):
        assert value.startswith("sb1:") and "abc123" not in value
    assert box.open_config(sealed) == config
    assert box.config_is_current(sealed) and not box.config_is_current(config)
    assert not SecretBox("master-two", ["master-one"]).config_is_current(sealed)


def test_the_service_token_comes_from_the_master_key_and_previous_ones_keep_working(tmp_path) -> None:
    import subprocess
    import sys

    from switchboard.masterkey import accepted_service_tokens, rotate_master_key, service_token
    from switchboard.settings import Settings

    settings = Settings(state_dir=tmp_path)
    (tmp_path / "master.key").write_text("first-master-key-" + "f" * 32 + "\n")
    first = service_token(settings)
    assert first.startswith("sbsvc_") and "first-master-key" not in first
    assert service_token(settings) == first  # the same for every process of the deployment
    printed = subprocess.run([sys.executable, "-m", "switchboard.cli", "keys", "service-token"], capture_output=True,
                             text=True, env={"SWITCHBOARD_STATE_DIR": str(tmp_path), "PATH": ""}, check=True)
    assert printed.stdout.strip() == first

    rotate_master_key(tmp_path)
    assert service_token(settings) != first
    assert accepted_service_tokens(settings) == (service_token(settings), first)  # a rolling restart still talks

    given = Settings(state_dir=tmp_path, service_token="sbsvc_given-" + "g" * 32)
    assert service_token(given) == given.service_token and accepted_service_tokens(given) == (given.service_token,)
    with pytest.raises(Exception, match="SWITCHBOARD_MASTER_KEY must be set"):
        service_token(Settings(state_dir=tmp_path / "elsewhere"))
