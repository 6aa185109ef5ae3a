"""The ``/v1`` REST API, transcoded: each route calls the RPC its ``google.api.http`` binding names.

A request's path, query and body are checked against the route's contract
(contract.py), become the RPC's request message (``switchboard.transcoding``),
and the RPC is called with the caller's own API key: the service's access
control (switchboard/rpc_access.py) then binds the tenant, records the audit
entry and refuses what the key may not do, exactly as for a gRPC caller. The
answer is shown with the same rules. ``POST /v1/events`` is the one route the
edge answers itself: it is the edge's own intake, and a hop there would cost
the hot path.
"""

from __future__ import annotations

from typing import Any, cast
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.context import EdgeContext
from gateway.contract import RouteContract
from switchboard.apikeys import Principal
from switchboard.rpc import call
from switchboard.transcoding import Binding, from_rest, input_fields, to_rest

__all__ = ["Transcoder", "LOCAL_HANDLERS"]

# A route the edge answers itself: given the checked REST values (contract.py), it answers in REST names,
# with no protobuf message either way (the hot path: each would cost a parse and a print, and the payload
# a JSON round trip through ``payload_json``).
LocalHandler = Callable[[EdgeContext, Principal, dict[str, Any]], Awaitable[dict[str, Any]]]


async def publish_event(edge: EdgeContext, principal: Principal, given: dict[str, Any]) -> dict[str, Any]:
    """The edge's own intake, durable in JetStream once answered as a webhook is: ``PublishEventRequest``
    in, ``PublishEventResponse`` out, in their REST names. A payload its type's schema refuses is a 400
    when the tenant's catalogue says the type validates (gateway/event_schemas.py)."""
    body = given["body"]
    await edge.event_schemas.check(principal.tenant_id, body["type"], body["payload"])
    accepted = await edge.intake.publish_api_event(
        principal.tenant_id, principal.key_id, body["type"], body["payload"], body.get("idempotency_key") or None)
    return {"event_id": accepted.event_id, "duplicate": accepted.duplicate}


# Routes the edge serves without a hop, by their RPC.
LOCAL_HANDLERS: dict[str, LocalHandler] = {"/switchboard.v1.IngestService/PublishEvent": publish_event}


class Transcoder:
    """Builds a binding's request from a checked REST request and calls its RPC with the caller's key."""

    def __init__(self, edge: EdgeContext) -> None:
        self.edge = edge
        self._methods: dict[str, Any] = {}

    def request(self, binding: Binding, given: dict[str, Any]) -> Message:
        """The RPC's request: path and query values, and the body (the whole request, or one field)."""
        values = {name: value for name, value in given.items() if name != "body"}
        body = given.get("body")
        if body is not None:
            if binding.body == "*":
                values.update(body)
            else:
                values[binding.body] = body
        message = from_rest(values, binding.request_class())
        mask = binding.update_mask()
        if mask is not None and binding.verb == "PATCH" and body is not None:
            # AIP-134: a PATCH changes the fields its body names (null: cleared).
            fields = binding.method.input_type
            if binding.body not in ("", "*"):  # a body field is a message
                fields = cast(Descriptor, fields.fields_by_name[binding.body].message_type)
            paths = {ref.name: ".".join(ref.path) for ref in input_fields(fields)}
            getattr(message, mask).paths.extend(paths[name] for name in body)
        return message

    def _deadline(self, binding: Binding) -> float:
        timeout = self.edge.clients.timeout
        if binding.deadline == "ai":  # a task may walk the whole provider chain, each with its own deadline
            return self.edge.settings.ai.timeout_s * 3 + timeout
        if binding.deadline == "bulk":
            return timeout * 6
        return timeout

    async def answer(self, binding: Binding, contract: RouteContract, request: Request,
                     principal: Principal, credential: str) -> JSONResponse:
        given = await contract.check(request, self.edge.settings.edge.max_body_bytes)
        local = LOCAL_HANDLERS.get(binding.grpc_path)
        if local is not None:
            return JSONResponse(await local(self.edge, principal, given), status_code=binding.status)
        metadata = (("authorization", f"Bearer {credential}"),
                    # As grpc-gateway does: where the caller reached us (a source's ingest_url).
                    ("x-forwarded-host", request.headers.get("host", "")),
                    ("x-forwarded-proto", request.url.scheme))
        reply = await call(self._method(binding)(self.request(binding, given), timeout=self._deadline(binding),
                                                 metadata=metadata))
        return JSONResponse(to_rest(reply), status_code=binding.status)

    def _method(self, binding: Binding) -> grpc.aio.UnaryUnaryMultiCallable:
        found = self._methods.get(binding.grpc_path)
        if found is None:
            found = self.edge.clients.channel(binding.service).unary_unary(
                binding.grpc_path, request_serializer=binding.request_class.SerializeToString,
                response_deserializer=binding.response_class.FromString)
            self._methods[binding.grpc_path] = found
        return found
