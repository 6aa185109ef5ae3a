"""Fixtures for plugin authors' tests, registered with pytest by Switchboard's ``pytest11`` entry point.

- ``switchboard_platform``: `switchboard up` on embedded NATS JetStream and
  PostgreSQL, once per test session, with every plugin installed in the
  environment loaded; its ``client()`` calls the REST API with the admin key.
- ``switchboard_platform_env``: extra environment for it (override the
  fixture to set ``SWITCHBOARD_*`` settings).
- ``switchboard_receiver``: a loopback HTTP server that records requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.testing.platform import Platform, base_env
from switchboard.testing.receivers import Receiver


@pytest.fixture(scope="session")
def switchboard_platform_env() -> dict[str, str]:
    """``SWITCHBOARD_*`` settings for ``switchboard_platform`` beyond the loopback defaults."""
    return {}


@pytest.fixture(scope="session")
def switchboard_platform(tmp_path_factory: pytest.TempPathFactory,
                         switchboard_platform_env: dict[str, str]) -> Iterator[Platform]:
    """A running platform, state in a temporary folder; stopped at the end of the session."""
    platform = Platform(base_env(tmp_path_factory.mktemp("switchboard"), **switchboard_platform_env))
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


@pytest.fixture
def switchboard_receiver() -> Iterator[Receiver]:
    """A loopback HTTP server answering 200; set ``status``, ``delay_s`` or ``response_body`` to change that."""
    with Receiver() as receiver:
        yield receiver
