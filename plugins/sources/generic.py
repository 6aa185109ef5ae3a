"""The ``generic`` source: any sender that signs the raw body with an HMAC.

Config (all optional):

- ``signature_header`` (default ``x-signature``): the header holding the
  signature, optionally behind ``signature_prefix`` (e.g. ``sha256=``);
- ``algorithm``: ``sha256`` (default), ``sha1`` or ``sha512``;
- ``encoding``: ``hex`` (default) or ``base64``;
- ``timestamp_header``: when set, the sender signs ``"{timestamp}.{body}"``
  and the timestamp (Unix seconds) must be within ``tolerance_seconds``
  (default 300);
- ``event_type_header`` / ``event_type_field``: where the event type is read
  from (a header, or a top-level field of the JSON body); else ``"webhook"``;
- ``id_header``: a header holding the sender's delivery id, used to collapse
  retries of one delivery into one event.
"""

from __future__ import annotations

import base64
import time
from typing import Any
from collections.abc import Mapping

from plugins.markers import hookimpl
from plugins.sources.spec import InboundRequest, InvalidSourceConfig, NormalizedEvent, SignatureInvalid
from plugins.sources.verification import (
    JSON_TYPES,
    check_timestamp,
    hmac_digest,
    json_body,
    matches_any,
    require_content_type,
    valid_tolerance,
)

_HEADER_KEYS = ("signature_header", "event_type_header", "id_header", "timestamp_header")
_STRING_KEYS = {*_HEADER_KEYS, "signature_prefix", "event_type_field", "algorithm", "encoding"}
_CHOICES = {"algorithm": ("sha256", "sha1", "sha512"), "encoding": ("hex", "base64")}


class GenericHmacSource:
    name = "generic"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - _STRING_KEYS - {"tolerance_seconds"}
        if unknown:
            raise InvalidSourceConfig(f"unknown config keys for generic source: {', '.join(sorted(unknown))}")
        for key in _STRING_KEYS & set(config):
            if config[key] is not None and not isinstance(config[key], str):
                raise InvalidSourceConfig(f"{key} must be a string")
        clean: dict[str, Any] = {"signature_header": "x-signature", "signature_prefix": "", "algorithm": "sha256",
                                 "encoding": "hex"}
        clean.update({k: v for k, v in config.items() if v})
        for key, choices in _CHOICES.items():
            if clean[key] not in choices:
                raise InvalidSourceConfig(f"{key} must be one of {', '.join(choices)}")
        for key in _HEADER_KEYS:
            if key in clean:
                clean[key] = clean[key].lower()
        if "timestamp_header" in clean:
            clean["tolerance_seconds"] = valid_tolerance(clean.get("tolerance_seconds", 300))
        return clean

    def _signed_content(self, request: InboundRequest, config: Mapping[str, Any]) -> bytes:
        header = config.get("timestamp_header")
        if not header:
            return request.body
        timestamp = check_timestamp(request.headers.get(header), request.received_at or time.time(),
                                    config.get("tolerance_seconds", 300), header)
        return f"{timestamp}.".encode() + request.body

    def _encode(self, digest: bytes, config: Mapping[str, Any]) -> str:
        return base64.b64encode(digest).decode() if config.get("encoding") == "base64" else digest.hex()

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
        digest = hmac_digest(secret.encode(), self._signed_content(request, config), config.get("algorithm", "sha256"))
        expected = self._encode(digest, config)
        if config.get("encoding", "hex") == "hex":
            presented = presented.strip().lower()
        if not matches_any(expected, [presented]):
            raise SignatureInvalid("signature does not match the body")

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        require_content_type(request, *JSON_TYPES)
        payload = json_body(request)
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

    def sign(self, body: bytes, secret: str, config: Mapping[str, Any], url: str) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        content = body
        if config.get("timestamp_header"):
            timestamp = str(int(time.time()))
            headers[config["timestamp_header"]] = timestamp
            content = f"{timestamp}.".encode() + body
        digest = hmac_digest(secret.encode(), content, config.get("algorithm", "sha256"))
        headers[config.get("signature_header", "x-signature")] = config.get("signature_prefix", "") + self._encode(
            digest, config)
        return headers


@hookimpl
def register_sources(register):
    register(GenericHmacSource())
