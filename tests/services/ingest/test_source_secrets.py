import secrets

import pytest

from services.ingest.sources import SourceStore
from tests.sealing import BOX


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
    here, there = SourceStore(pool, registry, box=BOX), SourceStore(pool, registry, box=BOX)
    source = await here.create("t1", "orders", "generic", {}, "")
    await there.get("t1", source.id)  # cached there
    await here.delete("t1", source.id)
    for change in (lambda: there.update("t1", source.id, {"name": "renamed"}),
                   lambda: there.set_enabled("t1", source.id, False),
                   lambda: there.rotate_secret("t1", source.id, timedelta(0))):
        with pytest.raises(NotFound):
            await change()


async def test_secrets_stored_in_the_clear_before_sealing_are_sealed_at_the_next_start(pool) -> None:
    """Sources created before secrets were sealed keep verifying, and are sealed (and their record's
    revision moves, so the bucket's copy is rewritten) by the pass each start runs."""
    from pathlib import Path

    from plugins.manager import load_registry
    from switchboard.database import apply_migrations

    await apply_migrations(pool, "ingest", Path(__file__).parents[3] / "services/ingest/migrations")
    store = SourceStore(pool, load_registry(env={}), box=BOX)
    source = await store.create("t1", "orders", "generic", {}, "s" * 32)
    async with pool.connection() as conn:
        await conn.execute("UPDATE ingest.sources SET secret = %s WHERE id = %s", ("s" * 32, source.id))
    assert (await store.get("t1", source.id)).secret == "s" * 32  # read as it is
    assert await store.reseal() == 1 and await store.reseal() == 0
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT secret, revision FROM ingest.sources WHERE id = %s",
                                        (source.id,))).fetchone()
    assert BOX.is_current(row["secret"]) and "s" * 32 not in row["secret"]
    assert row["revision"] == source.revision + 1
    store._cache.clear()
    assert (await store.get("t1", source.id)).secret == "s" * 32
