"""The ingest service with key verification replaced by a fixed principal.

Only for auth_bench.py: the same edge, routes, rate limiting and publishing,
minus the cost being measured (verifying the bearer key).
"""

from __future__ import annotations

import os

from services.ingest.app import IngestApp
from switchboard.apikeys import Principal
from switchboard.service import run


class FixedPrincipal:
    def __init__(self, clients, ttl_s: float) -> None:
        self.principal = Principal(os.environ["BENCH_TENANT_ID"], "bench", frozenset({"admin"}))

    async def bearer(self, header) -> Principal:
        return self.principal

    async def verify(self, key) -> Principal:
        return self.principal


if __name__ == "__main__":
    run(IngestApp(authenticator_factory=FixedPrincipal))
