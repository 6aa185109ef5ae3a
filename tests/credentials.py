"""The service token of tests that build gRPC servers and clients themselves (services derive theirs from
the master key: switchboard.masterkey.service_token)."""

from switchboard.rpc_access import AccessControl

SERVICE_TOKEN = "sbsvc_tests-" + "t" * 32
SERVICE_METADATA = (("authorization", f"Bearer {SERVICE_TOKEN}"),)


def service_only() -> AccessControl:
    """A server that takes the service token and no API key (the test serves no tenant's data)."""
    return AccessControl(None, [SERVICE_TOKEN])
