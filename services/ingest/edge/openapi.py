"""The OpenAPI 3.1 document served at ``/openapi.json``, built from the route table."""

from __future__ import annotations

from typing import Any

from services.ingest.edge.contract import INT32_MAX, body_required, path_param
from services.ingest.edge.routing import API_ROUTES

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "field": {"type": "string", "description": "the request field at fault, when one is"}},
        }
    },
}

_TIMESTAMP = {"type": "string", "format": "date-time"}


# Request schemas refuse unknown fields (additionalProperties: false) and say every bound
# the handlers and services enforce; the edge checks requests against them (contract.py).
_ID = {"type": "string", "maxLength": 64}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_TYPE_PATTERNS = {"type": "array", "maxItems": 50, "description": "Globs; empty takes all",
                  "items": {"type": "string", "minLength": 1, "maxLength": 200}}


def _numbers(low: float, high: float, integer: bool = False) -> dict[str, Any]:
    return {"type": "integer" if integer else "number", "minimum": low, "maximum": high}


_ENDPOINT_OPTIONS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Delivery options; see docs/delivery.md",
    "properties": {
        "max_in_flight": _numbers(1, 1000, integer=True),
        "timeout_seconds": _numbers(1, 60),
        "auto_disable_after_seconds": _numbers(0, 90 * 86_400),
        "rate_limit": {"type": "object", "additionalProperties": False, "required": ["per_second"],
                       "properties": {"per_second": _numbers(0.001, 100_000),
                                      "burst": _numbers(1, 100_000, integer=True)}},
        "retry": {"type": "object", "additionalProperties": False, "properties": {
            "max_attempts": _numbers(1, 50, integer=True), "initial_delay_seconds": _numbers(0.01, 86_400),
            "max_delay_seconds": _numbers(0.01, 7 * 86_400), "multiplier": _numbers(1, 10),
            "jitter": _numbers(0, 1),
            "retry_statuses": {"type": "array", "maxItems": 100, "items": _numbers(400, 599, integer=True)}}},
    },
}

_ENDPOINT_FIELDS: dict[str, Any] = {
    "url": {"type": "string", "minLength": 1, "maxLength": 2000, "format": "uri"},
    "description": {"type": "string", "maxLength": 1000},
    "config": {"type": "object", "description": "The destination's settings; webhook: method, headers"},
    "options": _ENDPOINT_OPTIONS,
    "event_types": _TYPE_PATTERNS,
    "failover_endpoint_id": {**_ID, "description": "Used while this endpoint's circuit is open; \"\": none"},
}


# Analytics answers (docs/analytics.md): every field always present.
_ANALYTICS_STATS: dict[str, Any] = {
    "events_received": {"type": "integer", "description": "Events that reached the router, received in the range "
                                                           "(per endpoint: deliveries to it)"},
    "routed": {"type": "integer", "description": "Events a route matched"},
    "unrouted": {"type": "integer", "description": "Events no route matched"},
    "dropped": {"type": "integer", "description": "Events a drop route stopped"},
    "deliveries": {"type": "integer", "description": "Deliveries first heard of in the range (queued by the router)"},
    "attempts": {"type": "integer"},
    "succeeded": {"type": "integer", "description": "Deliveries that succeeded"},
    "failed": {"type": "integer", "description": "Attempts that failed, retried or final"},
    "dead": {"type": "integer", "description": "Deliveries whose final attempt failed (dead letters)"},
    "success_rate": {"type": "number", "description": "succeeded / (succeeded + dead)"},
    "latency_ms": {"type": "object", "description": "Percentiles exact to the histogram slot (10 per decade)",
                   "properties": {q: {"type": "number"} for q in ("p50", "p95", "p99", "avg")}},
}
_ANALYTICS_PENDING: dict[str, Any] = {
    "type": "object", "description": "pending by why each waits; every reason present",
    "properties": {reason: {"type": "integer"} for reason in
                   ("queued", "retrying", "circuit_open", "rate_limited", "in_flight_cap")}}
_ANALYTICS_RANGE: dict[str, Any] = {
    "since": {"type": "string", "format": "date-time", "description": "The range counted, rounded out"},
    "until": {"type": "string", "format": "date-time"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"data": {"type": "array", "items": _ref(name)}}}


def _ai_event(**extra: dict[str, Any]) -> dict[str, Any]:
    """An event given to an AI task in the body, with the task's own fields (all required)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "payload", *extra],
        "properties": {"type": _NAME, "payload": {}, "source_type": {"type": "string", "maxLength": 100},
                       "text": {"type": "string"}, "lane": {"enum": ["urgent", "normal"]}, **extra},
    }


_ALLOWED_IPS = {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 64},
                "description": "CIDRs; empty: any"}
_SOURCE_RATE_LIMIT = {"type": ["object", "null"], "additionalProperties": False,
                      "description": "Requests per second and burst; null or {}: the deployment default",
                      "properties": {"per_second": {"type": "number", "minimum": 0, "maximum": 1_000_000},
                                     "burst": {"type": "integer", "minimum": 0, "maximum": INT32_MAX}}}

_NULLABLE_ID = {"type": ["string", "null"], "maxLength": 200}
_ROUTE_FIELDS: dict[str, Any] = {
    "name": {"type": ["string", "null"], "maxLength": 200},
    "source_id": {**_NULLABLE_ID, "description": "Only events of this source; all when omitted"},
    "event_types": {**_TYPE_PATTERNS, "type": ["array", "null"]},
    "filters": {"type": ["object", "null"],
                "description": '{"all"|"any": [{"path": "$.a.b", "op": "gte", "value": 1}]}; null: none'},
    "ai": {"type": ["object", "null"], "description": "category, priority, sentiment (lists), min_confidence; "
                                                      "null: none"},
    "action": {"enum": ["deliver", "reply", "drop"], "default": "deliver"},
    "endpoint_ids": {"type": ["array", "null"], "maxItems": 100, "items": {"type": "string", "maxLength": 64}},
    "template_id": {**_NULLABLE_ID, "description": "A transform for deliver routes"},
    "position": {"type": "integer", "minimum": 0, "maximum": 1_000_000,
                 "description": "Evaluation order, lowest first"},
    "enabled": {"type": "boolean"},
    "review": {"type": "boolean", "default": False,
               "description": "Reply routes: hold drafts for POST /v1/replies/{reply_id}/approve"},
}

# An event given in the body of a simulation or a template test.
_GIVEN_EVENT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"type": {"type": "string", "maxLength": 200}, "payload": {},
                   "source_id": {"type": ["string", "null"], "maxLength": 200},
                   "source_type": {"type": ["string", "null"], "maxLength": 100},
                   "conversation_key": {"type": ["string", "null"], "maxLength": 200},
                   "author": {"enum": ["customer", "agent", "bot", "system", None],
                              "description": "Who wrote it: only a customer's message is replied to"}},
}

_TEMPLATE_FIELDS: dict[str, Any] = {
    "name": _NAME, "source": {"type": "string", "minLength": 1, "description": "Jinja2, sandboxed"},
    "output": {"enum": ["json", "text"], "default": "json"}}


SCHEMAS: dict[str, Any] = {
    "Error": _ERROR,
    "SourceCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": _NAME,
            "type": {"type": "string", "maxLength": 100, "default": "generic"},
            "config": {"type": "object", "description": "Source plugin configuration"},
            "secret": {"type": "string", "minLength": 16, "maxLength": 500, "description": "Generated when omitted"},
            "allowed_ips": _ALLOWED_IPS,
            "rate_limit": _SOURCE_RATE_LIMIT,
        },
    },
    "SourceUpdate": {
        "type": "object",
        "additionalProperties": False,
        "description": "Only the fields given change (within the edge's 5-second source cache); "
                       "config and allowed_ips are replaced whole; rate_limit null or {}: the default",
        "properties": {"name": _NAME, "config": {"type": "object", "description": "Source plugin configuration"},
                       "allowed_ips": _ALLOWED_IPS, "rate_limit": _SOURCE_RATE_LIMIT},
    },
    "Source": {
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "type": {"type": "string"},
            "config": {"type": "object"}, "created_at": _TIMESTAMP,
            "allowed_ips": {"type": "array", "items": {"type": "string"}},
            "rate_limit": {"type": ["object", "null"]},
            "disabled_at": {"type": ["string", "null"], "format": "date-time"},
            "previous_secret_expires_at": {"type": ["string", "null"], "format": "date-time"},
            "ingest_url": {"type": "string", "format": "uri"},
        },
    },
    "SecretRotation": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "grace_seconds": {"type": "integer", "default": 86400, "minimum": 0, "maximum": 2592000},
            "secret": {"type": "string", "maxLength": 500, "description": "The new secret; generated when omitted"},
        },
    },
    "SourceCreated": {"allOf": [_ref("Source"), {"type": "object", "properties": {"secret": {"type": "string"}}}]},
    "SourceList": _list_of("Source"),
    "EndpointCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            **_ENDPOINT_FIELDS,
            "destination": {"type": "string", "maxLength": 100, "default": "webhook"},
            "secret": {"type": "string", "maxLength": 500, "description": "whsec_..., generated when omitted"},
        },
    },
    "EndpointUpdate": {
        "type": "object",
        "additionalProperties": False,
        "description": "Only the fields given change; config, options and event_types are replaced whole.",
        "properties": {**_ENDPOINT_FIELDS, "enabled": {"type": "boolean"}},
    },
    "Endpoint": {
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "tenant_id": {"type": "string"}, **_ENDPOINT_FIELDS,
            "options": {"type": "object"}, "enabled": {"type": "boolean"},
            "destination": {"type": "string"}, "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP,
            "disabled_at": _TIMESTAMP, "disabled_reason": {"type": "string"}, "failing_since": _TIMESTAMP,
            "previous_secret_expires_at": _TIMESTAMP,
        },
    },
    "ReplayCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["since"],
        "properties": {
            "since": {"type": "string", "format": "date-time", "minLength": 1, "maxLength": 64},
            "until": {"type": "string", "format": "date-time", "maxLength": 64, "description": "Now when omitted"},
            "source_id": _ID,
            "event_types": _TYPE_PATTERNS,
            "endpoint_id": {**_ID, "description": "Only this endpoint; omitted: the current routes"},
        },
    },
    "Replay": {
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "since": _TIMESTAMP, "until": _TIMESTAMP, "source_id": {"type": "string"},
            "event_types": {"type": "array", "items": {"type": "string"}}, "endpoint_id": {"type": "string"},
            "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "total": {"type": "integer"}, "done": {"type": "integer"}, "deliveries": {"type": "integer"},
            "error": {"type": "string"}, "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP,
            "finished_at": _TIMESTAMP,
        },
    },
    "ReplayList": _list_of("Replay"),
    "AIEvent": _ai_event(),
    # Spelled out, not allOf: additionalProperties sees only its own schema's properties.
    "AIExtract": _ai_event(schema={"type": "object", "description": "A JSON schema to fill"}),
    "AIReplyRequest": _ai_event(conversation_key={"type": "string", "minLength": 1, "maxLength": 200}),
    "AIMeta": {
        "type": "object",
        "properties": {"provider": {"type": "string"}, "model": {"type": "string"},
                       "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                       "cached": {"type": "boolean"}, "passed_over": {"type": "array", "items": {"type": "string"}}},
    },
    "AIClassification": {
        "type": "object",
        "properties": {"category": {"type": "string"}, "priority": {"enum": ["low", "normal", "high", "urgent"]},
                       "sentiment": {"enum": ["negative", "neutral", "positive"]}, "confidence": {"type": "number"},
                       "summary": {"type": "string"}, "meta": _ref("AIMeta")},
    },
    "AIExtraction": {"type": "object", "properties": {"data": {"type": "object"}, "meta": _ref("AIMeta")}},
    "AIReply": {"type": "object", "properties": {"text": {"type": "string"}, "meta": _ref("AIMeta")}},
    "Prompt": {"type": "object", "properties": {"task": {"enum": ["classify", "extract", "reply"]},
                                                "version": {"type": "integer"}, "system": {"type": "string"},
                                                "template": {"type": "string"}}},
    "PromptSave": {"type": "object", "additionalProperties": False, "required": ["task", "system", "template"],
                   "properties": {"task": {"enum": ["classify", "extract", "reply"]},
                                  "system": {"type": "string", "minLength": 1},
                                  "template": {"type": "string", "minLength": 1,
                                               "description": "$placeholders; see docs/ai.md"}}},
    "AISettings": {
        "type": "object",
        "properties": {"providers": {"type": "array", "items": {"type": "string"}},
                       "categories": {"type": "array", "items": {"type": "string"}},
                       "prompts": {"type": "array", "items": _ref("Prompt")},
                       "provider_keys": {"type": "object", "additionalProperties": {"type": "string"},
                                         "description": "The tenant's own provider keys, masked (…abcd)"}},
    },
    "AISettingsUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"providers": {"type": "array", "items": {"type": "string", "maxLength": 100}},
                       "categories": {"type": "array", "items": {"type": "string", "maxLength": 100}},
                       "provider_keys": {
                           "type": "object", "maxProperties": 20,
                           "additionalProperties": {"type": ["string", "null"], "maxLength": 500},
                           "description": "Bring your own key: a provider (anthropic, openai) answers this "
                                          "tenant's requests with the key given; null or \"\" removes it",
                           "example": {"anthropic": "sk-ant-..."}}},
    },
    "AIUsage": {"type": "object", "properties": {"data": {"type": "array", "items": {
        "type": "object", "required": ["provider", "day", "requests", "input_tokens", "output_tokens", "cached",
                                       "failures", "cost_usd"],
        "properties": {"provider": {"type": "string"}, "day": {"type": "string", "format": "date"},
                       **{n: {"type": "integer"} for n in ("requests", "input_tokens", "output_tokens", "cached",
                                                           "failures")},
                       "cost_usd": {"type": "number", "description": "Estimated"}}}}}},
    "AnalyticsOverview": {"type": "object", "properties": {
        **_ANALYTICS_RANGE, **_ANALYTICS_STATS,
        "pending": {"type": "integer", "description": "Deliveries of the range not settled now, attempted or not"},
        "pending_by_reason": _ANALYTICS_PENDING}},
    "AnalyticsTrends": {"type": "object", "properties": {
        **_ANALYTICS_RANGE, "bucket": {"enum": ["minute", "hour", "day"]},
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "start": {"type": "string", "format": "date-time"}, **_ANALYTICS_STATS}}}}},
    "AnalyticsBreakdown": {"type": "object", "properties": {
        **_ANALYTICS_RANGE, "by": {"enum": ["endpoint", "event_type", "source", "category"]},
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "key": {"type": "string", "description": "\"\" for attempts without a source or category"},
            **_ANALYTICS_STATS}}}}},
    "EndpointAnalytics": {"type": "object", "properties": {
        "endpoint_id": {"type": "string"}, **_ANALYTICS_RANGE, **_ANALYTICS_STATS, "pending": {"type": "integer"},
        "pending_by_reason": _ANALYTICS_PENDING,
        "last_error": {"type": ["string", "null"]},
        "last_failure_at": {"type": ["string", "null"], "format": "date-time"}}},
    "FailingEndpointList": {"type": "object", "properties": {
        **_ANALYTICS_RANGE, "data": {"type": "array", "items": {"type": "object", "properties": {
            "endpoint_id": {"type": "string"}, "failures": {"type": "integer"}, "attempts": {"type": "integer"},
            "dead": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
            "last_failure_at": {"type": ["string", "null"], "format": "date-time"}}}}}},
    "Deleted": {"type": "object", "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}},
    "EndpointState": {"type": "object", "additionalProperties": False,
                      "properties": {"reason": {"type": "string", "maxLength": 500}}},
    "TestSent": {"type": "object", "properties": {"event_id": {"type": "string"},
                                                  "delivery_id": {"type": "string"}}},
    "Retried": {"type": "object", "properties": {"retried": {"type": "integer"}}},
    "DeliveryList": {
        "type": "object",
        "properties": {"data": {"type": "array", "items": _ref("Delivery")},
                       "next_cursor": {"type": ["string", "null"]}},
    },
    "EndpointCreated": {"allOf": [_ref("Endpoint"), {"type": "object", "properties": {"secret": {"type": "string"}}}]},
    "EndpointList": _list_of("Endpoint"),
    "RouteSpec": {
        "type": "object",
        "additionalProperties": False,
        "description": "Every field optional on PATCH; null clears a field; see docs/routing.md",
        "properties": _ROUTE_FIELDS,
    },
    # A stored route: no filters or AI conditions is null.
    "Route": {"type": "object", "properties": {
        **_ROUTE_FIELDS, "id": {"type": "string"}, "tenant_id": {"type": "string"}, "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP}},
    "Simulate": {
        "type": "object",
        "additionalProperties": False,
        "oneOf": [{"required": ["event_id"]}, {"required": ["event"]}],
        "x-one-of-message": "give event_id (a stored event) or event, not both",
        "properties": {"event_id": {"type": "string", "minLength": 1, "maxLength": 64},
                       "event": _GIVEN_EVENT,
                       "routes": {"type": ["array", "null"], "items": _ref("RouteSpec"),
                                  "description": "Proposed routes; the current ones when omitted"}},
    },
    "Simulation": {"type": "object", "properties": {
        "routes": {"type": "array", "items": {"type": "object"}}, "ai": {"type": ["object", "null"]},
        "dropped_by": {"type": ["string", "null"]}, "deliveries": {"type": "array", "items": {"type": "object"}}}},
    "TemplateCreate": {"type": "object", "additionalProperties": False, "required": ["name", "source"],
                       "properties": _TEMPLATE_FIELDS},
    "TemplateUpdate": {"type": "object", "additionalProperties": False, "properties": _TEMPLATE_FIELDS},
    "Template": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "integer"},
        "output": {"enum": ["json", "text"]}, "source": {"type": "string"}, "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP}},
    "TemplateList": _list_of("Template"),
    "TemplateSample": {**_GIVEN_EVENT, "properties": {
        **_GIVEN_EVENT["properties"],
        "ai": {"type": ["object", "null"], "description": "The AI's labels as a template sees them: category, "
                                                          "priority, sentiment, confidence, summary"}}},
    "TemplateRendered": {"type": "object", "properties": {"ok": {"type": "boolean"}, "payload": {},
                                                          "body": {"type": "string"}, "error": {"type": "string"}}},
    "RouteList": _list_of("Route"),
    "Attempt": {
        "type": "object",
        "properties": {
            "number": {"type": "integer"}, "started_at": _TIMESTAMP,
            "outcome": {"type": "string", "enum": ["succeeded", "retrying", "failed"]},
            "status_code": {"type": "integer"}, "latency_ms": {"type": "number"},
            "response_excerpt": {"type": "string"}, "error": {"type": "string"},
        },
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "event_id": {"type": "string"}, "endpoint_id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
            "attempts": {"type": "array", "items": _ref("Attempt")},
            "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP,
        },
    },
    "ReplyDraft": {"type": "object", "properties": {
        "id": {"type": "string"}, "tenant_id": {"type": "string"}, "event_id": {"type": "string"},
        "conversation_key": {"type": "string"}, "route_id": {"type": "string"},
        "endpoint_ids": {"type": "array", "items": {"type": "string"}},
        "status": {"enum": ["drafting", "sent", "held", "approved", "rejected", "failed"]},
        "text": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]}, "created_at": _TIMESTAMP,
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "decided_by": {"type": ["string", "null"], "description": "The API key that decided"}}},
    "ReplyList": _list_of("ReplyDraft"),
    "ReplyApproval": {"type": "object", "additionalProperties": False, "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 4000,
                 "description": "Send this instead of the draft (an edit); the draft when omitted"}}},
    "EventList": {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": {
                "type": "object",
                "description": "An event as listed; GET /v1/events/{event_id} has its payload and decision",
                "required": ["id", "source_id", "type", "received_at", "routed_at", "status", "category",
                             "deliveries"],
                "properties": {
                    "id": {"type": "string"}, "tenant_id": {"type": "string"}, "source_id": {"type": "string"},
                    "source_type": {"type": "string"}, "type": {"type": "string"},
                    "provider_event_id": {"type": ["string", "null"]},
                    "conversation_key": {"type": ["string", "null"]},
                    "received_at": _TIMESTAMP, "occurred_at": {"type": ["string", "null"], "format": "date-time"},
                    "routed_at": _TIMESTAMP,
                    "status": {"type": "string", "enum": ["routed", "unrouted", "dropped"],
                               "description": "The routing outcome: deliveries planned, none, or a drop route"},
                    "category": {"type": ["string", "null"], "description": "The AI category, if classified"},
                    "deliveries": {"type": "integer", "description": "Deliveries the decision planned"},
                },
            }},
            "next_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the next page"},
        },
    },
    "EventWithDeliveries": {
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "tenant_id": {"type": "string"}, "source_id": {"type": "string"},
            "type": {"type": "string"}, "provider_event_id": {"type": "string"}, "received_at": _TIMESTAMP,
            "headers": {"type": "object"}, "payload": {},
            "author": {"enum": ["customer", "agent", "bot", "system"],
                       "description": "Conversational sources: who wrote it (absent: not said)"},
            "deliveries": {"type": "array", "items": _ref("Delivery")},
        },
    },
    "EventPublish": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "payload"],
        "properties": {
            "type": {"type": "string", "minLength": 1, "maxLength": 200},
            "payload": {},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200,
                                "description": "The same key within the duplicate window returns the same event"},
        },
    },
    "AuditEntry": {
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "actor": {"type": "string", "description": "API key id, cli or system"},
            "action": {"type": "string"}, "resource": {"type": "string"}, "at": _TIMESTAMP,
        },
    },
    "AuditList": _list_of("AuditEntry"),
    "Accepted": {
        "type": "object",
        "properties": {"event_id": {"type": "string"}, "duplicate": {"type": "boolean"}},
    },
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    text = {400: "Malformed request", 401: "Missing or invalid credentials", 403: "Missing scope",
            404: "Not found (also for other tenants' resources)", 413: "Body over the size limit",
            409: "In conflict with the resource's state",
            410: "The source is disabled", 415: "Content type not accepted by this source",
            429: "Over the rate limit; see Retry-After", 503: "A dependency is unavailable; retry"}
    return {
        str(s): {"description": text[s], "content": {"application/json": {"schema": _ref("Error")}}}
        for s in statuses
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/in/{source_id}": {
            "post": {
                "summary": "Receive a webhook from a third-party sender",
                "description": "Verified by the source's plugin; 202 only after the event is durably stored.",
                "parameters": [{"name": "source_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"content": {"*/*": {}}},
                "responses": {
                    "202": {"description": "Accepted and durable",
                            "content": {"application/json": {"schema": _ref("Accepted")}}},
                    **_error_responses(400, 401, 403, 404, 410, 413, 415, 429, 503),
                },
            }
        }
    }
    for route in API_ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "security": [{"bearer": []}],
            "x-required-scope": route.scope,
            "responses": {
                str(route.status): {
                    "description": route.summary,
                    "content": {"application/json": {"schema": _ref(route.response)}} if route.response else {},
                },
                **_error_responses(400, 401, 403, 404, *((409,) if route.method != "GET" else ()),
                                   *((413,) if route.request else ()), 429, 503),
            },
        }
        params = [seg[1:-1] for seg in route.path.split("/") if seg.startswith("{")]
        parameters = [{"name": p, "in": "path", "required": True, "schema": path_param(p)} for p in params]
        parameters += [{"name": q.name, "in": "query", "required": q.required, "schema": q.schema,
                        **({"description": q.description} if q.description else {})} for q in route.query]
        if parameters:
            operation["parameters"] = parameters
        if route.request:
            operation["requestBody"] = {
                "required": body_required(SCHEMAS[route.request]),
                "content": {"application/json": {"schema": _ref(route.request)}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchboard", "version": "0.1.0",
                 "description": "The webhook gateway's HTTP API. Errors are {\"error\": {\"code\", \"message\"}}; "
                                "a malformed request is 400 invalid_request, its message starting with the field "
                                "at fault. Request bodies may hold no NUL character."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
