"""The service token of tests that build gRPC servers and clients themselves (services derive theirs from
the master key: switchboard.masterkey.service_token)."""

import collections
from typing import Any
from collections.abc import Callable

import grpc

from switchboard.masterkey import service_token
from switchboard.rpc_access import AccessControl
from switchboard.settings import Settings

SERVICE_TOKEN = "sbsvc_tests-" + "t" * 32
SERVICE_METADATA = (("authorization", f"Bearer {SERVICE_TOKEN}"),)


def service_only() -> AccessControl:
    """A server that takes the service token and no API key (the test serves no tenant's data)."""
    return AccessControl(None, [SERVICE_TOKEN])


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _WithCredential(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, authorization: str) -> None:
        self._credential = (("authorization", authorization),)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                              request: Any) -> Any:
        return continuation(_CallDetails(details.method, details.timeout,
                                         (*self._credential, *(details.metadata or ())), details.credentials,
                                         details.wait_for_ready, details.compression), request)


def service_channel(settings: Settings, target: str) -> grpc.Channel:
    """A blocking channel whose calls carry the deployment's service token, for tests and benchmarks that
    use the generated stubs directly (with wait_for_ready and the like); code of the platform uses
    switchboard.client."""
    return grpc.intercept_channel(grpc.insecure_channel(target), _WithCredential(f"Bearer {service_token(settings)}"))
