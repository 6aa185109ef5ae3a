"""The ``nats`` destination: publish deliveries to a NATS subject for internal teams.

The endpoint ``url`` names the subject: ``nats:<subject>``, e.g.
``nats:orders.created``. The URL is the only place the subject lives (so
endpoint listings show where deliveries go); ``config`` takes only
``header_names`` (``standard`` or ``svix``, as for ``webhook``).
A subject is dot-separated non-empty tokens of printable ASCII, without
spaces or the wildcards ``*`` and ``>``. Subjects the platform itself uses
(``events.``, ``deliveries.``, ``dead.``, ``attempts.``, see
:mod:`switchboard.messaging`) and system subjects (a first token starting
with ``$`` or ``_``, such as ``$JS.`` and ``_INBOX.``) are refused: a tenant's
endpoint must not inject messages into the platform's own streams.

Messages go out on the platform's own connection (``context.nats``) as core
NATS publishes followed by a flush: success means the server has the
message, not that anyone consumed it. A JetStream stream capturing the
subject de-duplicates retries by ``Nats-Msg-Id``. The data is the event's
original body when the source kept it, else the payload as JSON. Headers:

- ``webhook-id`` and ``Nats-Msg-Id``: the delivery id, stable across retries;
- ``webhook-timestamp`` and ``webhook-signature``: Standard Webhooks, ``v1``
  keyed by the endpoint's ``whsec_`` secret or ``v1a`` by its ``whsk_`` key
  (and by the previous one too during a secret rotation), so consumers verify
  with any Standard Webhooks library (the three named ``svix-`` instead with
  ``header_names: svix``);
- ``x-switchboard-event-id``, ``x-switchboard-event-type`` (percent-encoded
  unless printable ASCII) and ``x-switchboard-attempt``;
- ``Content-Type``: the one the body came with (``application/json`` for a
  payload sent as JSON).

No connection lent (``context.nats`` is None) and a message over the server's
size limit are final failures; any other publish error or a timeout is
retried.
"""

from __future__ import annotations

import asyncio

import nats.errors

from plugins.destinations.config_checks import config_of
from plugins.destinations.signing import body_of, check_header_names, check_secret, content_type_of, signed_headers
from plugins.destinations.spec import (
    DestinationContext,
    EndpointTarget,
    InvalidEndpointConfig,
    OutboundMessage,
    SendResult,
)
from plugins.markers import hookimpl

__all__ = ["NatsSubjectDestination", "RESERVED_FIRST_TOKENS", "subject_of"]

URL_PREFIX = "nats:"
#: First tokens of the subjects the platform's streams capture (switchboard.messaging).
RESERVED_FIRST_TOKENS = frozenset({"events", "deliveries", "dead", "attempts"})
_MAX_SUBJECT_CHARS = 256


def subject_of(url: str) -> str:
    """The subject an endpoint URL names; InvalidEndpointConfig unless it may be published to."""
    if not isinstance(url, str) or not url.startswith(URL_PREFIX):
        raise InvalidEndpointConfig("url of a nats endpoint must be nats:<subject>, e.g. nats:orders.created")
    subject = url[len(URL_PREFIX):]
    if not subject:
        raise InvalidEndpointConfig("url must name a subject after nats:, e.g. nats:orders.created")
    if len(subject) > _MAX_SUBJECT_CHARS:
        raise InvalidEndpointConfig(f"subject is longer than {_MAX_SUBJECT_CHARS} characters")
    if not subject.isascii() or not subject.isprintable() or " " in subject:
        raise InvalidEndpointConfig("subject must be printable ASCII without spaces")
    if "*" in subject or ">" in subject:
        raise InvalidEndpointConfig("subject must not contain the wildcards * or >: a message goes to one subject")
    tokens = subject.split(".")
    if "" in tokens:
        raise InvalidEndpointConfig(
            "subject must be dot-separated non-empty tokens (no leading, trailing or double dots)")
    if tokens[0] in RESERVED_FIRST_TOKENS or tokens[0][0] in "$_":
        raise InvalidEndpointConfig(f"subjects starting {tokens[0]}. are reserved for the platform")
    return subject


class NatsSubjectDestination:
    name = "nats"
    sends_any_body = True

    def validate(self, target: EndpointTarget) -> None:
        subject_of(target.url)
        check_header_names(config_of(target.config, "nats", ("header_names",)))
        check_secret(target.secret)

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        try:
            self.validate(target)
        except InvalidEndpointConfig as exc:
            return SendResult(ok=False, error=str(exc), retryable=False)
        subject = subject_of(target.url)
        nc = context.nats
        if nc is None:
            return SendResult(ok=False, error="NATS not available to destinations", retryable=False)
        body = body_of(message)
        headers = {"Nats-Msg-Id": message.delivery_id, "Content-Type": content_type_of(message),
                   **signed_headers(message, target, body)}
        try:
            async with asyncio.timeout(context.timeout_s):
                await nc.publish(subject, body, headers=headers)
                await nc.flush(timeout=context.timeout_s)
        except nats.errors.MaxPayloadError:
            return SendResult(ok=False, retryable=False,
                              error=f"message of {len(body)} bytes is over the NATS server's payload limit")
        except (TimeoutError, nats.errors.TimeoutError):
            return SendResult(ok=False, error=f"timed out after {context.timeout_s:g}s", retryable=True)
        except nats.errors.Error as exc:
            return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:500], retryable=True)
        return SendResult(ok=True)


@hookimpl
def register_destinations(register):
    register(NatsSubjectDestination())
