"""Typed messages to and from plain JSON values, with the proto field names.

``google.protobuf.json_format`` does the work; what it adds here:

* numbers in ``Struct``/``Value``/``ListValue`` are doubles on the wire, so a
  whole number comes back as ``5.0``; :func:`plain` gives it back as ``5``
  (within 2**53, where a double is exact), so a plugin that wants an integer
  gets one;
* a value that does not fit the message is an :class:`InvalidRequest` naming
  the field, not a ``ParseError``.

Event bodies do not travel as ``Struct``: a double cannot hold every integer
a webhook may carry (ids above 2**53), so they stay their exact JSON text.
"""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any, Protocol, TypeVar, cast
from collections.abc import Iterable, Mapping

from google.protobuf import field_mask_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from switchboard.errors import InvalidRequest

__all__ = ["plain", "whole", "struct", "to_message", "from_message", "parse_time", "changed_fields"]

M = TypeVar("M", bound=Message)

_EXACT = 2 ** 53


class _UpdateRequest(Protocol):
    """What an update request (AIP-134) has beyond :class:`Message`."""

    @property
    def update_mask(self) -> field_mask_pb2.FieldMask: ...


def whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, dict):
        return {k: whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole(v) for v in value]
    return value


def plain(message: Message) -> Any:
    """A message as plain JSON values (dicts, lists, ...), whole numbers as ints."""
    return whole(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _lists(v) for k, v in value.items()}
    return value


def struct(value: Mapping[str, Any] | None, field: str = "") -> struct_pb2.Struct:
    """A JSON object (tuples taken as lists) as a Struct."""
    return to_message(_lists(value or {}), struct_pb2.Struct, field)


def to_message(value: Any, message_class: type[M], field: str = "") -> M:
    """A JSON value as a message of ``message_class``; InvalidRequest (naming ``field``) when it does not fit."""
    message = message_class()
    try:
        json_format.ParseDict(value, message)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"{field or 'request'}: {exc}", field=field or None) from None
    return message


def from_message(message: Message, field: str) -> Any:
    """A message field's value as plain JSON values (None when the field is a message and not set)."""
    if message.HasField(field):
        return plain(getattr(message, field))
    return None


def parse_time(raw: Any, name: str) -> datetime:
    """An ISO 8601 time, UTC unless it says otherwise, as an aware UTC datetime; InvalidRequest otherwise
    (also for a time that is no time in UTC, like 0001-01-01T00:00:00+01:00)."""
    try:
        value = datetime.fromisoformat(raw)
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f"{name} must be an ISO 8601 time between the years 1 and 9999 (UTC), "
                             "like 2026-01-31T12:00:00Z") from None


def changed_fields(request: Message, updatable: Iterable[str]) -> list[str]:
    """The fields an update changes (AIP-134): those its ``update_mask`` names (a field named but unset is
    cleared), or without a mask those set. InvalidRequest for a mask naming a field it cannot change."""
    names = list(updatable)
    # Each update request's class declares update_mask; Message, their common type, does not.
    mask = list(cast(_UpdateRequest, request).update_mask.paths)
    if mask:
        unknown = sorted(set(mask) - set(names))
        if unknown:
            raise InvalidRequest(f"cannot change {', '.join(unknown)}; an update takes {', '.join(names)}",
                                 field=unknown[0])
        return mask
    fields = request.DESCRIPTOR.fields_by_name
    return [n for n in names if (len(getattr(request, n)) > 0 if fields[n].is_repeated else request.HasField(n))]
