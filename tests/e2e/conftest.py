from __future__ import annotations

import contextlib
from pathlib import Path
from collections.abc import Callable, Iterator

import pytest

from switchboard.cli.embedded import EmbeddedNats
from tests.conftest import fresh_database, running_nats
from tests.platform_runner import Platform, base_env


@contextlib.contextmanager
def platforms(state: Path, nats_url: str, database_url: str) -> Iterator[Callable[..., Platform]]:
    """A starter of the whole platform on this NATS and database, with extra settings; each one
    started is stopped afterwards, and must exit cleanly."""
    started: list[Platform] = []

    def start(**settings: str) -> Platform:
        env = base_env(state, SWITCHBOARD_NATS_URL=nats_url, SWITCHBOARD_DATABASE_URL=database_url, **settings)
        running = Platform(env).start()
        started.append(running)
        return running

    yield start
    for running in started:
        code = running.stop()
        assert code == 0, f"switchboard up exited {code}:\n{running.log_tail()}"


@pytest.fixture
def platform_factory(tmp_path: Path, nats_server: EmbeddedNats, database_url: str) -> Iterator[Callable[..., Platform]]:
    """Start the whole platform on this test's own NATS and database, with extra settings."""
    with platforms(tmp_path / "state", nats_server.url, database_url) as start:
        yield start


@pytest.fixture(scope="module")
def refusing_platform(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Platform]:
    """One platform with default settings for a module's tests of requests it must refuse, a test per
    case: a refused request changes nothing and each case makes only objects of its own, so the cases
    cannot see each other (a platform takes ~7 s to start on 2 cores, and these cases are dozens).
    Tests that change what others would see (settings, counts, processes) get a platform of their own."""
    folder = tmp_path_factory.mktemp("refusing-platform")
    with running_nats(folder / "nats") as nats, fresh_database(postgres_server) as database_url, \
            platforms(folder / "state", nats.url, database_url) as start:
        yield start()


@pytest.fixture
def platform(platform_factory: Callable[..., Platform]) -> Platform:
    """The whole platform with default settings."""
    return platform_factory()
