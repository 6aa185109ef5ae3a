"""The slack, intercom and twilio destinations against a loopback stand-in for each provider's API.

Each test sends through a real HTTP exchange with a :class:`Receiver` that
answers what the provider answers, and checks the exact request the provider
would get; where the provider's own SDK is installed, our request is
compared with the one the SDK sends.
"""

import asyncio
import base64
import calendar
import json
import socket
import time
from urllib.parse import parse_qs, urlsplit

from tests.outbound_fixture import outbound_client
import pytest

from plugins.destinations.http_result import HttpAnswer, parse_retry_after
from plugins.destinations.intercom import IntercomDestination
from plugins.destinations.slack import SlackDestination
from plugins.destinations.spec import DestinationContext, EndpointTarget, InvalidEndpointConfig, OutboundMessage
from plugins.destinations.text import SUMMARY_JSON_CHARS, message_text
from plugins.destinations.twilio import MAX_BODY_CHARS, TwilioDestination
from plugins.manager import load_registry
from switchboard.signatures import generate_webhook_secret
from tests.receivers import Receiver

slack, intercom, twilio = SlackDestination(), IntercomDestination(), TwilioDestination()
SECRET = generate_webhook_secret()
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
REPLY = {"text": "Thanks for writing: your refund is on its way."}


def message(payload=REPLY, conversation_key: str | None = None,
            event_type: str = "message.received") -> OutboundMessage:
    return OutboundMessage(delivery_id="evt_1:ep_1", event_id="evt_1", tenant_id="ten_1", event_type=event_type,
                           payload=payload, attempt=1,
                           conversation_key=conversation_key)


async def send(destination, target: EndpointTarget, msg: OutboundMessage, allow_private: bool = True,
               retry_statuses: frozenset[int] | None = None):
    async with outbound_client() as http:
        context = DestinationContext(http=http, timeout_s=5, allow_private_networks=allow_private,
                                     retry_statuses=retry_statuses)
        return await destination.send(msg, target, context)


def base_of(receiver: Receiver) -> str:
    """The receiver's root, standing in for an API base such as https://api.intercom.io."""
    return receiver.url.rsplit("/", 1)[0]


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_destinations_are_built_in() -> None:
    registry = load_registry()
    for name in ("slack", "intercom", "twilio", "nats", "webhook"):
        assert registry.destination(name).name == name


# --- the text of a message ------------------------------------------------

def test_a_drafted_text_field_is_sent_as_it_is() -> None:
    assert message_text(message({"text": "Hi there", "other": 1})) == "Hi there"


@pytest.mark.parametrize("payload", [{"id": 7, "text": 3}, {"text": "   "}, [1, 2], "plain", None])
def test_anything_else_is_summarised_on_one_line(payload) -> None:
    text = message_text(message(payload, event_type="order.created"))
    assert text == "order.created: " + json.dumps(payload, separators=(",", ":"))
    assert "\n" not in text


def test_a_long_summary_is_cut() -> None:
    text = message_text(message({"blob": "x" * 10_000}, event_type="big"))
    assert text.startswith('big: {"blob":"xxx') and text.endswith("…")
    assert len(text) == len("big: ") + SUMMARY_JSON_CHARS


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("999999") == 3600.0
    one_minute_before = calendar.timegm((2015, 10, 21, 7, 27, 0))
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=one_minute_before) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_an_endpoint_list_of_retry_statuses_replaces_the_defaults() -> None:
    context = DestinationContext(http=None, timeout_s=5, allow_private_networks=True,  # type: ignore[arg-type]
                                 retry_statuses=frozenset({409}))
    assert HttpAnswer(409, {"retry-after": "2"}).result(context).retry_after_s == 2.0
    assert not HttpAnswer(503).result(context).retryable


# --- slack: incoming webhooks ----------------------------------------------

async def test_slack_incoming_webhook_gets_the_text_as_json() -> None:
    with Receiver() as receiver:
        result = await send(slack, EndpointTarget(receiver.url, SECRET), message())
    assert result.ok and result.status_code == 200 and result.response_excerpt == "ok"
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/hook")
    assert got.headers["content-type"] == "application/json"
    assert json.loads(got.body) == {"text": REPLY["text"]}


async def test_slack_incoming_webhook_request_matches_slack_sdk() -> None:
    from slack_sdk.webhook import WebhookClient

    with Receiver() as receiver:
        await send(slack, EndpointTarget(receiver.url, SECRET), message())
        sdk = await asyncio.to_thread(WebhookClient(receiver.url).send, text=REPLY["text"])
    assert sdk.status_code == 200
    ours, theirs = receiver.requests
    assert (ours.method, ours.path) == (theirs.method, theirs.path)
    assert json.loads(ours.body) == json.loads(theirs.body)


async def test_slack_summarises_an_event_without_text() -> None:
    with Receiver() as receiver:
        await send(slack, EndpointTarget(receiver.url, SECRET), message({"id": "ch_1", "amount": 500},
                                                                          event_type="charge.succeeded"))
    assert json.loads(receiver.requests[0].body) == {"text": 'charge.succeeded: {"id":"ch_1","amount":500}'}


async def test_slack_410_disables_the_endpoint() -> None:
    with Receiver(status=410, response_body=b"channel_is_archived") as receiver:
        result = await send(slack, EndpointTarget(receiver.url, SECRET), message())
    assert not result.ok and not result.retryable and result.status_code == 410
    assert result.disable_endpoint and "channel_is_archived" in result.disable_endpoint


@pytest.mark.parametrize("status,body", [(400, b"invalid_payload"), (403, b"action_prohibited"),
                                         (404, b"no_service")])
async def test_slack_webhook_errors_are_final(status: int, body: bytes) -> None:
    with Receiver(status=status, response_body=body) as receiver:
        result = await send(slack, EndpointTarget(receiver.url, SECRET), message())
    assert not result.ok and not result.retryable and result.disable_endpoint is None
    assert result.error == f"Slack answered {status}: {body.decode()}"
    assert result.response_excerpt == body.decode()


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_slack_webhook_rate_limits_and_outages_are_retried(status: int) -> None:
    with Receiver(status=status, headers={"Retry-After": "30"}, response_body=b"rollup_error") as receiver:
        result = await send(slack, EndpointTarget(receiver.url, SECRET), message())
    assert not result.ok and result.retryable and result.retry_after_s == 30.0
    assert result.response_headers["retry-after"] == "30"


async def test_an_endpoint_list_of_retry_statuses_is_honoured() -> None:
    with Receiver(status=500) as receiver:
        result = await send(slack, EndpointTarget(receiver.url, SECRET), message(), retry_statuses=frozenset({503}))
    assert not result.ok and not result.retryable


# --- slack: chat.postMessage -------------------------------------------------

BOT = {"mode": "chat_post_message", "bot_token": "xoxb-1-2-abc"}
POSTED = b'{"ok":true,"channel":"C123","ts":"1700000001.000200","message":{"text":"hi"}}'


async def test_slack_chat_post_message_replies_in_the_thread_of_the_conversation() -> None:
    with Receiver(response_body=POSTED) as receiver:
        result = await send(slack, EndpointTarget(f"{base_of(receiver)}/api", SECRET, BOT),
                            message(conversation_key="C123:1700000000.000100"))
    assert result.ok and result.status_code == 200
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/api/chat.postMessage")
    assert got.headers["authorization"] == "Bearer xoxb-1-2-abc"
    assert got.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(got.body) == {"channel": "C123", "text": REPLY["text"], "thread_ts": "1700000000.000100"}


async def test_slack_chat_post_message_request_matches_slack_sdk() -> None:
    from slack_sdk import WebClient

    with Receiver(response_body=POSTED) as receiver:
        await send(slack, EndpointTarget(f"{base_of(receiver)}/api/", SECRET, BOT),
                   message(conversation_key="C123:1700000000.000100"))
        client = WebClient(token=BOT["bot_token"], base_url=f"{base_of(receiver)}/api/")
        await asyncio.to_thread(client.chat_postMessage, channel="C123", text=REPLY["text"],
                                thread_ts="1700000000.000100")
    ours, theirs = receiver.requests
    assert (ours.method, ours.path) == (theirs.method, theirs.path)
    assert ours.headers["authorization"] == theirs.headers["authorization"]
    assert json.loads(ours.body) == json.loads(theirs.body)


@pytest.mark.parametrize("key,expected", [
    (None, {"channel": "C999"}),
    ("C123:1700000000.000100", {"channel": "C999"}),  # another channel's thread: not ours to reply in
    ("C999:1700000000.000100", {"channel": "C999", "thread_ts": "1700000000.000100"}),
])
async def test_slack_configured_channel(key: str | None, expected: dict) -> None:
    with Receiver(response_body=POSTED) as receiver:
        result = await send(slack, EndpointTarget(f"{base_of(receiver)}/api", SECRET, {**BOT, "channel": "C999"}),
                            message(conversation_key=key))
    assert result.ok
    assert json.loads(receiver.requests[0].body) == {**expected, "text": REPLY["text"]}


async def test_slack_channel_without_thread() -> None:
    with Receiver(response_body=POSTED) as receiver:
        await send(slack, EndpointTarget(f"{base_of(receiver)}/api", SECRET, BOT), message(conversation_key="C42"))
    assert json.loads(receiver.requests[0].body) == {"channel": "C42", "text": REPLY["text"]}


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth", "is_archived"])
async def test_slack_api_errors_in_a_200_are_final(error: str) -> None:
    body = json.dumps({"ok": False, "error": error}).encode()
    with Receiver(response_body=body) as receiver:
        result = await send(slack, EndpointTarget(f"{base_of(receiver)}/api", SECRET, BOT),
                            message(conversation_key="C123"))
    assert not result.ok and not result.retryable and result.status_code == 200
    assert error in result.error and result.retry_after_s is None
    assert result.response_excerpt == body.decode()


@pytest.mark.parametrize("status", [200, 429])
async def test_slack_ratelimited_is_retried_after_retry_after(status: int) -> None:
    with Receiver(status=status, headers={"Retry-After": "3"},
                  response_body=b'{"ok":false,"error":"ratelimited"}') as receiver:
        result = await send(slack, EndpointTarget(f"{base_of(receiver)}/api", SECRET, BOT),
                            message(conversation_key="C123"))
    assert not result.ok and result.retryable and result.retry_after_s == 3.0
    assert "ratelimited" in result.error and result.status_code == status


async def test_slack_200_without_an_ok_field_is_final() -> None:
    with Receiver(response_body=b"<html>proxy</html>") as receiver:
        result = await send(slack, EndpointTarget(f"{base_of(receiver)}/api", SECRET, BOT),
                            message(conversation_key="C123"))
    assert not result.ok and not result.retryable


async def test_slack_without_a_channel_fails_without_a_request() -> None:
    with Receiver(response_body=POSTED) as receiver:
        result = await send(slack, EndpointTarget(f"{base_of(receiver)}/api", SECRET, BOT), message())
    assert not result.ok and not result.retryable and "channel" in result.error
    assert receiver.requests == []


# --- intercom ------------------------------------------------------------------

INTERCOM = {"access_token": "dG9rOmFiYw==", "admin_id": "814860"}
CONVERSATION = b'{"type":"conversation","id":"215468","state":"open"}'


async def test_intercom_replies_to_the_conversation_as_an_admin() -> None:
    with Receiver(response_body=CONVERSATION) as receiver:
        result = await send(intercom, EndpointTarget(base_of(receiver), SECRET, INTERCOM),
                            message(conversation_key="215468"))
    assert result.ok and result.status_code == 200
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/conversations/215468/reply")
    assert got.headers["authorization"] == "Bearer dG9rOmFiYw=="
    assert got.headers["accept"] == "application/json"
    assert got.headers["intercom-version"] == "2.11"
    assert json.loads(got.body) == {"message_type": "comment", "type": "admin", "admin_id": "814860",
                                    "body": REPLY["text"]}


async def test_intercom_configured_conversation_and_note() -> None:
    config = {**INTERCOM, "conversation_id": "999", "message_type": "note"}
    with Receiver(response_body=CONVERSATION) as receiver:
        result = await send(intercom, EndpointTarget(base_of(receiver) + "/", SECRET, config),
                            message(conversation_key="215468"))
    assert result.ok
    [got] = receiver.requests
    assert got.path == "/conversations/999/reply"
    assert json.loads(got.body)["message_type"] == "note"


async def test_intercom_conversation_ids_are_escaped_in_the_path() -> None:
    with Receiver(response_body=CONVERSATION) as receiver:
        await send(intercom, EndpointTarget(base_of(receiver), SECRET, INTERCOM), message(conversation_key="1/../x"))
    assert receiver.requests[0].path == "/conversations/1%2F..%2Fx/reply"


async def test_intercom_without_a_conversation_fails_without_a_request() -> None:
    with Receiver(response_body=CONVERSATION) as receiver:
        result = await send(intercom, EndpointTarget(base_of(receiver), SECRET, INTERCOM), message())
    assert not result.ok and not result.retryable and "conversation" in result.error
    assert receiver.requests == []


async def test_intercom_not_found_is_final_with_intercoms_error() -> None:
    body = (b'{"type":"error.list","request_id":"req_1",'
            b'"errors":[{"code":"not_found","message":"Resource Not Found"}]}')
    with Receiver(status=404, response_body=body) as receiver:
        result = await send(intercom, EndpointTarget(base_of(receiver), SECRET, INTERCOM),
                            message(conversation_key="1"))
    assert not result.ok and not result.retryable
    assert result.error == "Intercom answered 404: not_found: Resource Not Found"


async def test_intercom_rate_limit_waits_for_the_window_to_reopen() -> None:
    reset = str(int(time.time()) + 20)
    body = b'{"type":"error.list","errors":[{"code":"rate_limit_exceeded","message":"Exceeded rate limit"}]}'
    with Receiver(status=429, headers={"X-RateLimit-Reset": reset}, response_body=body) as receiver:
        result = await send(intercom, EndpointTarget(base_of(receiver), SECRET, INTERCOM),
                            message(conversation_key="1"))
    assert not result.ok and result.retryable and 17 <= result.retry_after_s <= 20


async def test_intercom_outage_is_retried() -> None:
    with Receiver(status=502) as receiver:
        result = await send(intercom, EndpointTarget(base_of(receiver), SECRET, INTERCOM),
                            message(conversation_key="1"))
    assert not result.ok and result.retryable and result.retry_after_s is None


# --- twilio ------------------------------------------------------------------------

TWILIO = {"account_sid": ACCOUNT_SID, "auth_token": "s3cr3t-token", "from": "+15550001111"}
CREATED = json.dumps({"sid": "SM" + "a" * 32, "status": "queued", "to": "+15557654321"}).encode()
INBOUND_KEY = "+15557654321|+15550001111"  # <From>|<To> of the inbound SMS


async def test_twilio_answers_the_sender_of_the_conversation() -> None:
    with Receiver(status=201, response_body=CREATED) as receiver:
        result = await send(twilio, EndpointTarget(base_of(receiver), SECRET, TWILIO),
                            message(conversation_key=INBOUND_KEY))
    assert result.ok and result.status_code == 201
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    assert got.headers["authorization"] == basic_auth(ACCOUNT_SID, "s3cr3t-token")
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(got.body.decode()) == {"To": ["+15557654321"], "From": ["+15550001111"], "Body": [REPLY["text"]]}


async def test_twilio_request_matches_the_twilio_sdk() -> None:
    from twilio.http import HttpClient
    from twilio.http.response import Response
    from twilio.rest import Client

    class Recorder(HttpClient):
        def __init__(self) -> None:
            super().__init__(logger=None, is_async=False)
            self.requests: list[dict] = []

        def request(self, method, uri, params=None, data=None, headers=None, auth=None, timeout=None,
                    allow_redirects=False):
            self.requests.append({"method": method, "uri": uri, "data": data, "auth": auth})
            return Response(201, CREATED.decode())

    recorder = Recorder()
    Client(ACCOUNT_SID, TWILIO["auth_token"], http_client=recorder).messages.create(
        to="+15557654321", from_=TWILIO["from"], body=REPLY["text"])
    [sdk] = recorder.requests
    with Receiver(status=201, response_body=CREATED) as receiver:
        await send(twilio, EndpointTarget(base_of(receiver), SECRET, TWILIO), message(conversation_key=INBOUND_KEY))
    [ours] = receiver.requests
    assert ours.method == sdk["method"]
    assert ours.path == urlsplit(sdk["uri"]).path
    assert ours.headers["authorization"] == basic_auth(*sdk["auth"])
    assert {k: v[0] for k, v in parse_qs(ours.body.decode()).items()} == {k: str(v) for k, v in sdk["data"].items()}


async def test_twilio_configured_recipient_and_whatsapp_prefix() -> None:
    config = {**TWILIO, "from": "whatsapp:+15550001111", "to": "+447700900123"}
    with Receiver(status=201, response_body=CREATED) as receiver:
        result = await send(twilio, EndpointTarget(base_of(receiver), SECRET, config), message(conversation_key="x|y"))
    assert result.ok
    form = parse_qs(receiver.requests[0].body.decode())
    assert form["To"] == ["whatsapp:+447700900123"] and form["From"] == ["whatsapp:+15550001111"]


async def test_twilio_body_is_cut_to_twilios_limit() -> None:
    with Receiver(status=201, response_body=CREATED) as receiver:
        await send(twilio, EndpointTarget(base_of(receiver), SECRET, TWILIO),
                   message({"text": "ü" * 5000}, conversation_key=INBOUND_KEY))
    body = parse_qs(receiver.requests[0].body.decode())["Body"][0]
    assert len(body) == MAX_BODY_CHARS and body.endswith("…")


async def test_twilio_invalid_number_is_final_with_twilios_code() -> None:
    error = {"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.",
             "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}
    with Receiver(status=400, response_body=json.dumps(error).encode()) as receiver:
        result = await send(twilio, EndpointTarget(base_of(receiver), SECRET, TWILIO),
                            message(conversation_key=INBOUND_KEY))
    assert not result.ok and not result.retryable and result.status_code == 400
    assert result.error == "Twilio answered 400: 21211 The 'To' number +1555 is not a valid phone number."


@pytest.mark.parametrize("status,retry_after", [(500, None), (429, 5.0)])
async def test_twilio_outages_and_rate_limits_are_retried(status: int, retry_after: float | None) -> None:
    headers = {"Retry-After": "5"} if retry_after else {}
    body = b'{"code":20429,"message":"Too Many Requests","status":429}' if status == 429 else b"{}"
    with Receiver(status=status, headers=headers, response_body=body) as receiver:
        result = await send(twilio, EndpointTarget(base_of(receiver), SECRET, TWILIO),
                            message(conversation_key=INBOUND_KEY))
    assert not result.ok and result.retryable and result.retry_after_s == retry_after


async def test_twilio_without_a_recipient_fails_without_a_request() -> None:
    with Receiver(status=201, response_body=CREATED) as receiver:
        result = await send(twilio, EndpointTarget(base_of(receiver), SECRET, TWILIO), message())
    assert not result.ok and not result.retryable and "recipient" in result.error
    assert receiver.requests == []


# --- all three -------------------------------------------------------------------

CASES = [(slack, {}), (slack, BOT), (intercom, INTERCOM), (twilio, TWILIO)]


@pytest.mark.parametrize("destination,config", CASES)
async def test_private_addresses_are_refused_without_a_request(destination, config) -> None:
    with Receiver() as receiver:
        result = await send(destination, EndpointTarget(receiver.url, SECRET, config),
                            message(conversation_key="C1|+1"), allow_private=False)
    assert not result.ok and not result.retryable and "private" in result.error
    assert receiver.requests == []


@pytest.mark.parametrize("destination,config", CASES)
async def test_a_refused_connection_is_retried(destination, config) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once it is closed
    result = await send(destination, EndpointTarget(f"http://127.0.0.1:{port}/x", SECRET, config),
                        message(conversation_key="C1|+1"))
    assert not result.ok and result.retryable and "cannot connect" in result.error


async def test_a_slow_provider_is_cut_off_at_the_deadline() -> None:
    async def never_answer(reader, writer):
        await reader.read(65536)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    async with outbound_client() as http:
        result = await slack.send(message(), EndpointTarget(f"http://127.0.0.1:{port}/hook", SECRET),
                                  DestinationContext(http=http, timeout_s=0.5, allow_private_networks=True))
    server.close()
    assert time.monotonic() - started < 1.5
    assert result.error is not None
    assert not result.ok and result.retryable and "timed out" in result.error


@pytest.mark.parametrize("destination,url,config,complaint", [
    (slack, "ftp://hooks.slack.com/x", {}, "http"),
    (slack, "https://hooks.slack.com/services/T/B/X", {"mode": "rtm"}, "config.mode"),
    (slack, "https://hooks.slack.com/services/T/B/X", {"bot_token": "xoxb-1"}, "unknown config keys"),
    (slack, "https://hooks.slack.com/services/T/B/X", ["mode"], "must be an object"),
    (slack, "https://slack.com/api", {"mode": "chat_post_message"}, "bot_token is required"),
    (slack, "https://slack.com/api", {**BOT, "bot_token": ""}, "bot_token must be a non-empty string"),
    (slack, "https://slack.com/api", {**BOT, "bot_token": 42}, "bot_token must be a non-empty string"),
    (slack, "https://slack.com/api", {**BOT, "bot_token": "xoxb 1"}, "without spaces"),
    (slack, "https://slack.com/api", {**BOT, "channel": 5}, "channel must be a non-empty string"),
    (slack, "https://slack.com/api", {**BOT, "thread": "1"}, "unknown config keys"),
    (intercom, "https://api.intercom.io", {"admin_id": "1"}, "access_token is required"),
    (intercom, "https://api.intercom.io", {"access_token": "t"}, "admin_id is required"),
    (intercom, "https://api.intercom.io", {**INTERCOM, "admin_id": 814860}, "admin_id must be a string"),
    (intercom, "https://api.intercom.io", {**INTERCOM, "conversation_id": 7}, "conversation_id"),
    (intercom, "https://api.intercom.io", {**INTERCOM, "message_type": "quick_reply"}, "message_type"),
    (intercom, "https://api.intercom.io", {**INTERCOM, "token": "t"}, "unknown config keys"),
    (intercom, "https://user:pw@api.intercom.io", INTERCOM, "credentials"),
    (twilio, "https://api.twilio.com", {**TWILIO, "account_sid": "AC123"}, "account_sid"),
    (twilio, "https://api.twilio.com", {k: v for k, v in TWILIO.items() if k != "auth_token"}, "auth_token"),
    (twilio, "https://api.twilio.com", {**TWILIO, "auth_token": None}, "auth_token is required"),
    (twilio, "https://api.twilio.com", {k: v for k, v in TWILIO.items() if k != "from"}, "from is required"),
    (twilio, "https://api.twilio.com", {**TWILIO, "to": ["+1"]}, "config.to"),
    (twilio, "https://api.twilio.com", {**TWILIO, "body": "hi"}, "unknown config keys"),
    (twilio, "not a url", TWILIO, "http"),
])
def test_invalid_endpoints_are_rejected_at_creation(destination, url: str, config, complaint: str) -> None:
    with pytest.raises(InvalidEndpointConfig, match=complaint):
        destination.validate(EndpointTarget(url, SECRET, config))


@pytest.mark.parametrize("destination,url,config", [
    (slack, "https://hooks.slack.com/services/T/B/X", {}),
    (slack, "https://hooks.slack.com/services/T/B/X", {"mode": "incoming_webhook"}),
    (slack, "https://slack.com/api", {**BOT, "channel": "C123"}),
    (intercom, "https://api.intercom.io", {**INTERCOM, "conversation_id": "1", "message_type": "note"}),
    (twilio, "https://api.twilio.com", {**TWILIO, "to": "+15557654321"}),
])
def test_valid_endpoints_are_accepted(destination, url: str, config) -> None:
    destination.validate(EndpointTarget(url, SECRET, config))


async def test_a_config_that_went_bad_fails_the_send_without_a_request() -> None:
    with Receiver() as receiver:
        result = await send(intercom, EndpointTarget(base_of(receiver), SECRET, {}), message(conversation_key="1"))
    assert not result.ok and not result.retryable and "access_token" in result.error
    assert receiver.requests == []
