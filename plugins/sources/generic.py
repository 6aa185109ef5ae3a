"""The ``generic`` source: any sender that signs the raw body with HMAC-SHA256.

Config (all optional):

- ``signature_header`` (default ``x-signature``): the header holding the hex
  digest, optionally behind ``signature_prefix`` (e.g. ``sha256=``);
- ``event_type_header`` / ``event_type_field``: where the event type is read
  from (a header, or a top-level field of the JSON body); else ``"webhook"``;
- ``id_header``: a header holding the sender's delivery id, used to collapse
  retries of one delivery into one event.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from plugins.markers import hookimpl
from plugins.sources.spec import (
    InboundRequest,
    InvalidSourceConfig,
    MalformedRequest,
    NormalizedEvent,
    SignatureInvalid,
)
from switchboard.signatures import constant_time_equals, hmac_sha256_hex

_HEADER_KEYS = ("signature_header", "event_type_header", "id_header")
_ALLOWED = {*_HEADER_KEYS, "signature_prefix", "event_type_field"}


class GenericHmacSource:
    name = "generic"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - _ALLOWED
        if unknown:
            raise InvalidSourceConfig(f"unknown config keys for generic source: {', '.join(sorted(unknown))}")
        for key, value in config.items():
            if value is not None and not isinstance(value, str):
                raise InvalidSourceConfig(f"{key} must be a string")
        clean = {"signature_header": "x-signature", "signature_prefix": ""}
        clean.update({k: v for k, v in config.items() if v})
        for key in _HEADER_KEYS:
            if key in clean:
                clean[key] = clean[key].lower()
        return clean

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        header = config.get("signature_header", "x-signature")
        presented = request.headers.get(header)
        if not presented:
            raise SignatureInvalid(f"missing {header} header")
        prefix = config.get("signature_prefix", "")
        if prefix:
            if not presented.startswith(prefix):
                raise SignatureInvalid(f"{header} must start with {prefix!r}")
            presented = presented[len(prefix):]
        expected = hmac_sha256_hex(secret, request.body)
        if not constant_time_equals(presented.strip().lower(), expected):
            raise SignatureInvalid("signature does not match the body")

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequest(f"body is not valid JSON: {exc}") from None
        event_type = "webhook"
        if config.get("event_type_header"):
            event_type = request.headers.get(config["event_type_header"]) or event_type
        elif config.get("event_type_field") and isinstance(payload, dict):
            value = payload.get(config["event_type_field"])
            if isinstance(value, str) and value:
                event_type = value
        provider_id = request.headers.get(config["id_header"]) if config.get("id_header") else None
        return NormalizedEvent(type=event_type[:200], payload=payload, provider_event_id=provider_id or None,
                               body=request.body)


@hookimpl
def register_sources(register):
    register(GenericHmacSource())
