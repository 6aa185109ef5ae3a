"""The delivery HTTP client for tests, closed afterwards."""

from __future__ import annotations

from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

from switchboard.netguard import Networks
from switchboard.outbound import OutboundClient


@asynccontextmanager
async def outbound_client(allow_private: bool = True, allowed: Networks = ()) -> AsyncIterator[OutboundClient]:
    client = OutboundClient(allow_private=allow_private, allowed=allowed)
    try:
        yield client
    finally:
        await client.aclose()
