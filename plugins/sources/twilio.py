"""The ``twilio`` source: ``X-Twilio-Signature``, base64 HMAC over the URL and the form.

Twilio signs the full URL it requested followed by every POST parameter,
sorted by name, as ``name + value``; HMAC-SHA1 keyed by the account's auth
token (HMAC-SHA256 when ``X-Twilio-Webhooks-Signature-Settings`` says so).
Behind a reverse proxy the URL the edge sees is not the one Twilio called:
set ``public_base_url`` (e.g. ``https://hooks.example.com``) and the path and
query as received are appended to it. Twilio sometimes signs with the port
and sometimes without: both are accepted, as in Twilio's own validator.
Accepted messages are answered with empty TwiML, so Twilio sends no reply.
An incoming message (and an incoming call's first, ringing callback) is the
customer's; status callbacks are the system's. Either way the conversation
is keyed ``<customer>|<business>``: a status callback of a message the
business sent has the business's number in ``From``, and a reply must never
go there.
Docs: https://www.twilio.com/docs/usage/security#validating-requests
"""

from __future__ import annotations

import base64
from typing import Any
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from plugins.markers import hookimpl
from plugins.sources.spec import InboundRequest, InvalidSourceConfig, NormalizedEvent, Reply, SignatureInvalid
from plugins.sources.verification import FORM_TYPE, form_body, hmac_digest, matches_any, require_content_type

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _signed_url(request: InboundRequest, config: Mapping[str, Any]) -> str:
    base = config.get("public_base_url")
    if not base:
        return request.url
    return base.rstrip("/") + request.path + (f"?{request.query_string}" if request.query_string else "")


def _with_and_without_port(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    without_port = urlunsplit(parts._replace(netloc=host))
    return [url, with_port, without_port]


def _signature(secret: str, url: str, params: Mapping[str, Any], algorithm: str) -> str:
    text = url
    for name in sorted(params):
        values = params[name] if isinstance(params[name], list) else [params[name]]
        for value in sorted(set(values)):
            text += name + value
    return base64.b64encode(hmac_digest(secret.encode(), text.encode(), algorithm)).decode()


def _algorithm(request: InboundRequest) -> str:
    settings = request.headers.get("x-twilio-webhooks-signature-settings", "")
    for part in settings.split(","):
        name, _, value = part.partition("=")
        if name.strip() == "algorithm" and value.strip().upper() == "HMAC_SHA256":
            return "sha256"
    return "sha1"


class TwilioSource:
    name = "twilio"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - {"public_base_url"}
        if unknown:
            raise InvalidSourceConfig(f"unknown config keys: {', '.join(sorted(unknown))}")
        base = config.get("public_base_url")
        if base is not None:
            parts = urlsplit(base) if isinstance(base, str) else None
            if not parts or parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise InvalidSourceConfig("public_base_url must be like https://hooks.example.com")
        return {"public_base_url": base} if base else {}

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        presented = request.headers.get("x-twilio-signature")
        if not presented:
            raise SignatureInvalid("missing X-Twilio-Signature header")
        params = form_body(request) if request.content_type == FORM_TYPE else {}
        algorithm = _algorithm(request)
        urls = dict.fromkeys(_with_and_without_port(_signed_url(request, config)))  # distinct, in order
        # Lazily: the URL as configured nearly always matches first.
        if not any(matches_any(_signature(secret, url, params, algorithm), [presented]) for url in urls):
            raise SignatureInvalid("X-Twilio-Signature does not match the URL and parameters")

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        require_content_type(request, FORM_TYPE)
        params = form_body(request)
        sender, recipient = params.get("From"), params.get("To")
        inbound = False
        if "MessageSid" in params:
            status = params.get("MessageStatus") or params.get("SmsStatus")
            kind, sid = "message", params["MessageSid"]
            inbound = status in (None, "received")
            event_type = "message.received" if inbound else f"message.{status}"
            author = "customer" if inbound else "system"
        elif "CallSid" in params:
            status = params.get("CallStatus")
            kind, sid = "call", params["CallSid"]
            event_type = f"call.{status}" if status else "call"
            inbound = params.get("Direction", "inbound") == "inbound"
            author = "customer" if inbound and status in (None, "ringing") else "system"
        else:
            kind, sid, status, event_type, author = "twilio", None, None, "twilio", "system"
        # The customer first, whoever sent this one.
        customer, business = (sender, recipient) if inbound else (recipient, sender)
        return NormalizedEvent(
            type=event_type[:200],
            payload=params,
            # A status callback repeats the SID with a new status: each status is its own event.
            provider_event_id=f"{kind}:{sid}:{status or ''}" if isinstance(sid, str) else None,
            conversation_key=f"{customer}|{business}" if customer and business else None,
            author=author,
        )

    def acknowledgement(self, config: Mapping[str, Any]) -> Reply:
        return Reply(200, EMPTY_TWIML, "text/xml")

    def sign(self, body: bytes, secret: str, config: Mapping[str, Any], url: str) -> dict[str, str]:
        request = InboundRequest("POST", urlsplit(url).path, {"content-type": FORM_TYPE}, body, url=url,
                                 query_string=urlsplit(url).query)
        signature = _signature(secret, _signed_url(request, config), form_body(request), "sha1")
        return {"x-twilio-signature": signature, "content-type": FORM_TYPE}


@hookimpl
def register_sources(register):
    register(TwilioSource())
