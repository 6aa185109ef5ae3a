"""RouterService over gRPC, as AIService reads it: the tenants' corrected events its local models learn from
(:class:`services.ai.tenant_models.CorrectionSource`)."""

from __future__ import annotations

import json
from datetime import UTC

from switchboard.event_text import event_text
from services.ai.tenant_models import Correction
from switchboard.rpc import ServiceClients, call
from switchboard.v1 import router_pb2, router_pb2_grpc

__all__ = ["GrpcCorrections"]

_PAGE = 200


class GrpcCorrections:
    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    async def corrections(self, tenant_id: str, limit: int) -> list[Correction]:
        stub = self.clients.stub("router", router_pb2_grpc.RouterServiceStub)
        found: list[Correction] = []
        cursor = ""
        while len(found) < limit:
            page = await call(stub.ListCorrections(router_pb2.ListCorrectionsRequest(
                tenant_id=tenant_id, cursor=cursor, limit=min(_PAGE, limit - len(found))),
                timeout=self.clients.timeout))
            for c in page.corrections:
                payload = json.loads(c.payload_json or "null")
                # The text AIService reads of a routed event (the router sends none of its own).
                found.append(Correction(c.source_type or "api", c.event_type, payload, event_text(payload),
                                        c.category, c.labelled_at.ToDatetime(tzinfo=UTC)))
            cursor = page.next_cursor
            if not cursor:
                break
        return found
