from __future__ import annotations

from pathlib import Path
from collections.abc import Callable, Iterator

import pytest

from switchboard.cli.embedded import EmbeddedNats
from tests.platform_runner import Platform, base_env


@pytest.fixture
def platform_factory(tmp_path: Path, nats_server: EmbeddedNats, database_url: str) -> Iterator[Callable[..., Platform]]:
    """Start the whole platform on this test's own NATS and database, with extra settings."""
    started: list[Platform] = []

    def start(**settings: str) -> Platform:
        env = base_env(tmp_path / "state", SWITCHBOARD_NATS_URL=nats_server.url,
                       SWITCHBOARD_DATABASE_URL=database_url, **settings)
        running = Platform(env).start()
        started.append(running)
        return running

    yield start
    for running in started:
        code = running.stop()
        assert code == 0, f"switchboard up exited {code}:\n{running.log_tail()}"


@pytest.fixture
def platform(platform_factory: Callable[..., Platform]) -> Platform:
    """The whole platform with default settings."""
    return platform_factory()
