"""Endpoint filters for routing tests that run without DeliveryService (the platform tests use the
real one, services/router/endpoint_types.py)."""

from collections.abc import Mapping, Sequence


class StaticEndpointTypes:
    def __init__(self, types: Mapping[str, Sequence[str]] | None = None) -> None:
        self.types = dict(types or {})

    async def of(self, tenant_id: str) -> Mapping[str, Sequence[str]]:
        return self.types


NO_FILTERS = StaticEndpointTypes()
