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
  from (a header, or a top-level field of the JSON body or form); else
  ``event_type`` (default ``"webhook"``);
- ``id_header``: a header holding the sender's delivery id, used to collapse
  retries of one delivery into one event;
- ``content_types``: the media types accepted (``type/subtype``, ``type/*``
  or ``*/*``); by default JSON (with ``+json`` types), form-encoded, XML,
  ``text/plain`` and ``application/octet-stream``. Others are 415.

The signature is checked over the raw bytes before anything is parsed, and
the bytes are kept as they came, delivered byte for byte with their
Content-Type. The payload is the parsed JSON, or a form's fields (a field
sent more than once becomes a list); any other body has no payload (None),
so the features that read one (filters, AI conditions, transforms) refuse
it, saying so. A request without a Content-Type is read as JSON.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any
from collections.abc import Mapping

from plugins.markers import hookimpl
from plugins.sources.spec import (
    InboundRequest,
    InvalidSourceConfig,
    NormalizedEvent,
    SignatureInvalid,
    UnsupportedContentType,
)
from plugins.sources.verification import (
    FORM_TYPE,
    check_timestamp,
    form_body,
    hmac_digest,
    json_body,
    matches_any,
    valid_tolerance,
)
from switchboard.bodies import JSON_MEDIA, is_json_media

__all__ = ["GenericHmacSource", "DEFAULT_CONTENT_TYPES"]

_HEADER_KEYS = ("signature_header", "event_type_header", "id_header", "timestamp_header")
_STRING_KEYS = {*_HEADER_KEYS, "signature_prefix", "event_type_field", "event_type", "algorithm", "encoding"}
_CHOICES = {"algorithm": ("sha256", "sha1", "sha512"), "encoding": ("hex", "base64")}
#: What a generic source accepts unless its ``content_types`` says otherwise.
DEFAULT_CONTENT_TYPES = (JSON_MEDIA, FORM_TYPE, "application/xml", "text/xml", "text/plain",
                         "application/octet-stream")
_MAX_CONTENT_TYPES = 20
_TOKEN = r"[a-z0-9!#$&^_.+-]{1,100}"
_MEDIA_PATTERN = re.compile(rf"^(\*/\*|{_TOKEN}/(\*|{_TOKEN}))$")


def _content_types(value: Any) -> list[str]:
    """A ``content_types`` config value, checked, in lower case."""
    if not isinstance(value, list) or not 1 <= len(value) <= _MAX_CONTENT_TYPES or \
            not all(isinstance(v, str) for v in value):
        raise InvalidSourceConfig(f"content_types must be a list of 1 to {_MAX_CONTENT_TYPES} media types")
    types = [v.strip().lower() for v in value]
    for media in types:
        if not _MEDIA_PATTERN.match(media):
            raise InvalidSourceConfig(f"content_types: {media!r} is not a media type (type/subtype, type/* or */*)")
    return list(dict.fromkeys(types))


def _accepts(media: str, accepted: list[str] | tuple[str, ...]) -> bool:
    if media in accepted or "*/*" in accepted or f"{media.split('/', 1)[0]}/*" in accepted:
        return True
    return media.endswith("+json") and JSON_MEDIA in accepted


class GenericHmacSource:
    name = "generic"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - _STRING_KEYS - {"tolerance_seconds", "content_types"}
        if unknown:
            raise InvalidSourceConfig(f"unknown config keys for generic source: {', '.join(sorted(unknown))}")
        for key in _STRING_KEYS & set(config):
            if config[key] is not None and not isinstance(config[key], str):
                raise InvalidSourceConfig(f"{key} must be a string")
        clean: dict[str, Any] = {"signature_header": "x-signature", "signature_prefix": "", "algorithm": "sha256",
                                 "encoding": "hex"}
        clean.update({k: v for k, v in config.items() if v})
        clean["content_types"] = _content_types(clean.get("content_types", list(DEFAULT_CONTENT_TYPES)))
        if len(clean.get("event_type", "")) > 200:
            raise InvalidSourceConfig("event_type is at most 200 characters")
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

    def _payload(self, request: InboundRequest, config: Mapping[str, Any]) -> Any:
        """The parsed JSON, a form's fields, or None for any other body; 415 for a type not accepted."""
        accepted = config.get("content_types") or DEFAULT_CONTENT_TYPES
        media = request.content_type or (JSON_MEDIA if JSON_MEDIA in accepted else "")
        if not media or not _accepts(media, accepted):
            raise UnsupportedContentType(f"content type {media or '(none)'!r} is not accepted; this source takes "
                                         f"{', '.join(accepted)} (its content_types)")
        if is_json_media(media):
            return json_body(request)
        if media == FORM_TYPE:
            return form_body(request)
        return None

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        payload = self._payload(request, config)
        event_type = config.get("event_type") or "webhook"
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
