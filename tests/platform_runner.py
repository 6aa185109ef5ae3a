"""Run `switchboard up` as a real process tree, for end-to-end tests.

:class:`switchboard.testing.platform.Platform` does the running (plugin
authors use it too); the project's tests add gRPC channels carrying the
deployment's service token.
"""

from __future__ import annotations

import grpc

from switchboard.settings import Settings
from switchboard.testing import platform as shared
from switchboard.testing.platform import base_env
from tests.credentials import service_channel

__all__ = ["Platform", "base_env"]


class Platform(shared.Platform):
    def service_channel(self, service: str) -> grpc.Channel:
        """A blocking channel to a service, its calls carrying the deployment's service token."""
        return service_channel(Settings(state_dir=self.state_dir), self.grpc_target(service))
