from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from switchboard.embedded import EmbeddedNats
from tests.platform_runner import Platform, base_env


@pytest.fixture
def platform(tmp_path: Path, nats_server: EmbeddedNats, database_url: str) -> Iterator[Platform]:
    """The whole platform on this test's own NATS and database."""
    env = base_env(tmp_path / "state", SWITCHBOARD_NATS_URL=nats_server.url, SWITCHBOARD_DATABASE_URL=database_url)
    running = Platform(env).start()
    try:
        yield running
    finally:
        code = running.stop()
        assert code == 0, f"switchboard up exited {code}:\n{running.log_tail()}"
