"""The ``slack`` destination: post a message's text to Slack.

The text is the payload's ``text`` field (an AI-drafted reply, a transform's
output), else a one-line summary of the event (see
:mod:`plugins.destinations.text`). Two modes, chosen by ``config.mode``:

``incoming_webhook`` (the default)
    The endpoint ``url`` is the incoming-webhook URL
    (``https://hooks.slack.com/services/...``); no other config. We POST
    ``{"text": ...}``. Slack answers 200 ``ok``, or a 4xx with an error string
    in the body (``invalid_payload``, ``no_service``, ``channel_not_found``).
    410 (``channel_is_archived``) disables the endpoint.

``chat_post_message``
    The endpoint ``url`` is the Web API base (``https://slack.com/api``);
    config ``bot_token`` (``xoxb-...``, required) and ``channel`` (optional).
    We POST JSON ``{"channel", "text", "thread_ts"?}`` to
    ``<url>/chat.postMessage`` with ``Authorization: Bearer <bot_token>``.
    Without ``channel`` the message goes to the conversation the event came
    from: ``message.conversation_key``, which Slack sources set to
    ``<channel>`` or ``<channel>:<thread_ts>`` (the reply then goes into that
    thread; with ``channel`` set, only when it is the same channel). The Web
    API answers failures with HTTP 200 and ``{"ok": false, "error": ...}``:
    ``ratelimited`` and Slack's transient errors are retried (honouring
    ``Retry-After``), every other error (``invalid_auth``,
    ``channel_not_found``, ``not_in_channel``...) is final.

In both modes HTTP 429 and 5xx are retried (honouring ``Retry-After``) and
other 4xx are final, per :mod:`plugins.destinations.http_result`.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping

import orjson

from plugins.destinations.config_checks import config_of, optional_string, required_secret
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

__all__ = ["SlackDestination"]

INCOMING_WEBHOOK = "incoming_webhook"
CHAT_POST_MESSAGE = "chat_post_message"
_KEYS = {INCOMING_WEBHOOK: {"mode"}, CHAT_POST_MESSAGE: {"mode", "bot_token", "channel"}}
# Web API errors that a later try may cure; every other error is final.
_TRANSIENT_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "service_unavailable",
                               "request_timeout"})
# A chat.postMessage answer echoes the message: room for a long one.
_API_READ_LIMIT = 256 * 1024
_USER_AGENT = "Switchboard-Webhooks/0.1"


@dataclass(frozen=True)
class SlackSettings:
    mode: str
    bot_token: str | None = None
    channel: str | None = None


def _settings(target: EndpointTarget) -> SlackSettings:
    try:
        check_url_shape(target.url)
    except DestinationRefused as exc:
        raise InvalidEndpointConfig(str(exc)) from None
    if not isinstance(target.config, Mapping):
        raise InvalidEndpointConfig("config of a slack endpoint must be an object")
    mode = target.config.get("mode", INCOMING_WEBHOOK)
    if not isinstance(mode, str) or mode not in _KEYS:
        raise InvalidEndpointConfig(f"config.mode must be {INCOMING_WEBHOOK!r} or {CHAT_POST_MESSAGE!r}")
    config = config_of(target.config, f"slack ({mode})", _KEYS[mode])
    if mode == INCOMING_WEBHOOK:
        return SlackSettings(mode)
    return SlackSettings(mode, required_secret(config, "bot_token"), optional_string(config, "channel"))


def _where(settings: SlackSettings, conversation_key: str | None) -> tuple[str | None, str | None]:
    """(channel, thread_ts) for a chat.postMessage."""
    channel, _, thread_ts = (conversation_key or "").partition(":")
    if settings.channel is None:
        return channel or None, thread_ts or None
    # A thread only makes sense in the channel it lives in.
    return settings.channel, (thread_ts or None) if channel == settings.channel else None


def _slack_detail(answer: HttpAnswer) -> str | None:
    """Slack's error string: the body of a webhook answer, ``error`` of an API answer."""
    parsed = answer.json()
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    return answer.excerpt.strip()[:200] or None


class SlackDestination:
    name = "slack"

    def validate(self, target: EndpointTarget) -> None:
        _settings(target)

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        try:
            settings = _settings(target)
        except InvalidEndpointConfig as exc:
            return SendResult(ok=False, error=str(exc), retryable=False)
        if settings.mode == INCOMING_WEBHOOK:
            return await self._incoming_webhook(message, target, context)
        return await self._chat_post_message(message, target, settings, context)

    async def _incoming_webhook(self, message: OutboundMessage, target: EndpointTarget,
                                context: DestinationContext) -> SendResult:
        answer = await exchange(
            context, "POST", target.url,
            body=orjson.dumps({"text": message_text(message)}),
            headers={"content-type": "application/json", "user-agent": _USER_AGENT},
        )
        if isinstance(answer, SendResult):
            return answer
        if answer.ok:
            return answer.result(context)
        detail = _slack_detail(answer)
        if answer.status_code == 410:
            reason = f"Slack answered 410 ({detail or 'gone'}): the webhook's channel is gone"
            return answer.failure(reason, retryable=False, disable_endpoint=reason)
        return answer.result(context, "Slack", detail)

    async def _chat_post_message(self, message: OutboundMessage, target: EndpointTarget, settings: SlackSettings,
                                 context: DestinationContext) -> SendResult:
        channel, thread_ts = _where(settings, message.conversation_key)
        if channel is None:
            return SendResult(ok=False, retryable=False,
                              error="no Slack channel: set config.channel, or route events that have a conversation")
        body: dict[str, str] = {"channel": channel, "text": message_text(message)}
        if thread_ts:
            body["thread_ts"] = thread_ts
        answer = await exchange(
            context, "POST", target.url.rstrip("/") + "/chat.postMessage",
            read_limit=_API_READ_LIMIT,
            body=orjson.dumps(body),
            headers={
                "authorization": f"Bearer {settings.bot_token}",
                # Without the charset Slack warns "missing_charset".
                "content-type": "application/json; charset=utf-8",
                "user-agent": _USER_AGENT,
            },
        )
        if isinstance(answer, SendResult):
            return answer
        if not answer.ok:
            return answer.result(context, "Slack", _slack_detail(answer))
        parsed = answer.json()
        if not isinstance(parsed, dict) or not isinstance(parsed.get("ok"), bool):
            # Retrying could post twice; the answer is kept for whoever looks.
            return answer.failure(f"Slack answered {answer.status_code} without a JSON \"ok\" field", retryable=False)
        if parsed["ok"]:
            return answer.result(context)
        error = parsed.get("error") if isinstance(parsed.get("error"), str) else "unknown error"
        return answer.failure(f"Slack chat.postMessage failed: {error}", retryable=error in _TRANSIENT_ERRORS)


@hookimpl
def register_destinations(register):
    register(SlackDestination())
