"""The AI reply loop, end to end: the platform answers a customer once and never its own messages.

A stand-in for Slack's Web API does what Slack does: every ``chat.postMessage``
comes back to the app's event subscription as a ``message`` event posted by the
app's bot (``bot_id``), signed with the app's signing secret by Slack's own SDK.
Before the loop guard, that echo was answered again, for ever. Intercom's
admin replies and Twilio's status callbacks (From: the business's own number)
were answered too.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from tests.e2e.slice import wait_for, wait_routed
from tests.e2e.test_auth import tenant_with_key
from tests.e2e.test_sources import make_source, post, sender_headers
from tests.plugins.test_sources import sample
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # tests.plugins.test_sources' slack case


class EchoingSlack:
    """Slack's Web API as the app sees it: chat.postMessage posts, and the post comes back as an event."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.echoes: list[str] = []  # the event ids the edge gave the echoes
        self.ingest_url = ""
        self._ts = itertools.count(1)
        slack = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                sent = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                ts = f"1700000000.{next(slack._ts):06d}"
                slack.posts.append(sent)
                answer = json.dumps({"ok": True, "channel": sent["channel"], "ts": ts}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                threading.Thread(target=slack.echo, args=(sent, ts), daemon=True).start()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def echo(self, sent: dict, ts: str) -> None:
        """The app's own post, delivered to its event subscription, as Slack signs it."""
        event = {"type": "message", "channel": sent["channel"], "text": sent["text"], "ts": ts,
                 "bot_id": "B0SWITCHB0", "app_id": "A123ABC456", "user": "U222222222"}
        if sent.get("thread_ts"):
            event["thread_ts"] = sent["thread_ts"]
        body = json.dumps({"type": "event_callback", "team_id": "T123ABC456", "api_app_id": "A123ABC456",
                           "event": event, "event_id": f"Ev{ts.replace('.', '')}", "event_time": int(time.time()),
                           "authorizations": [{"team_id": "T123ABC456", "user_id": "U222222222", "is_bot": True}]}
                          ).encode()
        timestamp = str(int(time.time()))
        signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body)
        assert signature is not None  # None only without a timestamp or body
        headers = {"content-type": "application/json", "x-slack-request-timestamp": timestamp,
                   "x-slack-signature": signature}
        reply = httpx.post(self.ingest_url, content=body, headers=headers, timeout=30)
        assert reply.status_code == 202, reply.text
        self.echoes.append(reply.json()["event_id"])

    def __enter__(self) -> EchoingSlack:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_slack_customer_is_answered_once_and_the_apps_own_reply_is_not_answered(platform: Platform) -> None:
    with EchoingSlack() as slack, platform.client() as api:
        source = make_source(api, "slack")
        slack.ingest_url = source["ingest_url"]
        bot = api.post("/v1/endpoints", json={"url": slack.url, "destination": "slack",
                                              "config": {"mode": "chat_post_message", "bot_token": "xoxb-test"}})
        assert bot.status_code == 201, bot.text
        # The documented route shape: a source and action reply, no filter on who wrote the message.
        route = api.post("/v1/routes", json={"name": "answer Slack", "source_id": source["id"], "action": "reply",
                                             "endpoint_ids": [bot.json()["id"]]})
        assert route.status_code == 201, route.text

        body = sample("slack")
        accepted = post(platform, source, body, sender_headers(source, body, source["ingest_url"]))
        assert accepted.status_code == 202, accepted.text
        wait_for(lambda: slack.echoes)  # our reply, back as the bot's message event
        echo = wait_routed(api, slack.echoes[0])
        assert echo["author"] == "bot"
        assert "replies answer customers' messages only" in echo["routing"]["reply"]["skipped"]
        time.sleep(3)  # room for a loop to show itself: before the guard, each echo was answered within ~0.1 s
        assert len(slack.posts) == 1 and len(slack.echoes) == 1
        [posted] = slack.posts
        assert (posted["channel"], posted["thread_ts"]) == ("C123ABC456", "1355517523.000005") and posted["text"]

        first = wait_routed(api, accepted.json()["event_id"])
        assert first["author"] == "customer" and first["routing"]["reply"]["status"] == "sent"
        [kept] = api.get("/v1/replies", params={"status": "sent"}).json()["data"]
        assert (kept["event_id"], kept["text"]) == (first["id"], posted["text"])


def test_intercom_admin_replies_and_twilio_status_callbacks_are_never_answered(platform: Platform) -> None:
    with Receiver(response_body=b"ok") as chat, platform.client() as api:
        hook = api.post("/v1/endpoints", json={"url": chat.url, "destination": "slack"}).json()["id"]
        sources = {kind: make_source(api, kind) for kind in ("intercom", "twilio")}
        for source in sources.values():
            api.post("/v1/routes", json={"source_id": source["id"], "action": "reply",
                                         "endpoint_ids": [hook]}).raise_for_status()
        admin = json.loads(sample("intercom"))
        admin.update(topic="conversation.admin.replied", id="notif_admin_1")
        status = urlencode({"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "SmsStatus": "delivered",
                            "From": "+15017122661", "To": "+15558675310", "AccountSid": "AC" + "X" * 32,
                            "ApiVersion": "2010-04-01"}).encode()
        ids = []
        for kind, body in (("intercom", json.dumps(admin).encode()), ("twilio", status)):
            source = sources[kind]
            reply = post(platform, source, body, sender_headers(source, body, source["ingest_url"]))
            assert reply.status_code in (200, 202), reply.text
            ids.append(reply.headers["switchboard-event-id"])
        routed = [wait_routed(api, event_id) for event_id in ids]
        assert [e["author"] for e in routed] == ["agent", "system"]
        assert all("customers' messages only" in e["routing"]["reply"]["skipped"] for e in routed)
        # Keyed customer first: were anything ever sent, it could only go to the customer.
        assert routed[1]["conversation_key"] == "+15558675310|+15017122661"
        time.sleep(1)
        assert chat.requests == []
        assert api.get("/v1/replies").json()["data"] == []


def test_a_reviewed_reply_is_held_until_approved_and_sent_as_edited(platform: Platform) -> None:
    with Receiver(response_body=b"ok") as chat, platform.client() as api:
        source = make_source(api, "intercom")
        hook = api.post("/v1/endpoints", json={"url": chat.url, "destination": "slack"}).json()["id"]
        route = api.post("/v1/routes", json={"source_id": source["id"], "action": "reply", "review": True,
                                             "endpoint_ids": [hook]})
        assert route.status_code == 201 and route.json()["review"] is True, route.text
        assert api.post("/v1/routes", json={"endpoint_ids": [hook], "review": True}).status_code == 400

        held_ids = []
        for n in range(2):
            message = json.loads(sample("intercom"))
            message.update(id=f"notif_customer_{n}")
            message["data"]["item"]["id"] = f"conv_{n}"
            body = json.dumps(message).encode()
            accepted = post(platform, source, body, sender_headers(source, body, source["ingest_url"]))
            event = wait_routed(api, accepted.json()["event_id"])
            assert event["routing"]["reply"]["status"] == "held"
            held_ids.append(event["routing"]["reply"]["reply_id"])
        held = api.get("/v1/replies", params={"status": "held"}).json()["data"]
        assert {r["id"] for r in held} == set(held_ids) and all(r["text"] for r in held)
        time.sleep(1)
        assert chat.requests == []  # held: nothing sent

        first, second = held_ids
        approved = api.post(f"/v1/replies/{first}/approve", json={"text": "A person wrote this."})
        assert approved.status_code == 200, approved.text
        assert (approved.json()["status"], approved.json()["text"]) == ("approved", "A person wrote this.")
        [sent] = chat.wait_for(lambda r: len(r) >= 1)
        assert json.loads(sent.body)["text"] == "A person wrote this."
        again = api.post(f"/v1/replies/{first}/approve", json={})
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        assert api.post(f"/v1/replies/{second}/reject").json()["status"] == "rejected"
        assert api.post(f"/v1/replies/{second}/approve").status_code == 409
        for bad in ({"text": ""}, {"text": "x" * 4001}, {"txt": "typo"}):
            assert api.post(f"/v1/replies/{second}/approve", json=bad).status_code == 400
        assert api.get("/v1/replies", params={"status": "maybe"}).status_code == 400
        assert api.get(f"/v1/replies/{first}").json()["decided_by"]
        time.sleep(1)
        assert len(chat.requests) == 1  # the rejected one never went
        audit = [e["action"] for e in api.get("/v1/audit").json()["data"]]
        assert "reply.approve" in audit and "reply.reject" in audit

        _, other_key = tenant_with_key(platform, "other", "admin")
        with platform.client(other_key) as other:
            assert other.get(f"/v1/replies/{first}").status_code == 404
            assert other.post(f"/v1/replies/{first}/approve").status_code == 404
            assert other.get("/v1/replies").json()["data"] == []
