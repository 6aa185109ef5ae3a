from dataclasses import replace

import pytest
from nats.js import api

from switchboard.messaging import ACK, decode, encode, ensure_streams, retry_in, stream_specs
from switchboard.settings import Settings


async def test_streams_are_created_with_explicit_limits_and_file_storage(js) -> None:
    settings = Settings.from_env({})
    await ensure_streams(js, settings)
    for name in ("EVENTS", "DELIVERIES", "DEAD_LETTERS", "ATTEMPTS"):
        config = (await js.stream_info(name)).config
        assert config.storage == api.StorageType.FILE
        assert config.max_bytes == settings.stream_max_bytes
        assert config.max_age == settings.stream_max_age_s
        assert config.duplicate_window == settings.stream_duplicate_window_s
    assert (await js.stream_info("EVENTS")).config.retention == api.RetentionPolicy.WORK_QUEUE
    assert (await js.stream_info("EVENTS")).config.discard == api.DiscardPolicy.NEW


async def test_ensuring_twice_is_harmless_and_applies_changed_limits(js) -> None:
    settings = Settings.from_env({})
    await ensure_streams(js, settings)
    ack = await js.publish("events.t.s", b"{}", headers={"Nats-Msg-Id": "e1"})
    await ensure_streams(js, replace(settings, stream_max_bytes=2 * 1024**3))
    info = await js.stream_info("EVENTS")
    assert info.config.max_bytes == 2 * 1024**3
    assert info.state.messages == 1 and ack.seq == 1


async def test_the_message_id_deduplicates_within_the_window(js) -> None:
    await ensure_streams(js, Settings.from_env({}))
    first = await js.publish("events.t.s", b"{}", headers={"Nats-Msg-Id": "same"})
    second = await js.publish("events.t.s", b"{}", headers={"Nats-Msg-Id": "same"})
    assert not first.duplicate and second.duplicate
    assert (await js.stream_info("EVENTS")).state.messages == 1


def test_duplicate_window_never_exceeds_max_age() -> None:
    s = replace(Settings.from_env({}), stream_max_age_s=60, stream_duplicate_window_s=3600)
    assert all(spec.duplicate_window_s == 60 for spec in stream_specs(s))


def test_encoding_round_trips_and_rejects_non_objects() -> None:
    assert decode(encode({"a": "é", "b": [1]})) == {"a": "é", "b": [1]}
    with pytest.raises(ValueError):
        decode(b"[1]")
    assert retry_in(3).delay_s == 3 and ACK.action == "ack"
