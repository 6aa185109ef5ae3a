"""Reading request fields and writing protobuf answers, for the REST handlers: one clear 400 each."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request

from switchboard.errors import InvalidRequest
from switchboard.rpc import timestamp

__all__ = ["as_dict", "string_field", "strings_field", "object_field", "grace_seconds", "int_param",
           "parse_time", "timestamp_field", "timestamp_param"]


def as_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def string_field(body: dict[str, Any], name: str, default: str = "", required: bool = False) -> str:
    value = body.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    if required and not value:
        raise InvalidRequest(f"{name} is required")
    return value


def object_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be a JSON object")
    return value


def grace_seconds(body: dict[str, Any]) -> int:
    grace = body.get("grace_seconds", 24 * 3600)
    if isinstance(grace, bool) or not isinstance(grace, int):
        raise InvalidRequest("grace_seconds must be an integer")
    return grace


def int_param(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer") from None


def strings_field(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    value = [] if value is None else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{name} must be a list of strings")
    return value


def parse_time(raw: Any, name: str) -> datetime:
    """An ISO 8601 time, UTC unless it says otherwise, as an aware UTC datetime; InvalidRequest otherwise
    (also for a time that is no time in UTC, like 0001-01-01T00:00:00+01:00)."""
    try:
        value = datetime.fromisoformat(raw)
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f"{name} must be an ISO 8601 time between the years 1 and 9999 (UTC), "
                             "like 2026-01-31T12:00:00Z") from None


def timestamp_field(raw: Any, name: str) -> Timestamp | None:
    """An ISO 8601 time (UTC unless it says otherwise) as a protobuf Timestamp; None when absent."""
    if raw is None or raw == "":
        return None
    return timestamp(parse_time(raw, name))


def timestamp_param(request: Request, name: str) -> Timestamp | None:
    return timestamp_field(request.query_params.get(name), name)
