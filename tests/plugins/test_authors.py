"""Who wrote a conversational event: the loop guard's first line.

Each request is signed the way the provider signs it (the providers' SDKs, via
``tests.plugins.test_sources``), verified, then normalized; ``author`` must say
customer only for a person's message, never for what a bot, the app itself,
an agent or the provider's bookkeeping sent.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from plugins.sources.spec import AUTHORS
from tests.plugins.test_sources import BY_TYPE, plugin, sample


def normalized(kind: str, body: bytes):
    case = BY_TYPE[kind]
    source, config = plugin(case)
    request = case.signed(body)
    source.verify(request, case.secret, config)
    return source.normalize(request, config)


def slack(**event_fields) -> bytes:
    payload = json.loads(sample("slack"))
    payload["event"] = {**payload["event"], **event_fields}
    return json.dumps({k: v for k, v in payload.items()}).encode()


def without(body: bytes, *names: str) -> bytes:
    payload = json.loads(body)
    for name in names:
        payload["event"].pop(name, None)
    return json.dumps(payload).encode()


@pytest.mark.parametrize("body,author", [
    (sample("slack"), "customer"),
    (slack(type="app_mention"), "customer"),
    (slack(subtype="thread_broadcast", thread_ts="1355517523.000001"), "customer"),
    (slack(subtype="file_share"), "customer"),
    # A bot's post: Slack's classic bot_message, and chat.postMessage by an app (bot_id, no subtype).
    (without(slack(subtype="bot_message", bot_id="B0001", username="helper"), "user"), "bot"),
    (slack(bot_id="B0002", app_id="A123ABC456", bot_profile={"id": "B0002", "name": "switchboard"}), "bot"),
    # The app's own bot user, named in the event's authorizations, posting as a user.
    (slack(user="U222222222"), "bot"),
    (slack(subtype="message_changed"), "system"),
    (slack(subtype="channel_join"), "system"),
    (slack(type="reaction_added"), "system"),
], ids=["message", "mention", "thread-broadcast", "file-share", "bot-message", "app-post", "own-bot-user",
        "edited", "joined", "reaction"])
def test_slack_marks_who_wrote_the_message(body: bytes, author: str) -> None:
    assert normalized("slack", body).author == author


def intercom(topic: str, last_part_author: str | None = None) -> bytes:
    payload = json.loads(sample("intercom"))
    payload["topic"] = topic
    if last_part_author:
        payload["data"]["item"]["conversation_parts"] = {"type": "conversation_part.list", "conversation_parts": [
            {"type": "conversation_part", "part_type": "comment", "body": "<p>hi</p>",
             "author": {"type": last_part_author, "id": "1"}}]}
    return json.dumps(payload).encode()


@pytest.mark.parametrize("body,author", [
    (sample("intercom"), "customer"),
    (intercom("conversation.user.replied", "user"), "customer"),
    (intercom("conversation.contact.replied", "lead"), "customer"),
    (intercom("conversation.admin.replied", "admin"), "agent"),
    (intercom("conversation.admin.single.created"), "agent"),
    (intercom("conversation.admin.noted", "admin"), "agent"),
    (intercom("conversation.operator.replied", "bot"), "bot"),
    # A "user replied" notification whose newest part an admin or a bot wrote is theirs, not the customer's.
    (intercom("conversation.user.replied", "bot"), "bot"),
    (intercom("conversation.user.replied", "admin"), "agent"),
    (intercom("conversation.admin.closed"), "agent"),
    (intercom("contact.created"), "system"),
    (intercom("conversation.rating.added"), "system"),
], ids=["user-created", "user-replied", "contact-replied", "admin-replied", "admin-started", "admin-note",
        "operator", "user-topic-bot-part", "user-topic-admin-part", "admin-closed", "contact-created", "rating"])
def test_intercom_marks_who_wrote_the_message(body: bytes, author: str) -> None:
    assert normalized("intercom", body).author == author


BUSINESS, CUSTOMER = "+15017122661", "+15558675310"


def twilio(**params) -> bytes:
    return urlencode(params).encode()


def test_twilio_an_incoming_message_is_the_customers_in_their_conversation() -> None:
    event = normalized("twilio", sample("twilio"))
    assert (event.author, event.conversation_key) == ("customer", f"{CUSTOMER}|{BUSINESS}")


@pytest.mark.parametrize("status", ["queued", "sending", "sent", "delivered", "undelivered", "failed", "read"])
def test_twilio_a_status_callback_is_the_systems_in_the_same_conversation(status: str) -> None:
    # A status callback of a message the business sent: From is the business's own number.
    body = twilio(MessageSid="SM00000000000000000000000000000001", MessageStatus=status, SmsStatus=status,
                  From=BUSINESS, To=CUSTOMER, AccountSid="AC" + "X" * 32, ApiVersion="2010-04-01")
    event = normalized("twilio", body)
    assert event.type == f"message.{status}" and event.author == "system"
    # Keyed customer first, as the incoming messages are: a reply could only ever go to the customer.
    assert event.conversation_key == f"{CUSTOMER}|{BUSINESS}"


def test_twilio_calls_an_inbound_ringing_call_is_the_customers_the_rest_the_systems() -> None:
    ringing = normalized("twilio", twilio(CallSid="CA1", CallStatus="ringing", Direction="inbound",
                                          From=CUSTOMER, To=BUSINESS))
    assert (ringing.author, ringing.conversation_key) == ("customer", f"{CUSTOMER}|{BUSINESS}")
    outbound = normalized("twilio", twilio(CallSid="CA2", CallStatus="completed", Direction="outbound-api",
                                           From=BUSINESS, To=CUSTOMER))
    assert (outbound.author, outbound.conversation_key) == ("system", f"{CUSTOMER}|{BUSINESS}")


@pytest.mark.parametrize("kind", ["stripe", "github", "standard-webhooks", "generic"])
def test_non_conversational_sources_name_no_author(kind: str) -> None:
    assert normalized(kind, sample(kind)).author is None


def test_the_authors_are_the_documented_four() -> None:
    assert AUTHORS == ("customer", "agent", "bot", "system")
