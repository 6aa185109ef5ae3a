import secrets

import pytest

from services.ingest.sources import SourceStore


class NoGenerator:
    """A source type without generate_secret: the platform makes the secret."""


def test_generated_secrets_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # token_urlsafe starts one secret in 64 with "-", which a command line takes for an option.
    drawn = iter(["-" + "a" * 42, "-" + "b" * 42, "c" * 43])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes=None: next(drawn))
    assert SourceStore._checked_secret(NoGenerator(), "") == "c" * 43


def test_generated_secrets_keep_their_strength() -> None:
    drawn = {SourceStore._checked_secret(NoGenerator(), "") for _ in range(2_000)}
    assert len(drawn) == 2_000
    assert all(len(secret) == 43 and not secret.startswith("-") for secret in drawn)
    assert {secret[0] for secret in drawn} >= set("_ABCxyz019")  # every other first character still occurs
