"""The OpenAPI 3.1 document served at ``/openapi.json``, generated from the contract's descriptors.

Each ``/v1`` operation is an RPC's ``google.api.http`` binding; its
parameters, body and answer are the request and response messages, shown by
schemas.py with the transcoding rules, so the document, the edge's checks and
the gRPC API cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from gateway.schemas import body_schema, output_schemas, parameter_schema
from switchboard.transcoding import bindings, rules
from switchboard.v1 import ingest_pb2

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string", "description": "Stable: the same over gRPC (ErrorInfo)"},
                           "message": {"type": "string"},
                           "field": {"type": "string", "description": "the request field at fault, when one is"}},
        }
    },
}

_ERROR_TEXT = {400: "Malformed request", 401: "Missing or invalid credentials", 403: "Missing scope",
               404: "Not found (also for other tenants' resources)", 413: "Body over the size limit",
               409: "In conflict with the resource's state", 410: "The source is disabled",
               415: "Content type not accepted by this source", 429: "Over the rate limit; see Retry-After",
               503: "A dependency is unavailable; retry"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": _ERROR_TEXT[s], "content": {"application/json": {"schema": _ref("Error")}}}
            for s in statuses}


def openapi_document() -> dict[str, Any]:
    accepted = ingest_pb2.PublishEventResponse.DESCRIPTOR
    paths: dict[str, Any] = {
        "/in/{source_id}": {
            "post": {
                "summary": "Receive a webhook from a third-party sender",
                "description": "Verified by the source's plugin; 202 only after the event is durably stored.",
                "operationId": "receive_webhook",
                "parameters": [{"name": "source_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"content": {"*/*": {}}},
                "responses": {
                    "202": {"description": "Accepted and durable",
                            "content": {"application/json": {"schema": _ref(accepted.name)}}},
                    **_error_responses(400, 401, 403, 404, 410, 413, 415, 429, 503),
                },
            }
        }
    }
    answers = [accepted]
    for binding in bindings():
        response = binding.method.output_type
        answers.append(response)
        body = body_schema(binding)
        operation: dict[str, Any] = {
            "summary": binding.summary,
            "operationId": binding.operation_id,
            "description": f"gRPC: {binding.method.full_name}",
            "security": [{"bearer": []}],
            "x-required-scope": binding.scope,
            "responses": {
                str(binding.status): {"description": binding.summary,
                                      "content": {"application/json": {"schema": _ref(response.name)}}},
                **_error_responses(400, 401, 403, 404, *((409,) if binding.verb != "GET" else ()),
                                   *((413,) if body is not None else ()), 429, 503),
            },
        }
        parameters = [{"name": ref.name, "in": "path", "required": True, "schema": parameter_schema(ref, True)}
                      for ref in binding.path_fields]
        for ref in binding.query_fields():
            declared = rules(ref.field)
            parameters.append({"name": ref.name, "in": "query", "required": declared.required,
                               "schema": parameter_schema(ref),
                               **({"description": declared.description} if declared.description else {})})
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = {
                "required": bool(body.get("required") or body.get("oneOf")),
                "content": {"application/json": {"schema": body}},
            }
        paths.setdefault(binding.path, {})[binding.verb.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchboard", "version": "0.1.0",
                 "description": "The webhook gateway's HTTP API, transcoded from its gRPC contract "
                                "(protos/switchboard/v1). Errors are {\"error\": {\"code\", \"message\"}}; "
                                "a malformed request is 400 invalid_request, its message starting with the field "
                                "at fault. Request bodies may hold no NUL character."},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, **output_schemas(answers)},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
