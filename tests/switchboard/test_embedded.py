import subprocess
import time

import nats.errors
import nats.js.errors
import psycopg
import pytest

from switchboard.cli.embedded import EmbeddedNats, EmbeddedPostgres, process_state
from switchboard.messaging import connect_nats


def test_embedded_postgres_keeps_its_data_across_restarts(tmp_path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    dsn = server.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    server.stop()
    assert server.process is None

    again = EmbeddedPostgres(tmp_path / "pg")
    try:
        with psycopg.connect(again.start()) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == ("still here",)
    finally:
        again.stop()


async def test_embedded_nats_keeps_jetstream_data_across_restarts(tmp_path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    nc = await connect_nats(server.start(), "t")
    js = nc.jetstream()
    await js.add_stream(name="KEEP", subjects=["keep.>"])
    await js.publish("keep.1", b"durable")
    await nc.close()
    server.stop()

    nc = await connect_nats(server.start(), "t")
    try:
        msg = await nc.jetstream().get_msg("KEEP", 1)
        assert msg.data == b"durable"
    finally:
        await nc.close()
        server.stop()


def _crash(server: EmbeddedPostgres | EmbeddedNats) -> None:
    """Kill the server's process, as a crash would, and forget it."""
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    server.process = None


def _lock_naming(data_dir, pid: int) -> None:
    lock = data_dir / "postmaster.pid"
    lines = lock.read_text().splitlines() if lock.exists() else []
    lock.write_text("\n".join([str(pid), *lines[1:]]) + "\n")


def test_embedded_postgres_starts_over_a_lock_naming_a_zombie_or_another_program(tmp_path) -> None:
    """A killed postmaster's lock file names a pid that is now a zombie (its parent has
    not waited yet) or another program: postgres would refuse to start over it."""
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    port = server.port
    _crash(server)
    zombie = subprocess.Popen(["true"])  # exits at once; not waited for: a zombie
    other = subprocess.Popen(["sleep", "60"])
    try:
        for holder in (zombie, other):
            deadline = time.monotonic() + 5
            while holder is zombie and process_state(zombie.pid) != "Z" and time.monotonic() < deadline:
                time.sleep(0.01)
            _lock_naming(server.data_dir, holder.pid)
            server.start()
            assert server.port == port  # the same port: clients' URLs stay valid
            with psycopg.connect(server.dsn(), connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            _crash(server)
        assert other.poll() is None  # never stopped: it is not ours
    finally:
        other.kill()
        zombie.wait()
        other.wait()
        server.stop()


async def test_embedded_nats_restarts_on_its_port_and_clients_reconnect(tmp_path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    nc = await connect_nats(url, "t")
    try:
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        _crash(server)
        assert server.start() == url
        # The client notices the lost connection a moment later; a publish sent meanwhile times out.
        deadline = time.monotonic() + 10
        while True:
            try:
                ack = await js.publish("keep.1", b"after", timeout=1)
                break
            except nats.errors.TimeoutError:
                assert time.monotonic() < deadline, "the client did not reconnect within 10 s"
        assert ack.seq == 1
    finally:
        await nc.close()
        server.stop()


async def test_embedded_nats_honours_a_disk_budget(tmp_path) -> None:
    """A small max_file_store is how the chaos suite simulates a full disk: publishes are refused."""
    server = EmbeddedNats(tmp_path / "nats", max_file_store=2 * 1024 * 1024)
    nc = await connect_nats(server.start(), "t")
    try:
        js = nc.jetstream()
        await js.add_stream(name="FILL", subjects=["fill.>"])
        with pytest.raises(nats.js.errors.APIError):
            for n in range(100):
                await js.publish(f"fill.{n}", b"x" * 100_000, timeout=5)
    finally:
        await nc.close()
        server.stop()
