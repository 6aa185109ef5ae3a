import psycopg

from switchboard.embedded import EmbeddedNats, EmbeddedPostgres
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
