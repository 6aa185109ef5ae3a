"""The messages on the bus: one Event per accepted webhook, one DeliveryMessage
per (event, endpoint), and what follows from them (dead letters, reports to
analytics). Producers and consumers in different services share these shapes
through here, never through each other's modules.

Each message names its subject and its message id: the ``Nats-Msg-Id`` that
makes JetStream drop a repeat within the streams' duplicate window, on which
every exactly-once step rests (switchboard/bus.py publishes them).

| message         | subject                      | message id                        |
| --------------- | ---------------------------- | --------------------------------- |
| Event           | events.<t>.<source>          | the event id                      |
| DeliveryMessage | deliveries.<t>.<endpoint>    | the delivery id (``webhook-id``), a manual retry's with its cycle |
| DeadLetter      | dead.<t>.<endpoint>          | dead:<delivery id>:<cycle>        |
| UnstorableEvent | dead.<t>.router              | dead:<event id>                   |
| AttemptRecord   | attempts.<t>                 | <delivery id>#<attempt number>    |
| RoutingOutcome  | attempts.<t>.routing         | routing:<event id>                |
| DeliveryNotice  | attempts.<t>.notice          | <delivery id>#<state>@<time>      |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchboard.bodies import body_fields, body_from_fields, is_json_media

__all__ = ["PLATFORM_SOURCE", "Event", "DeliveryMessage", "DeadLetter", "UnstorableEvent", "AttemptRecord",
           "RoutingOutcome", "DeliveryNotice", "ROUTING_OUTCOMES", "HOLD_REASONS", "SKIPPED", "event_subject",
           "delivery_subject", "dead_letter_subject", "attempt_subject", "routing_outcome_subject",
           "delivery_notice_subject", "Report"]

#: The source of the platform's own events (``switchboard.alert.*``). Only routes
#: that name it, or name ``switchboard.`` types, receive them.
PLATFORM_SOURCE = "switchboard"


def event_subject(tenant_id: str, source_id: str) -> str:
    return f"events.{tenant_id}.{source_id}"


def delivery_subject(tenant_id: str, endpoint_id: str) -> str:
    return f"deliveries.{tenant_id}.{endpoint_id}"


def dead_letter_subject(tenant_id: str, endpoint_id: str) -> str:
    return f"dead.{tenant_id}.{endpoint_id}"


def attempt_subject(tenant_id: str) -> str:
    return f"attempts.{tenant_id}"


def routing_outcome_subject(tenant_id: str) -> str:
    return f"attempts.{tenant_id}.routing"


def delivery_notice_subject(tenant_id: str) -> str:
    return f"attempts.{tenant_id}.notice"


def _require(data: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f"message lacks {', '.join(missing)}")


@dataclass(frozen=True)
class Event:
    id: str
    tenant_id: str
    source_id: str
    type: str
    received_at: float  # Unix seconds
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    provider_event_id: str | None = None
    # The body as received, byte for byte, delivered as is when no transform applies (None: deliver the
    # payload as JSON); see switchboard/bodies.py for how messages carry it.
    body: bytes | None = None
    occurred_at: float | None = None
    conversation_key: str | None = None
    # The source's type ("stripe", "slack", ...; "api" for events published through the API).
    source_type: str = ""
    # Conversational sources: who wrote it (customer, agent, bot, system; see
    # plugins.sources.spec.AUTHORS); None when the source does not say.
    author: str | None = None
    # The Content-Type the body came with ("": none, or no body kept: the payload is JSON).
    content_type: str = ""

    @property
    def has_payload(self) -> bool:
        """Whether the payload says what the body does: JSON, a form's fields, a plugin's parse. Not so for a
        generic source's XML, text or binary body (payload None): filters, AI and transforms need one."""
        return self.payload is not None or is_json_media(self.content_type)

    def to_message(self) -> dict[str, Any]:
        # Not dataclasses.asdict: that deep-copies the payload, on the hot path.
        return {
            "source_type": self.source_type,
            **body_fields(self.body),
            "content_type": self.content_type,
            "occurred_at": self.occurred_at,
            "conversation_key": self.conversation_key,
            "id": self.id,
            "tenant_id": self.tenant_id,
            "source_id": self.source_id,
            "type": self.type,
            "received_at": self.received_at,
            "payload": self.payload,
            "headers": self.headers,
            "provider_event_id": self.provider_event_id,
            "author": self.author,
        }

    @property
    def subject(self) -> str:
        return event_subject(self.tenant_id, self.source_id)

    @property
    def message_id(self) -> str:
        return self.id

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Event:
        _require(data, "id", "tenant_id", "source_id", "type", "received_at", "payload")
        return cls(
            id=data["id"],
            tenant_id=data["tenant_id"],
            source_id=data["source_id"],
            type=data["type"],
            received_at=float(data["received_at"]),
            payload=data["payload"],
            headers=dict(data.get("headers") or {}),
            provider_event_id=data.get("provider_event_id"),
            body=body_from_fields(data),
            occurred_at=data.get("occurred_at"),
            conversation_key=data.get("conversation_key"),
            source_type=data.get("source_type") or "",
            author=data.get("author"),
            content_type=data.get("content_type") or "",
        )


@dataclass(frozen=True)
class DeliveryMessage:
    event_id: str
    tenant_id: str
    endpoint_id: str
    route_id: str
    event_type: str
    source_id: str
    received_at: float
    payload: Any
    # The exact bytes to send (None: the payload as JSON), carried as Event.body is.
    body: bytes | None = None
    conversation_key: str | None = None
    # Set on a replay's deliveries: a replay is a new delivery (a new
    # ``webhook-id``), or receivers that de-duplicate would drop it.
    replay_id: str | None = None
    # The route's transform (or reply draft) failed: the delivery is recorded
    # as failed with this error and nothing is sent.
    transform_error: str | None = None
    # The AI category and priority the router classified the event as, when a route asked for them;
    # carried on so analytics can break deliveries down by them. The priority is one of the tenant's
    # own levels (AIService maps the built-in ones onto them); absent from messages written before it.
    category: str | None = None
    priority: str | None = None
    # A manual retry's cycle of attempts (the attempts before it); 0 for the first cycle.
    cycle: int = 0
    # The event type's retry schedule from the tenant's catalogue (docs/event-types.md), over the
    # endpoint's: max_attempts, initial_delay_seconds, max_delay_seconds, multiplier, and
    # retry_for_seconds (None: no time bound beyond max_attempts). None: the endpoint's own; absent from
    # messages written before event types had schedules.
    retry: dict[str, Any] | None = None
    # The Content-Type ``body`` is sent with; None: application/json (absent from messages written before
    # bodies could be other than JSON).
    content_type: str | None = None

    @property
    def has_payload(self) -> bool:
        """As :attr:`Event.has_payload`: False for a body that is neither JSON nor parsed into a payload."""
        return self.payload is not None or is_json_media(self.content_type)

    @property
    def delivery_id(self) -> str:
        """Stable for the pair (and replay): the ``webhook-id``."""
        pair = f"{self.event_id}:{self.endpoint_id}"
        return f"{pair}:{self.replay_id}" if self.replay_id else pair

    @property
    def subject(self) -> str:
        return delivery_subject(self.tenant_id, self.endpoint_id)

    @property
    def message_id(self) -> str:
        """The delivery id; a manual retry's names its cycle, so it is not taken for the first copy."""
        return f"{self.delivery_id}@{self.cycle}" if self.cycle else self.delivery_id

    def to_message(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in self.__dataclass_fields__ if name != "body"},
                **body_fields(self.body)}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> DeliveryMessage:
        _require(data, "event_id", "tenant_id", "endpoint_id", "route_id", "event_type", "source_id",
                 "received_at", "payload")
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        values["body"] = body_from_fields(data)
        values["cycle"] = int(values["cycle"] or 0)  # absent from messages written before retries had cycles
        return cls(**values)


@dataclass(frozen=True)
class DeadLetter:
    """A delivery out of attempts (or that could never be sent), kept in DEAD_LETTERS: once per cycle of
    attempts, so a manual retry that fails again is kept again."""

    delivery: DeliveryMessage
    last_error: str | None
    attempts: int
    cycle: int

    @property
    def subject(self) -> str:
        return dead_letter_subject(self.delivery.tenant_id, self.delivery.endpoint_id)

    @property
    def message_id(self) -> str:
        return f"dead:{self.delivery.delivery_id}:{self.cycle}"

    def to_message(self) -> dict[str, Any]:
        return {**self.delivery.to_message(), "last_error": self.last_error, "attempts": self.attempts}


@dataclass(frozen=True)
class UnstorableEvent:
    """An event the router can never store (PostgreSQL refuses it), kept in DEAD_LETTERS."""

    event: Event

    @property
    def subject(self) -> str:
        return dead_letter_subject(self.event.tenant_id, "router")

    @property
    def message_id(self) -> str:
        return f"dead:{self.event.id}"

    def to_message(self) -> dict[str, Any]:
        return self.event.to_message()


@dataclass(frozen=True)
class AttemptRecord:
    """One delivery attempt, as analytics receives it."""

    delivery_id: str
    number: int
    tenant_id: str
    endpoint_id: str
    event_type: str
    outcome: str  # "succeeded" | "retrying" | "failed"
    status_code: int | None
    latency_ms: float
    at: float
    source_id: str | None = None
    category: str | None = None
    priority: str | None = None  # the tenant's level, as on DeliveryMessage
    error: str | None = None

    @property
    def subject(self) -> str:
        return attempt_subject(self.tenant_id)

    @property
    def message_id(self) -> str:
        return f"{self.delivery_id}#{self.number}"

    def to_message(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> AttemptRecord:
        _require(data, "delivery_id", "number", "tenant_id", "endpoint_id", "event_type", "outcome",
                 "status_code", "latency_ms", "at")
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**values)


#: What became of an event at the router.
ROUTING_OUTCOMES = ("routed", "unrouted", "dropped")


@dataclass(frozen=True)
class RoutingOutcome:
    """What the router did with one event, as analytics receives it: one per event, before the event is acked."""

    event_id: str
    tenant_id: str
    source_id: str
    event_type: str
    received_at: float
    routed_at: float
    outcome: str  # one of ROUTING_OUTCOMES
    # The endpoints it queued a delivery to (each delivery's id is ``<event_id>:<endpoint_id>``).
    endpoint_ids: tuple[str, ...] = ()
    category: str | None = None
    priority: str | None = None  # the tenant's level, as on DeliveryMessage
    # The routes that matched it (``switchboard listen --route`` follows one).
    route_ids: tuple[str, ...] = ()

    @property
    def delivery_ids(self) -> list[str]:
        return [f"{self.event_id}:{e}" for e in self.endpoint_ids]

    @property
    def subject(self) -> str:
        return routing_outcome_subject(self.tenant_id)

    @property
    def message_id(self) -> str:
        return f"routing:{self.event_id}"

    def to_message(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> RoutingOutcome:
        _require(data, "event_id", "tenant_id", "source_id", "event_type", "received_at", "routed_at", "outcome")
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        if not isinstance(values["endpoint_ids"], (list, tuple)):
            raise ValueError("endpoint_ids must be a list")
        values["endpoint_ids"] = tuple(values["endpoint_ids"])
        # Absent from outcomes published before routes were named in them.
        values["route_ids"] = tuple(values["route_ids"] or ())
        return cls(**values)


#: Why a delivery waits without an attempt: the endpoint's circuit is open, its rate
#: limit or its in-flight cap is reached (the delivery service gives the message back).
HOLD_REASONS = ("circuit_open", "rate_limited", "in_flight_cap")
#: A delivery that will never be attempted: its endpoint filters the event type out, or is gone.
SKIPPED = "skipped"


@dataclass(frozen=True)
class DeliveryNotice:
    """A delivery's state between attempts, as analytics receives it: held (one of
    HOLD_REASONS, reported once per reason, not per hold) or SKIPPED."""

    delivery_id: str
    tenant_id: str
    endpoint_id: str
    event_type: str
    state: str
    at: float
    source_id: str | None = None
    category: str | None = None
    priority: str | None = None  # the tenant's level, as on DeliveryMessage

    @property
    def subject(self) -> str:
        return delivery_notice_subject(self.tenant_id)

    @property
    def message_id(self) -> str:
        return f"{self.delivery_id}#{self.state}@{self.at:.3f}"

    def to_message(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> DeliveryNotice:
        _require(data, "delivery_id", "tenant_id", "endpoint_id", "event_type", "state", "at")
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**values)


#: What analytics is told, on the ATTEMPTS stream.
Report = AttemptRecord | RoutingOutcome | DeliveryNotice
