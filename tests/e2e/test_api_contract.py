"""The HTTP API keeps its published contract: every malformed request is a 4xx naming the field, and
answers match /openapi.json. The defects the review's fuzzing found, one test each (issue 13, item 8)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest
from jsonschema import Draft202012Validator

from switchboard.cli.embedded import EmbeddedNats
from tests.e2e.slice import create_slice, send, wait_for
from tests.platform_runner import Platform, base_env
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Platform]:
    """One platform for this module's tests (they only read, or create what they use)."""
    import secrets

    import psycopg
    from psycopg.conninfo import make_conninfo

    root = tmp_path_factory.mktemp("contract")
    name = f"sbtest_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    nats = EmbeddedNats(root / "nats")
    nats.start()
    platform = Platform(base_env(root / "state", SWITCHBOARD_NATS_URL=nats.url,
                                 SWITCHBOARD_DATABASE_URL=make_conninfo(postgres_server, dbname=name),
                                 # The fuzzer sends as fast as it can; the key's rate limit is tested elsewhere.
                                 SWITCHBOARD_KEY_RATE="100000")).start()
    try:
        yield platform
    finally:
        code = platform.stop()
        nats.stop()
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        assert code == 0, f"switchboard up exited {code}:\n{platform.log_tail()}"


@pytest.fixture(scope="module")
def api(running: Platform) -> Iterator[httpx.Client]:
    with running.client() as client:
        yield client


def refused(reply: httpx.Response, field: str) -> str:
    """The 400's message, once it is a JSON error naming ``field``."""
    assert reply.status_code == 400, (reply.status_code, reply.text)
    error = reply.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(f"{field}:"), error
    return error["message"]


def conforms(api: httpx.Client, reply: httpx.Response) -> None:
    """The answer matches the schema the document the edge serves gives for its operation and status."""
    document = api.get("/openapi.json").json()
    path, method = reply.request.url.path, reply.request.method.lower()
    [operation] = [ops[method] for template, ops in document["paths"].items() if method in ops and re.fullmatch(
        re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(template)), path)]
    schema = operation["responses"][str(reply.status_code)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, **document})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(reply.json())]
    assert not errors, errors


def test_grace_seconds_beyond_any_integer_type_is_a_400_naming_it(api: httpx.Client) -> None:
    source = api.post("/v1/sources", json={"name": "rotating"}).json()
    endpoint = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}).json()
    for path in (f"/v1/sources/{source['id']}/rotate-secret", f"/v1/endpoints/{endpoint['id']}/rotate-secret"):
        for grace in (307077351757998, 2**31, 2**70, -1, 30 * 86400 + 1):
            refused(api.post(path, json={"grace_seconds": grace}), "grace_seconds")
        assert api.post(path, json={"grace_seconds": 30 * 86400}).status_code == 200


def test_unbounded_and_negative_query_integers_are_400s(api: httpx.Client) -> None:
    refused(api.get("/v1/deliveries", params={"limit": 2**70}), "limit")
    refused(api.get("/v1/deliveries", params={"limit": -5}), "limit")
    refused(api.get("/v1/deliveries", params={"limit": "ten"}), "limit")
    refused(api.get("/v1/audit", params={"before_id": 2**70}), "before_id")
    refused(api.get("/v1/audit", params={"limit": 0}), "limit")
    refused(api.get("/v1/analytics/breakdown", params={"by": "endpoint", "limit": -5}), "limit")
    refused(api.get("/v1/deliveries", params={"status": "lost"}), "status")
    refused(api.get("/v1/deliveries", params={"since": "yesterday"}), "since")
    refused(api.get("/v1/deliveries", params={"colour": "red"}), "colour")
    assert api.get("/v1/deliveries", params={"limit": 1000}).status_code == 200
    assert api.get("/v1/audit", params={"limit": 5, "before_id": 2**63 - 1}).status_code == 200


def test_unknown_body_fields_are_refused_by_name(api: httpx.Client) -> None:
    refused(api.post("/v1/sources", json={"name": "s", "colour": "red"}), "colour")
    refused(api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/", "retries": 3}), "retries")
    refused(api.post("/v1/events", json={"type": "a.b", "payload": {}, "extra": 1}), "extra")
    refused(api.post("/v1/routes", json={"endpoint_ids": [], "when": "always"}), "when")
    refused(api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/", "options": {"retry": {"tries": 3}}}),
            "options.retry.tries")
    # Wrong types, missing and too-short fields name the field too.
    refused(api.post("/v1/sources", json={}), "name")
    refused(api.post("/v1/sources", json={"name": ""}), "name")
    refused(api.post("/v1/sources", json={"name": "s", "rate_limit": {"burst": 2**40}}), "rate_limit.burst")
    refused(api.post("/v1/events", json={"type": 7, "payload": {}}), "type")


def test_template_test_with_ai_labels_that_are_no_object_is_a_400(api: httpx.Client) -> None:
    template = api.post("/v1/templates", json={"name": "t", "source": '{"n": {{ payload.n }}}'})
    assert template.status_code == 201, template.text
    path = f"/v1/templates/{template.json()['id']}/test"
    refused(api.post(path, json={"type": "a", "payload": {"n": 1}, "ai": [[1]]}), "ai")
    rendered = api.post(path, json={"type": "a", "payload": {"n": 1}, "ai": {"category": "billing"}})
    assert rendered.status_code == 200 and rendered.json()["payload"] == {"n": 1}


def test_routes_and_endpoints_answer_as_their_schemas_say(api: httpx.Client) -> None:
    with Receiver() as receiver:
        s = create_slice(api, receiver.url)
    routes = api.get("/v1/routes")
    assert routes.status_code == 200 and routes.json()["data"][0]["filters"] is None
    conforms(api, routes)
    endpoint = api.get(f"/v1/endpoints/{s.endpoint_id}")
    assert endpoint.json()["enabled"] is True
    conforms(api, endpoint)
    disabled = api.post(f"/v1/endpoints/{s.endpoint_id}/disable", json={"reason": "maintenance"})
    assert disabled.json()["enabled"] is False
    listed = api.get("/v1/endpoints").json()["data"]
    assert [e["enabled"] for e in listed if e["id"] == s.endpoint_id] == [False]


def test_over_long_path_ids_are_400s_not_lookups(api: httpx.Client) -> None:
    refused(api.get(f"/v1/endpoints/{'e' * 65}"), "endpoint_id")
    assert api.get(f"/v1/endpoints/ep_{'0' * 32}").status_code == 404
    # A delivery's id is two ids (three for a replay's): longer, and still looked up.
    replayed = f"evt_{'0' * 32}:ep_{'0' * 32}:rpy_{'0' * 32}"
    assert api.get(f"/v1/deliveries/{replayed}").status_code == 404
    assert api.post(f"/v1/deliveries/{replayed}/retry").status_code == 404
    refused(api.get(f"/v1/deliveries/{'d' * 201}"), "delivery_id")


def test_sources_are_changed_enabled_and_deleted_with_their_webhooks_following(running: Platform,
                                                                               api: httpx.Client) -> None:
    source = api.post("/v1/sources", json={"name": "orders"}).json()
    path = f"/v1/sources/{source['id']}"
    changed = api.patch(path, json={"name": "orders-eu", "rate_limit": {"per_second": 5, "burst": 10},
                                    "allowed_ips": ["203.0.113.0/24"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "orders-eu" and changed.json()["rate_limit"] == {"per_second": 5, "burst": 10}
    conforms(api, changed)
    # Only 203.0.113.0/24 may send now: the test's loopback address is refused at once.
    assert send_status(running, source) == 403
    assert api.patch(path, json={"allowed_ips": [], "rate_limit": None}).json()["rate_limit"] is None
    assert send_status(running, source) == 202
    bad_config = api.patch(path, json={"config": {"algorithm": "md5"}})  # the plugin's own check
    assert bad_config.status_code == 400 and "algorithm" in bad_config.json()["error"]["message"]
    refused(api.patch(path, json={"secret": "x" * 20}), "secret")  # rotate-secret changes it
    assert api.post(f"{path}/disable").json()["disabled_at"]
    assert send_status(running, source) == 410
    assert api.post(f"{path}/enable").json()["disabled_at"] is None
    assert send_status(running, source) == 202
    assert api.delete(path).json() == {"id": source["id"], "deleted": True}
    assert send_status(running, source) == 404
    assert api.get(path).status_code == 404
    actions = {e["action"] for e in api.get("/v1/audit").json()["data"] if e["resource"] == source["id"]}
    assert {"source.update", "source.disable", "source.enable", "source.delete"} <= actions


def send_status(platform: Platform, source: dict) -> int:
    from tests.e2e.slice import signed

    body, headers = signed(source["secret"], {"type": "order.created"})
    return httpx.post(f"{platform.edge_url}/in/{source['id']}", content=body, headers=headers).status_code


def test_an_unresolvable_host_is_said_plainly_and_apart_from_a_refused_address(api: httpx.Client) -> None:
    unresolvable = refused(api.post("/v1/endpoints", json={"url": "https://no-such-host.invalid/hook"}), "url")
    assert "cannot resolve host no-such-host.invalid" in unresolvable
    private = api.post("/v1/endpoints", json={"url": "http://10.1.2.3/hook"})
    assert private.status_code == 400 and "private or reserved" in private.json()["error"]["message"]
    assert "cannot resolve" not in private.json()["error"]["message"]


def test_ai_usage_counts_are_numbers_with_zeros_and_latencies_are_rounded(running: Platform,
                                                                          api: httpx.Client) -> None:
    classified = api.post("/v1/ai/classify", json={"type": "ticket.created", "payload": {"text": "refund please"}})
    assert classified.status_code == 200, classified.text
    [row] = [r for r in api.get("/v1/ai/usage").json()["data"] if r["provider"] == "local"]
    assert row["requests"] >= 1 and isinstance(row["requests"], int)
    for name in ("input_tokens", "output_tokens", "cached", "failures"):
        assert isinstance(row[name], int), (name, row)
    assert isinstance(row["cost_usd"], (int, float))
    with Receiver() as receiver:
        s = create_slice(api, receiver.url)
        event_id = send(running, s.source_id, s.source_secret, {"type": "order.created"})
        # Other tests' routes on this platform deliver it too: this slice's endpoint is the one that succeeds.
        [delivery] = wait_for(lambda: [d for d in api.get(f"/v1/events/{event_id}").json().get("deliveries", [])
                                       if d["endpoint_id"] == s.endpoint_id and d["status"] == "succeeded"],
                              timeout=60)
    latency = delivery["attempts"][0]["latency_ms"]
    assert latency == round(latency, 1)
    conforms(api, api.get("/v1/ai/usage"))


# Every schema-invalid request must be refused (negative_data_rejection) and no answer may be a 5xx or
# stray from the document. positive_data_acceptance is left out: the domain has rules a schema does not
# carry (until after since, a deliver route needs an endpoint, a URL must resolve, plugin configs).
FUZZ_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
               "response_schema_conformance", "negative_data_rejection")


def fuzz(platform: Platform, max_examples: int, report: Path) -> subprocess.CompletedProcess:
    """schemathesis over every operation of the running edge's /openapi.json, with the admin key."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{platform.edge_url}/openapi.json",
         "--header", f"Authorization: Bearer {platform.admin_key}", "--checks", ",".join(FUZZ_CHECKS),
         "--phases", "examples,coverage,fuzzing", "--max-examples", str(max_examples), "--seed", "1",
         # NUL characters are refused everywhere (PostgreSQL cannot store them), as the document says.
         "--generation-allow-x00", "false",
         "--workers", "1", "--request-timeout", "20", "--no-color", "--continue-on-failure",
         "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=900, cwd=report.parent,  # its .schemathesis/ state goes there
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks",
             "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_schema(running: Platform, tmp_path: Path) -> None:
    result = fuzz(running, int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "10")), tmp_path / "junit.xml")
    errors = "\n".join(line for line in running.output if "Traceback" in line or " ERROR " in line
                       or line.startswith(("  File", "Traceback", " ")))
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:] + errors[-8000:]


def test_nul_in_a_path_or_query_value_is_a_400_not_a_database_error(api: httpx.Client) -> None:
    # JSON bodies refused NUL already; PostgreSQL's text cannot hold it, so a query reaching it was a 500.
    refused(api.get("/v1/replies", params={"conversation_key": "a\x00b"}), "conversation_key")
    refused(api.get("/v1/events", params={"source_id": "\x00"}), "source_id")
    refused(api.get("/v1/endpoints/ep_%00"), "endpoint_id")


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_beyond_the_calendar_in_utc_is_a_400_not_an_overflow(api: httpx.Client, when: str) -> None:
    for path in ("/v1/events", "/v1/deliveries", "/v1/analytics/overview"):
        refused(api.get(path, params={"since": when}), "since")
    reply = api.post("/v1/replays", json={"since": when})
    assert reply.status_code == 400 and "since" in reply.json()["error"]["message"], reply.text
