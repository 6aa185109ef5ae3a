"""``switchboard listen`` and ``GET /v1/listen``: a running platform's events forwarded to a local URL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, UTC

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.slice import create_slice, send
from tests.e2e.test_auth import tenant_with_key
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

LOCAL_SECRET = "whsec_" + "bG9jYWwtc2VjcmV0LWZvci10aGUtbGlzdGVuLXRlc3Q="


def platform_key(platform: Platform) -> str:
    return platform.admin_key or (platform.state_dir / "admin.key").read_text().strip()


def frames(platform: Platform, key: str, count: int, timeout: float = 15, **params: str | int) -> list[dict]:
    """The first ``count`` events of a /v1/listen stream."""
    events: list[dict] = []
    name = ""
    with httpx.stream("GET", f"{platform.edge_url}/v1/listen", params=params, timeout=timeout,
                      headers={"authorization": f"Bearer {key}"}) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "event":
                events.append(json.loads(line[6:]))
                if len(events) == count:
                    return events
    raise AssertionError(f"the stream ended after {events}")


def start_listen(platform: Platform, key: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "switchboard.cli", "listen", "--key", key, *args],
                            env=platform.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_listening(listener: subprocess.Popen[str], timeout: float = 20) -> str:
    """stderr up to the "listening on" line (the subscription is made before it is printed)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert listener.stderr is not None
        line = listener.stderr.readline()
        seen.append(line)
        if line.startswith("listening on"):
            return "".join(seen)
        if not line and listener.poll() is not None:
            break
    raise AssertionError(f"listen did not start: {''.join(seen)}")


def stop(listener: subprocess.Popen[str]) -> None:
    listener.terminate()
    listener.communicate(timeout=10)


def test_listen_forwards_a_sources_events_re_signed_and_replays_the_last_ones(platform: Platform) -> None:
    with Receiver() as receiver, Receiver() as laptop, platform.client() as api:
        s = create_slice(api, receiver.url)
        earlier = send(platform, s.source_id, s.source_secret, {"type": "order.created", "n": 0})
        wait_for_delivery(api, earlier)
        key = platform_key(platform)
        listener = start_listen(platform, key, "--source", s.source_id, "--forward-to", laptop.url,
                                "--secret", LOCAL_SECRET, "--replay", "1")
        try:
            wait_listening(listener)
            later = [send(platform, s.source_id, s.source_secret, {"type": "order.paid", "n": n}) for n in (1, 2)]
            got = laptop.wait_for(lambda r: len(r) == 3)
            # The stored one first (the replay), then the live ones in the order they came.
            assert [r.headers["webhook-id"] for r in got] == [earlier, *later]
            assert [json.loads(r.body)["n"] for r in got] == [0, 1, 2]
            for request in got:  # re-signed with the local secret, verifiable by the Standard Webhooks library
                Webhook(LOCAL_SECRET).verify(request.body, dict(request.headers))
                assert request.headers["x-switchboard-event-type"] in ("order.created", "order.paid")
            assert listener.stdin is not None and listener.stdout is not None
            listener.stdin.write("r 2\n")
            listener.stdin.flush()
            again = laptop.wait_for(lambda r: len(r) == 5)
            assert [r.headers["webhook-id"] for r in again[3:]] == later
            # One line per event, printed once the local answer is in.
            lines = [listener.stdout.readline().rstrip("\n") for _ in range(5)]
        finally:
            stop(listener)
        out = "\n".join(lines)
        assert "order.created" in lines[0] and earlier in lines[0] and "(replayed)" in lines[0]
        assert all("-> 200" in line and line.endswith(" ms") for line in lines), out
        # The platform's own delivery went on as before: listening takes nothing from the routes.
        receiver.wait_for(lambda r: len(r) == 3)


def test_listen_follows_a_route_only_its_matched_events(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        paid = api.post("/v1/routes", json={"name": "paid", "event_types": ["order.paid"],
                                            "endpoint_ids": [s.endpoint_id]}).json()["id"]
        first = send(platform, s.source_id, s.source_secret, {"type": "order.paid", "n": 1})
        send(platform, s.source_id, s.source_secret, {"type": "order.created", "n": 2})
        wait_for_delivery(api, first)
        time.sleep(0.5)  # both routed and stored
        replayed = frames(platform, platform_key(platform), 1, route_id=paid, replay=5)
        assert [(e["id"], e["replayed"]) for e in replayed] == [(first, True)]

        with Receiver() as laptop:
            listener = start_listen(platform, platform_key(platform), "--route", paid, "--forward-to", laptop.url,
                                    "--no-commands")
            try:
                wait_listening(listener)
                send(platform, s.source_id, s.source_secret, {"type": "order.created", "n": 3})
                live = send(platform, s.source_id, s.source_secret, {"type": "order.paid", "n": 4})
                got = laptop.wait_for(lambda r: len(r) >= 1)
                time.sleep(1)
                assert [r.headers["webhook-id"] for r in laptop.requests] == [live] == [got[0].headers["webhook-id"]]
            finally:
                stop(listener)


def test_a_reconnecting_listener_gets_what_came_since(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        old = send(platform, s.source_id, s.source_secret, {"type": "a", "n": 0})
        wait_for_delivery(api, old)
        time.sleep(0.05)
        cut = datetime.now(UTC).isoformat()
        new = [send(platform, s.source_id, s.source_secret, {"type": "b", "n": n}) for n in (1, 2)]
        for event_id in new:
            wait_for_delivery(api, event_id)
        got = frames(platform, platform_key(platform), 2, source_id=s.source_id, replay=100, since=cut)
        assert [e["id"] for e in got] == new
        assert [json.loads(e["body"])["n"] for e in got] == [1, 2]


def test_listen_refuses_what_it_cannot_serve_with_json_errors(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
    _, other_key = tenant_with_key(platform, "other", "read")
    url = f"{platform.edge_url}/v1/listen"
    admin = {"authorization": f"Bearer {platform_key(platform)}"}

    def refused(params: dict, headers: dict, status: int, code: str) -> None:
        reply = httpx.get(url, params=params, headers=headers, timeout=10)
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["code"] == code

    refused({"source_id": s.source_id}, {}, 401, "unauthenticated")
    refused({"source_id": s.source_id}, {"authorization": "Bearer sk_nope"}, 401, "unauthenticated")
    # Another tenant's key: the source is not there for it.
    refused({"source_id": s.source_id}, {"authorization": f"Bearer {other_key}"}, 404, "not_found")
    refused({"source_id": "src_missing"}, admin, 404, "not_found")
    refused({"route_id": "rt_missing"}, admin, 404, "not_found")
    refused({}, admin, 400, "invalid_request")
    refused({"source_id": s.source_id, "route_id": "rt_x"}, admin, 400, "invalid_request")
    refused({"source_id": s.source_id, "replay": "101"}, admin, 400, "invalid_request")
    refused({"source_id": s.source_id, "replay": "lots"}, admin, 400, "invalid_request")
    refused({"source_id": s.source_id, "since": "yesterday"}, admin, 400, "invalid_request")
    refused({"source_id": s.source_id, "colour": "red"}, admin, 400, "invalid_request")
    refused({"source_id": "../etc"}, admin, 400, "invalid_request")

    done = subprocess.run([sys.executable, "-m", "switchboard.cli", "listen", "--key", other_key,
                           "--source", s.source_id, "--once", "--no-commands"],
                          env=platform.env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "404" in done.stderr, done.stderr


def test_listeners_that_leave_free_their_place(platform: Platform) -> None:
    """Each edge process serves at most MAX_LISTENERS at once; more than that many, one after another, each
    leaving at once (before or after its first frame), are all served: none keeps its place."""
    from gateway.listen import MAX_LISTENERS

    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
    headers = {"authorization": f"Bearer {platform_key(platform)}"}
    with httpx.Client(base_url=platform.edge_url, headers=headers, timeout=10) as client:
        for n in range(MAX_LISTENERS + 5):
            with client.stream("GET", "/v1/listen", params={"source_id": s.source_id}) as reply:
                assert reply.status_code == 200, (n, reply.read())
                if n % 2:
                    next(reply.iter_lines())  # read the first frame, then leave
