"""The ``intercom`` destination: reply to an Intercom conversation as an admin.

The endpoint ``url`` is the REST API base: ``https://api.intercom.io`` (or a
regional one, ``https://api.eu.intercom.io``, ``https://api.au.intercom.io``).
Config:

- ``access_token`` (required): the app's access token;
- ``admin_id`` (required, a string such as ``"814860"``): the teammate the
  reply is from;
- ``conversation_id`` (optional): always reply in this conversation; without
  it the reply goes to the conversation the event came from
  (``message.conversation_key``, set by Intercom sources). With neither, the
  delivery fails at once, without a request;
- ``message_type`` (optional): ``"comment"`` (the default, seen by the
  customer) or ``"note"`` (seen by teammates only: a draft to review).

We POST ``{"message_type", "type": "admin", "admin_id", "body"}`` to
``<url>/conversations/<id>/reply`` with ``Authorization: Bearer <token>``
and ``Intercom-Version: 2.11``. The body is the payload's ``text`` field,
else a one-line summary of the event (:mod:`plugins.destinations.text`).
Intercom answers 200 with the conversation; 429 and 5xx are retried,
honouring ``Retry-After``, else ``X-RateLimit-Reset`` (when the rate-limit
window reopens); other 4xx (401 bad token, 404 no such conversation or
admin, 422) are final.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from urllib.parse import quote

import orjson

from plugins.destinations.config_checks import config_of, optional_string, required_secret, required_string
from plugins.destinations.http_result import HttpAnswer, exchange, parse_retry_after
from plugins.destinations.spec import (
    DestinationContext,
    EndpointTarget,
    InvalidEndpointConfig,
    OutboundMessage,
    SendResult,
)
from plugins.destinations.text import message_text
from plugins.markers import hookimpl
from switchboard.netguard import DestinationRefused, check_url_shape

__all__ = ["IntercomDestination", "INTERCOM_VERSION"]

#: The API version our request shape is written against.
INTERCOM_VERSION = "2.11"
_KEYS = {"access_token", "admin_id", "conversation_id", "message_type"}
_MESSAGE_TYPES = ("comment", "note")
# The reply answer is the whole conversation: room to read its error list.
_READ_LIMIT = 64 * 1024


@dataclass(frozen=True)
class IntercomSettings:
    access_token: str
    admin_id: str
    conversation_id: str | None
    message_type: str


def _settings(target: EndpointTarget) -> IntercomSettings:
    try:
        check_url_shape(target.url)
    except DestinationRefused as exc:
        raise InvalidEndpointConfig(str(exc)) from None
    config = config_of(target.config, "intercom", _KEYS)
    if "admin_id" in config and not isinstance(config["admin_id"], str):
        raise InvalidEndpointConfig('config.admin_id must be a string, e.g. "814860"')
    message_type = config.get("message_type", "comment")
    if message_type not in _MESSAGE_TYPES:
        raise InvalidEndpointConfig('config.message_type must be "comment" or "note"')
    return IntercomSettings(
        access_token=required_secret(config, "access_token"),
        admin_id=required_string(config, "admin_id"),
        conversation_id=optional_string(config, "conversation_id"),
        message_type=message_type,
    )


def _intercom_detail(answer: HttpAnswer) -> str | None:
    """The first of Intercom's ``errors``, as ``code: message``."""
    parsed = answer.json()
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return ": ".join(str(first[key]) for key in ("code", "message") if first.get(key)) or None
    return answer.excerpt.strip()[:200] or None


def _until_reset(answer: HttpAnswer) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (a Unix time), when Intercom sent it."""
    reset = answer.headers.get("x-ratelimit-reset")
    try:
        return parse_retry_after(str(float(reset) - time.time())) if reset else None
    except ValueError:
        return None


class IntercomDestination:
    name = "intercom"

    def validate(self, target: EndpointTarget) -> None:
        _settings(target)

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        try:
            settings = _settings(target)
        except InvalidEndpointConfig as exc:
            return SendResult(ok=False, error=str(exc), retryable=False)
        conversation_id = settings.conversation_id or message.conversation_key
        if not conversation_id:
            return SendResult(ok=False, retryable=False,
                              error="no Intercom conversation: set config.conversation_id, "
                                    "or route events that come from an Intercom conversation")
        body = {
            "message_type": settings.message_type,
            "type": "admin",
            "admin_id": settings.admin_id,
            "body": message_text(message),
        }
        answer = await exchange(
            context, "POST", f"{target.url.rstrip('/')}/conversations/{quote(conversation_id, safe='')}/reply",
            read_limit=_READ_LIMIT,
            body=orjson.dumps(body),
            headers={
                "authorization": f"Bearer {settings.access_token}",
                "accept": "application/json",
                "content-type": "application/json",
                "intercom-version": INTERCOM_VERSION,
                "user-agent": "Switchboard-Webhooks/0.1",
            },
        )
        if isinstance(answer, SendResult):
            return answer
        result = answer.result(context, "Intercom", None if answer.ok else _intercom_detail(answer))
        if answer.status_code == 429 and result.retryable and result.retry_after_s is None:
            result = replace(result, retry_after_s=_until_reset(answer))
        return result


@hookimpl
def register_destinations(register):
    register(IntercomDestination())
