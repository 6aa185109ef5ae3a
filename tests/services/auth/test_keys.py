import subprocess
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from services.auth.keys import KeyStore, parse_key
from switchboard.database import apply_migrations
from switchboard.cli.embedded import postgres_bin_dir
from switchboard.errors import InvalidRequest, NotFound, Unauthenticated

MIGRATIONS = Path(__file__).parents[3] / "services/auth/migrations"


@pytest.fixture
async def keys(pool) -> KeyStore:
    await apply_migrations(pool, "auth", MIGRATIONS)
    return KeyStore(pool, pepper=b"p" * 32)


async def test_a_created_key_verifies_to_its_tenant_and_scopes(keys: KeyStore) -> None:
    tenant = await keys.create_tenant("acme")
    issued = await keys.create_key(tenant.id, "ci", ["read", "events:publish"])
    assert issued.secret.startswith(f"sb_live_{issued.key.id}_")
    assert issued.key.prefix == f"sb_live_{issued.key.id}"
    principal = await keys.verify(issued.secret)
    assert principal.tenant_id == tenant.id and principal.scopes == ("events:publish", "read")


@pytest.mark.parametrize("presented", ["", "sb_live_x", "Bearer abc", "sb_live_" + "a" * 12 + "_" + "b" * 39])
async def test_malformed_keys_are_unauthenticated(keys: KeyStore, presented: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        await keys.verify(presented)


async def test_unknown_tampered_revoked_and_expired_keys_are_refused(keys: KeyStore, pool) -> None:
    tenant = await keys.create_tenant("acme")
    issued = await keys.create_key(tenant.id, "k", ["admin"])
    key_id = parse_key(issued.secret)
    tampered = issued.secret[:-1] + ("a" if issued.secret[-1] != "a" else "b")
    with pytest.raises(Unauthenticated, match="unknown"):
        await keys.verify(tampered)
    with pytest.raises(Unauthenticated, match="unknown"):
        await keys.verify(f"sb_live_{'0' * 12}_{'0' * 40}")
    async with pool.connection() as conn:
        await conn.execute("UPDATE auth.api_keys SET expires_at = %s WHERE id = %s",
                           (datetime.now(UTC) - timedelta(seconds=1), key_id))
    with pytest.raises(Unauthenticated, match="expired"):
        await keys.verify(issued.secret)
    async with pool.connection() as conn:
        await conn.execute("UPDATE auth.api_keys SET revoked_at = now() WHERE id = %s", (key_id,))
    with pytest.raises(Unauthenticated, match="revoked"):
        await keys.verify(issued.secret)


async def test_scopes_and_tenants_are_checked(keys: KeyStore) -> None:
    tenant = await keys.create_tenant("acme")
    with pytest.raises(InvalidRequest, match="unknown scopes: root"):
        await keys.create_key(tenant.id, "k", ["root"])
    with pytest.raises(InvalidRequest):
        await keys.create_key(tenant.id, "k", [])
    with pytest.raises(NotFound):
        await keys.create_key("ten_missing", "k", ["read"])


async def test_a_database_dump_holds_no_key_in_plaintext(keys: KeyStore, database_url: str) -> None:
    tenant = await keys.create_tenant("acme")
    issued = await keys.create_key(tenant.id, "k", ["admin"])
    dump = subprocess.run([str(postgres_bin_dir() / "pg_dump"), "--dbname", database_url],
                          capture_output=True, text=True, check=True).stdout
    assert "CREATE TABLE auth.api_keys" in dump and issued.key.id in dump
    secret_part = issued.secret.rsplit("_", 1)[1]
    assert issued.secret not in dump and secret_part not in dump


async def test_listing_shows_no_secret_and_tracks_use(keys: KeyStore) -> None:
    tenant = await keys.create_tenant("acme")
    issued = await keys.create_key(tenant.id, "ci", ["read"], expires_in=timedelta(days=1))
    [listed] = await keys.list_keys(tenant.id)
    assert listed.id == issued.key.id and listed.last_used_at is None
    assert listed.expires_at is not None and issued.secret not in repr(listed)
    await keys.verify(issued.secret)
    [used] = await keys.list_keys(tenant.id)
    assert used.last_used_at is not None
    assert await keys.list_keys((await keys.create_tenant("other")).id) == []


async def test_revocation_is_immediate_and_tenant_scoped(keys: KeyStore) -> None:
    tenant, other = await keys.create_tenant("acme"), await keys.create_tenant("other")
    issued = await keys.create_key(tenant.id, "k", ["admin"])
    with pytest.raises(NotFound):
        await keys.revoke_key(other.id, issued.key.id)
    await keys.verify(issued.secret)
    revoked = await keys.revoke_key(tenant.id, issued.key.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        await keys.verify(issued.secret)


async def test_rotation_keeps_the_old_key_for_the_grace_period_only(keys: KeyStore, pool) -> None:
    tenant = await keys.create_tenant("acme")
    old = await keys.create_key(tenant.id, "deploy", ["events:publish", "read"])
    new = await keys.rotate_key(tenant.id, old.key.id, grace=timedelta(hours=1))
    assert new.key.scopes == old.key.scopes and new.key.name == "deploy" and new.secret != old.secret
    assert (await keys.verify(old.secret)).key_id == old.key.id  # still inside the grace period
    assert (await keys.verify(new.secret)).key_id == new.key.id
    async with pool.connection() as conn:  # the grace period passes
        await conn.execute("UPDATE auth.api_keys SET expires_at = now() - interval '1 s' WHERE id = %s",
                           (old.key.id,))
    with pytest.raises(Unauthenticated, match="expired"):
        await keys.verify(old.secret)
    with pytest.raises(InvalidRequest, match="expired key cannot be rotated"):
        await keys.rotate_key(tenant.id, old.key.id)


async def test_expiry_bounds_and_audit_log(keys: KeyStore) -> None:
    tenant = await keys.create_tenant("acme")
    with pytest.raises(InvalidRequest):
        await keys.create_key(tenant.id, "k", ["read"], expires_in=timedelta(seconds=-5))
    first = await keys.record_audit(tenant.id, "key1", "source.create", "src_1")
    second = await keys.record_audit(tenant.id, "key1", "route.create", "rt_1")
    await keys.record_audit("ten_other", "key2", "source.create", "src_2")
    entries = await keys.list_audit(tenant.id)
    assert [e.id for e in entries] == [second.id, first.id]
    assert [e.action for e in await keys.list_audit(tenant.id, before_id=second.id)] == ["source.create"]


async def test_after_the_master_key_changes_a_key_still_verifies_and_is_hashed_anew(keys: KeyStore, pool) -> None:
    """The pepper comes from the master key: a key hashed under the previous one verifies while that
    key is given as previous, and is hashed with the new pepper as it does (then the old is not needed)."""
    tenant = await keys.create_tenant("acme")
    issued = await keys.create_key(tenant.id, "ci", ["read"])
    rotated = KeyStore(pool, pepper=b"n" * 32, previous_peppers=[b"p" * 32])
    assert (await rotated.verify(issued.secret)).tenant_id == tenant.id
    assert (await KeyStore(pool, pepper=b"n" * 32).verify(issued.secret)).tenant_id == tenant.id
    with pytest.raises(Unauthenticated):
        await keys.verify(issued.secret)  # the old pepper alone no longer matches
    with pytest.raises(Unauthenticated):
        await KeyStore(pool, pepper=b"z" * 32, previous_peppers=[b"y" * 32]).verify(issued.secret)
