import asyncio
from pathlib import Path

import pytest

from switchboard.database import DatabaseUnavailable, apply_migrations, describe_dsn, load_migrations, open_pool


def write(directory: Path, name: str, sql: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(sql)


async def test_migrations_apply_in_order_once(pool, tmp_path: Path) -> None:
    write(tmp_path, "0001_init.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    write(tmp_path, "0002_more.sql", "ALTER TABLE things ADD COLUMN name text; INSERT INTO things VALUES (1, 'a');")

    assert await apply_migrations(pool, "demo", tmp_path) == [1, 2]
    assert await apply_migrations(pool, "demo", tmp_path) == []

    write(tmp_path, "0003_later.sql", "INSERT INTO things VALUES (2, 'b');")
    assert await apply_migrations(pool, "demo", tmp_path) == [3]
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT id, name FROM demo.things ORDER BY id")).fetchall()
        versions = await (await conn.execute("SELECT version FROM demo.schema_migrations ORDER BY 1")).fetchall()
    assert rows == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert [v["version"] for v in versions] == [1, 2, 3]


async def test_concurrent_starts_apply_each_migration_exactly_once(pool, tmp_path: Path) -> None:
    write(tmp_path, "0001_init.sql", "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);")
    results = await asyncio.gather(*(apply_migrations(pool, "race", tmp_path) for _ in range(4)))
    assert sorted(map(len, results)) == [0, 0, 0, 1]
    async with pool.connection() as conn:
        assert (await (await conn.execute("SELECT count(*) AS c FROM race.counter")).fetchone())["c"] == 1


async def test_a_failing_migration_leaves_nothing_half_applied(pool, tmp_path: Path) -> None:
    write(tmp_path, "0001_bad.sql", "CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(Exception, match="no_such_function"):
        await apply_migrations(pool, "broken", tmp_path)
    async with pool.connection() as conn:
        exists = await (await conn.execute("SELECT to_regclass('broken.half') AS t")).fetchone()
    assert exists["t"] is None


def test_migration_files_must_be_numbered_and_unique(tmp_path: Path) -> None:
    write(tmp_path, "init.sql", "")
    with pytest.raises(ValueError, match="NNNN_name.sql"):
        load_migrations(tmp_path)
    (tmp_path / "init.sql").unlink()
    write(tmp_path, "0001_a.sql", "")
    write(tmp_path, "0001_b.sql", "")
    with pytest.raises(ValueError, match="share version 1"):
        load_migrations(tmp_path)


def test_every_service_ships_valid_migrations() -> None:
    root = Path(__file__).parents[2] / "services"
    for service in ("auth", "ingest", "router", "ai", "delivery", "analytics"):
        assert load_migrations(root / service / "migrations"), service


async def test_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_pool("postgresql://admin:s3cret-pw@127.0.0.1:1/app", timeout=2)
    assert "127.0.0.1:1/app" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert describe_dsn("host=db.internal port=6543 dbname=x password=p") == "db.internal:6543/x"
