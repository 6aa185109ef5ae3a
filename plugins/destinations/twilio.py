"""The ``twilio`` destination: send a message's text as an SMS or WhatsApp message.

The endpoint ``url`` is the REST API base: ``https://api.twilio.com``.
Config:

- ``account_sid`` (required, ``AC`` and 32 hex digits) and ``auth_token``
  (required): HTTP Basic credentials, as Twilio's own SDKs send them;
- ``from`` (required): the sender, a Twilio number (``+15550001111``) or
  ``whatsapp:+15550001111``;
- ``to`` (optional): always send to this number; without it the message goes
  back to whoever wrote (``message.conversation_key``: Twilio sources set it
  to ``<From>|<To>`` of the inbound message, and we answer its ``From``).
  With neither, the delivery fails at once, without a request. When ``from``
  is a WhatsApp sender and the recipient has no ``whatsapp:`` prefix, it is
  added.

We POST the form fields ``From``, ``To`` and ``Body`` to
``<url>/2010-04-01/Accounts/<account_sid>/Messages.json``. The body is the
payload's ``text`` field, else a one-line summary of the event
(:mod:`plugins.destinations.text`), cut to Twilio's 1600 characters. Twilio
answers 201 with the message; errors carry a JSON ``code`` and ``message``
(shown in the attempt's error). 429 and 5xx are retried, honouring
``Retry-After``; other 4xx (an invalid number, bad credentials) are final.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from plugins.destinations.config_checks import config_of, optional_string, required_secret, required_string
from plugins.destinations.http_result import HttpAnswer, exchange
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

__all__ = ["TwilioDestination", "MAX_BODY_CHARS"]

#: Twilio refuses a longer message body (error 21617).
MAX_BODY_CHARS = 1600
_KEYS = {"account_sid", "auth_token", "from", "to"}
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_WHATSAPP = "whatsapp:"
# Room for the error JSON (or the created message) to parse.
_READ_LIMIT = 16 * 1024


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    sender: str
    recipient: str | None


def _settings(target: EndpointTarget) -> TwilioSettings:
    try:
        check_url_shape(target.url)
    except DestinationRefused as exc:
        raise InvalidEndpointConfig(str(exc)) from None
    config = config_of(target.config, "twilio", _KEYS)
    account_sid = required_secret(config, "account_sid")
    if not _ACCOUNT_SID.fullmatch(account_sid):
        raise InvalidEndpointConfig("config.account_sid must be AC followed by 32 hex digits")
    return TwilioSettings(
        account_sid=account_sid,
        auth_token=required_secret(config, "auth_token"),
        sender=required_string(config, "from"),
        recipient=optional_string(config, "to"),
    )


def _recipient(settings: TwilioSettings, conversation_key: str | None) -> str | None:
    # "<From>|<To>" of the inbound message: the reply goes to its From.
    recipient = settings.recipient or (conversation_key or "").partition("|")[0].strip() or None
    if recipient and settings.sender.startswith(_WHATSAPP) and not recipient.startswith(_WHATSAPP):
        recipient = _WHATSAPP + recipient
    return recipient


def _twilio_detail(answer: HttpAnswer) -> str | None:
    """Twilio's error ``code`` and ``message``."""
    parsed = answer.json()
    if isinstance(parsed, dict) and (parsed.get("code") or parsed.get("message")):
        return " ".join(str(parsed[key]) for key in ("code", "message") if parsed.get(key))
    return answer.excerpt.strip()[:200] or None


class TwilioDestination:
    name = "twilio"

    def validate(self, target: EndpointTarget) -> None:
        _settings(target)

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        try:
            settings = _settings(target)
        except InvalidEndpointConfig as exc:
            return SendResult(ok=False, error=str(exc), retryable=False)
        recipient = _recipient(settings, message.conversation_key)
        if recipient is None:
            return SendResult(ok=False, retryable=False,
                              error="no recipient: set config.to, or route events that come from a Twilio message")
        url = f"{target.url.rstrip('/')}/2010-04-01/Accounts/{quote(settings.account_sid, safe='')}/Messages.json"
        answer = await exchange(
            context, "POST", url,
            read_limit=_READ_LIMIT,
            form={"To": recipient, "From": settings.sender, "Body": message_text(message, MAX_BODY_CHARS)},
            basic_auth=(settings.account_sid, settings.auth_token),
            headers={"accept": "application/json", "user-agent": "Switchboard-Webhooks/0.1"},
        )
        if isinstance(answer, SendResult):
            return answer
        return answer.result(context, "Twilio", None if answer.ok else _twilio_detail(answer))


@hookimpl
def register_destinations(register):
    register(TwilioDestination())
