"""The tenants' validating event types, at the edge: ``POST /v1/events`` refuses a payload its type's
JSON Schema does not accept when the tenant's catalogue says that type validates (docs/event-types.md).

The catalogue is RouterService's (``ListEventTypes``, the validating types only), asked for every
published event and changed rarely, so the edge never calls the router per event: each tenant's is
cached for ``ttl_s`` (a change shows within about that on every edge), read once however many requests
ask at the same moment, and each schema is compiled once per version of its type (a reload keeps the
validators of the types that did not change). Once a tenant's catalogue is known no request waits for
the router: past ``ttl_s`` the last known answers while it is read again, and stays while the router
cannot be reached. With none known yet, the event is refused with 503 and Retry-After: the edge
cannot tell whether its type validates, and accepting it unchecked would break the promise a
validating type makes (nothing it refuses reaches the endpoints), while the caller's retry loses
nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from switchboard.errors import InvalidRequest, SwitchboardError, Unavailable
from switchboard.protojson import plain
from switchboard.rpc import ServiceClients, call
from switchboard.v1 import router_pb2, router_pb2_grpc

__all__ = ["EventSchemas", "Validating"]

logger = logging.getLogger(__name__)

# Tenants whose catalogues are remembered; past this the cache starts again.
MAX_TENANTS = 10_000
# The largest page the router gives (it also ends a page after about 1 MiB of schemas).
PAGE = 500
# A refusal quotes at most this much of jsonschema's message (which can quote a whole value).
MAX_PROBLEM = 300


@dataclass(frozen=True)
class Validating:
    """A validating type's compiled schema, and which version of the type it was compiled from."""

    version: tuple[int, int]
    validator: Any


def _where(path: Any) -> str:
    out = "payload"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class EventSchemas:
    def __init__(self, clients: ServiceClients, ttl_s: float = 5.0) -> None:
        self.clients = clients
        self.ttl_s = ttl_s
        # Tenant -> (fresh until (monotonic), type name -> its compiled schema).
        self._cache: dict[str, tuple[float, dict[str, Validating]]] = {}
        self._loading: dict[str, asyncio.Future[dict[str, Validating]]] = {}

    async def check(self, tenant_id: str, event_type: str, payload: Any) -> None:
        """Nothing when the type does not validate or the payload is valid; InvalidRequest naming the first
        problem's place in the payload (``payload.data.amount: 'x' is not of type 'integer'``) otherwise;
        Unavailable while the tenant's catalogue cannot be known."""
        found = (await self.of(tenant_id)).get(event_type)
        if found is None:
            return
        try:
            error = best_match(found.validator.iter_errors(payload))
        except Exception as exc:  # the router checked the schema when it was saved; say so rather than 500
            logger.warning("an event type's schema could not be applied",
                           extra={"tenant_id": tenant_id, "event_type": event_type, "error": str(exc)})
            raise InvalidRequest(f"payload: the schema of event type {event_type} cannot be applied: {exc}",
                                 field="payload") from None
        if error is not None:
            message = error.message if len(error.message) <= MAX_PROBLEM else error.message[:MAX_PROBLEM - 3] + "..."
            raise InvalidRequest(f"{_where(error.absolute_path)}: {message} (event type {event_type} validates "
                                 "its payloads)", field="payload")

    async def of(self, tenant_id: str) -> dict[str, Validating]:
        """The tenant's validating types, at most ``ttl_s`` old; past that, the last known while they are read
        again (no request waits for the router once a tenant's catalogue is known)."""
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        loading = self._loading.get(tenant_id) or self._reload(tenant_id, cached[1] if cached is not None else {})
        if cached is not None:
            return cached[1]
        try:
            return await asyncio.shield(loading)
        except SwitchboardError as exc:
            raise Unavailable("the event-type catalogue cannot be read (RouterService: "
                              f"{exc.message}); nothing was published, try again") from None

    def _reload(self, tenant_id: str, known: dict[str, Validating]) -> asyncio.Future[dict[str, Validating]]:
        """Read the tenant's catalogue once, however many requests ask meanwhile."""
        loading = self._loading[tenant_id] = asyncio.ensure_future(self._load(tenant_id, known))
        loading.add_done_callback(functools.partial(self._loaded, tenant_id))
        return loading

    def _loaded(self, tenant_id: str, loading: asyncio.Future[dict[str, Validating]]) -> None:
        self._loading.pop(tenant_id, None)
        failed = None if loading.cancelled() else loading.exception()
        cached = self._cache.get(tenant_id)
        if failed is not None and cached is not None:
            # The last known stays, and is asked for again after another ttl_s, not by every request meanwhile.
            logger.warning("event types not refreshed; using the last known",
                           extra={"tenant_id": tenant_id, "error": str(failed)})
            self._cache[tenant_id] = (time.monotonic() + self.ttl_s, cached[1])

    async def _load(self, tenant_id: str, known: dict[str, Validating]) -> dict[str, Validating]:
        router = self.clients.stub("router", router_pb2_grpc.RouterServiceStub)
        found: dict[str, Validating] = {}
        cursor = ""
        while True:
            page = await call(router.ListEventTypes(router_pb2.ListEventTypesRequest(
                tenant_id=tenant_id, validate="true", limit=PAGE, cursor=cursor), timeout=self.clients.timeout))
            for t in page.event_types:
                # A type removed and created again starts at revision 1 again: its creation time tells them apart.
                version = (t.revision, t.created_at.ToNanoseconds())
                previous = known.get(t.id)
                if previous is not None and previous.version == version:
                    found[t.id] = previous
                else:
                    schema = plain(t.schema)
                    found[t.id] = Validating(version, validators.validator_for(
                        schema, default=Draft202012Validator)(schema))
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        if len(self._cache) >= MAX_TENANTS:
            self._cache.clear()
        self._cache[tenant_id] = (time.monotonic() + self.ttl_s, found)
        return found
