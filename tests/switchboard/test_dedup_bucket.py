"""The edge's dedup period: its settings and the KV bucket declared with the streams."""


import pytest
from nats.js import api

from switchboard.messaging import DEDUP_BUCKET, ensure_streams
from switchboard.settings import Settings, SettingsError


def test_the_dedup_window_defaults_to_three_days_and_is_configurable() -> None:
    assert Settings.from_env({}).bus.dedup_window_s == 3 * 24 * 3600
    settings = Settings.from_env({"SWITCHBOARD_DEDUP_WINDOW": "604800", "SWITCHBOARD_DEDUP_MAX_BYTES": "2097152"})
    assert (settings.bus.dedup_window_s, settings.bus.dedup_max_bytes) == (604800, 2097152)
    assert Settings.from_env(settings.as_env()) == settings  # what a child process is started with


@pytest.mark.parametrize("env, message", [
    ({"SWITCHBOARD_DEDUP_WINDOW": "3 days"}, "SWITCHBOARD_DEDUP_WINDOW must be an integer"),
    ({"SWITCHBOARD_DEDUP_WINDOW": "0"}, "SWITCHBOARD_DEDUP_WINDOW must be at least 1"),
    # Shorter than the stream's own duplicate window it would shorten nothing: refused, not ignored.
    ({"SWITCHBOARD_DEDUP_WINDOW": "3600"}, "must be at least SWITCHBOARD_STREAM_DUPLICATE_WINDOW"),
    ({"SWITCHBOARD_DEDUP_WINDOW": "60", "SWITCHBOARD_STREAM_DUPLICATE_WINDOW": "120"}, "must be at least"),
    ({"SWITCHBOARD_DEDUP_MAX_BYTES": "1000"}, "SWITCHBOARD_DEDUP_MAX_BYTES must be at least"),
])
def test_unusable_dedup_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


async def test_the_bucket_is_declared_with_the_streams_and_follows_the_settings(js) -> None:
    settings = Settings.from_env({})
    await ensure_streams(js, settings)
    bucket = await js.key_value(DEDUP_BUCKET)
    status = await bucket.status()
    assert status.ttl == settings.bus.dedup_window_s
    config = (await js.stream_info(f"KV_{DEDUP_BUCKET}")).config
    assert config.storage == api.StorageType.FILE
    assert (config.max_bytes, config.num_replicas, config.max_msgs_per_subject) == (
        settings.bus.dedup_max_bytes, settings.bus.replicas, 1)

    await bucket.put("evt_1", b"")
    # A restart with a longer period:
    await ensure_streams(js, settings.with_group("bus", dedup_window_s=7 * 24 * 3600))
    assert (await js.stream_info(f"KV_{DEDUP_BUCKET}")).config.max_age == 7 * 24 * 3600
    assert (await bucket.get("evt_1")).key == "evt_1"
