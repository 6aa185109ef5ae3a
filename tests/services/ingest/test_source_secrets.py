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


async def test_a_change_to_a_source_another_edge_deleted_is_404_not_a_crash(pool) -> None:
    """Two edge processes: the second still has the source in its cache when the first deletes it."""
    from datetime import timedelta
    from pathlib import Path

    from plugins.manager import load_registry
    from switchboard.database import apply_migrations
    from switchboard.errors import NotFound

    await apply_migrations(pool, "ingest", Path(__file__).parents[3] / "services/ingest/migrations")
    registry = load_registry(env={})
    here, there = SourceStore(pool, registry), SourceStore(pool, registry)
    source = await here.create("t1", "orders", "generic", {}, "")
    await there.get("t1", source.id)  # cached there
    await here.delete("t1", source.id)
    for change in (lambda: there.update("t1", source.id, {"name": "renamed"}),
                   lambda: there.set_enabled("t1", source.id, False),
                   lambda: there.rotate_secret("t1", source.id, timedelta(0))):
        with pytest.raises(NotFound):
            await change()
