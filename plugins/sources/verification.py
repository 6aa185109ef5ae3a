"""What several source plugins share: parsing bodies, checking timestamps and
signatures. Plugins only; nothing here knows a service."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from collections.abc import Mapping
from urllib.parse import parse_qsl

import orjson

from plugins.sources.spec import (
    InboundRequest,
    InvalidSourceConfig,
    MalformedRequest,
    SignatureInvalid,
    UnsupportedContentType,
)

__all__ = [
    "check_timestamp",
    "hmac_digest",
    "matches_any",
    "json_body",
    "json_object",
    "parse_json_object",
    "unix_time",
    "no_config",
    "tolerance_only",
    "valid_tolerance",
    "form_body",
    "require_content_type",
    "JSON_TYPES",
    "FORM_TYPE",
]

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def hmac_digest(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.digest(key, message, _ALGORITHMS[algorithm])


def matches_any(expected: str, presented: list[str]) -> bool:
    """Constant-time comparison against each presented signature."""
    found = False
    for candidate in presented:
        found |= hmac.compare_digest(expected.encode(), candidate.strip().encode())
    return found


def check_timestamp(raw: str | None, now: float, tolerance_s: float, header: str) -> int:
    """The timestamp as an int; SignatureInvalid when missing, garbled or too old/new."""
    if not raw:
        raise SignatureInvalid(f"missing {header}")
    try:
        timestamp = int(raw.strip())
    except ValueError:
        raise SignatureInvalid(f"{header} is not a Unix timestamp") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureInvalid(f"{header} is outside the {tolerance_s:g}s tolerance (replayed or clock skew)")
    return timestamp


def require_content_type(request: InboundRequest, *accepted: str) -> str:
    """The request's media type if accepted (a missing one counts as the first); else 415."""
    media = request.content_type or accepted[0]
    if media not in accepted and not (media.endswith("+json") and "application/json" in accepted):
        raise UnsupportedContentType(f"content type {media!r} is not accepted; send {' or '.join(accepted)}")
    return media


def json_body(request: InboundRequest) -> Any:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from None


def json_object(request: InboundRequest) -> dict[str, Any]:
    return parse_json_object(request.body, "body")


def parse_json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedRequest(f"{what} must be a JSON object")
    return value


def unix_time(value: Any) -> float | None:
    """A provider's numeric timestamp field, if it is one."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def valid_tolerance(value: Any) -> int:
    """A ``tolerance_seconds`` config value, checked."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
        raise InvalidSourceConfig("tolerance_seconds must be an integer from 1 to 3600")
    return value


def tolerance_only(config: Mapping[str, Any], default: int = 300) -> dict[str, Any]:
    """The config of a source whose only option is its timestamp tolerance."""
    unknown = set(config) - {"tolerance_seconds"}
    if unknown:
        raise InvalidSourceConfig(f"unknown config keys: {', '.join(sorted(unknown))}")
    return {"tolerance_seconds": valid_tolerance(config.get("tolerance_seconds", default))}


def no_config(source: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if config:
        raise InvalidSourceConfig(f"the {source} source takes no config")
    return {}


def form_body(request: InboundRequest) -> dict[str, Any]:
    """Form fields; a field sent more than once becomes a list."""
    try:
        pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(request.body))
    except (UnicodeDecodeError, ValueError):
        raise MalformedRequest("body is not valid form data") from None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            fields[key] = [*fields[key], value] if isinstance(fields[key], list) else [fields[key], value]
        else:
            fields[key] = value
    return fields
