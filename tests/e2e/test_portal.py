"""The consumer portal end to end: a tenant mints a session for one application, and that customer, in
headless Chromium driven by Playwright, manages its own endpoints at /portal (add, edit, disable, reveal
and rotate the secret, send a test event, browse attempts, retry a failure) and sees nothing else."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.test_auth import tenant_with_key
from tests.e2e.test_dashboard import browser, page  # noqa: F401 (fixtures)
from tests.e2e.test_listen import platform_key
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def session(api: httpx.Client, application_id: str, **extra: object) -> dict:
    reply = api.post("/v1/portal/sessions", json={"application_id": application_id, **extra})
    assert reply.status_code == 201, reply.text
    return reply.json()


class FramingSite:
    """A customer's own site on loopback: one page that frames the portal."""

    def __init__(self, portal_url: str) -> None:
        html = f'<!doctype html><title>app</title><iframe id="portal" src="{portal_url}" width="900" height="600">' \
               f'</iframe>'.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sites() -> Iterator[list[FramingSite]]:
    made: list[FramingSite] = []
    yield made
    for site in made:
        site.close()


def eventually(condition: Callable[[], bool], timeout: float = 20) -> None:
    """Polled from here: the page's policy forbids the string evaluation wait_for_function would use."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the page never got there"
        time.sleep(0.1)


def wait_row(page, selector: str, text: str) -> None:  # noqa: F811 (page is the fixture's value)
    page.locator(selector, has_text=text).first.wait_for()


def test_a_customer_manages_its_endpoints_in_the_portal(platform: Platform, page, sites) -> None:  # noqa: F811
    with platform.client() as api, Receiver() as receiver, Receiver(status=500) as failing:
        other_app = api.post("/v1/endpoints", json={"url": f"{receiver.url}/globex", "application_id": "globex"})
        tenant_wide = api.post("/v1/endpoints", json={"url": f"{receiver.url}/tenant"})
        assert (other_app.status_code, tenant_wide.status_code) == (201, 201), other_app.text
        assert (other_app.json()["application_id"], tenant_wide.json()["application_id"]) == ("globex", None)
        other_app, tenant_wide = other_app.json(), tenant_wide.json()
        # The tenant's catalogue, which the portal offers its customers.
        assert api.post("/v1/event-types", json={"name": "order.created", "description": "An order was placed.",
                                                 "example": {"order": 42}}).status_code == 201
        acme = session(api, "acme")
        assert acme["url"].startswith(f"{platform.edge_url}/portal?frame=")
        assert acme["url"].endswith("#" + acme["token"])

        page.goto(acme["url"])
        page.locator("#endpoints-panel").wait_for()
        assert "acme" in page.text_content("#app-name")
        assert "#" not in page.url  # the token left the address bar
        assert page.locator("#endpoints tr").count() == 0  # neither globex's nor the tenant's own

        # Add an endpoint: it is the application's, a webhook, with the types chosen.
        assert "An order was placed." in page.text_content("#catalogue")
        page.fill("#new-url", receiver.url)
        page.fill("#new-description", "orders")
        page.check('#new-types input[value="order.created"]')
        page.fill("#new-globs", "order.paid, switchboard.test")
        page.click("#add-form button[type=submit]")
        wait_row(page, "#endpoints tr", receiver.url)
        page.locator("#detail").wait_for()
        endpoint_id = page.text_content("#detail-id")
        created = api.get(f"/v1/endpoints/{endpoint_id}").json()
        assert (created["application_id"], created["destination"], created["event_types"]) == (
            "acme", "webhook", ["order.created", "order.paid", "switchboard.test"])

        # Edit it.
        page.fill("#edit-description", "orders, v2")
        page.click("#save")
        page.locator("#saved").wait_for()
        assert api.get(f"/v1/endpoints/{endpoint_id}").json()["description"] == "orders, v2"

        # The signing secret, shown and rotated; a test event arrives signed with it.
        page.click("#reveal")
        eventually(lambda: page.text_content("#secret").startswith("whsec_"))
        first_secret = page.text_content("#secret")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#rotate")
        eventually(lambda: page.text_content("#secret") != first_secret
                   and page.text_content("#secret").startswith("whsec_"))
        new_secret = page.text_content("#secret")
        page.click("#send-test")
        [test] = receiver.wait_for(lambda r: len(r) == 1)
        Webhook(new_secret).verify(test.body, dict(test.headers))
        Webhook(first_secret).verify(test.body, dict(test.headers))  # the old one signs too, for the grace period
        deadline = time.monotonic() + 20
        while page.locator('#deliveries tr[data-status="succeeded"]').count() == 0:
            assert time.monotonic() < deadline, "the test delivery never showed as succeeded"
            page.click("#reload-deliveries")
            page.wait_for_timeout(300)

        # A failing endpoint: its attempt is shown with the receiver's answer, and retried from the portal.
        page.fill("#new-url", failing.url)
        page.click("#add-form button[type=submit]")
        wait_row(page, "#endpoints tr", failing.url)
        eventually(lambda: page.input_value("#edit-url") == failing.url)
        failing_id = page.text_content("#detail-id")
        # The tenant keeps the delivery options: one attempt, so the failure is final at once.
        assert api.patch(f"/v1/endpoints/{failing_id}", json={"options": {"retry": {"max_attempts": 1}}}).is_success
        page.click("#send-test")
        failing.wait_for(lambda r: len(r) == 1)
        deadline = time.monotonic() + 20
        while page.locator('#deliveries tr[data-status="failed"]').count() == 0:
            assert time.monotonic() < deadline, "the failed delivery never showed"
            page.click("#reload-deliveries")
            page.wait_for_timeout(300)
        page.click('#deliveries tr[data-status="failed"]')
        page.locator("#retry").wait_for()
        assert "switchboard.test" in page.text_content("#delivery-request")
        assert "500" in page.text_content("#attempts") and "not now" in page.text_content("#attempts")
        failing.status = 200
        page.click("#retry")
        failing.wait_for(lambda r: len(r) == 2)

        # Disable it.
        page.click("#toggle")
        eventually(lambda: page.text_content("#toggle") == "Enable")
        assert api.get(f"/v1/endpoints/{failing_id}").json()["enabled"] is False

        # The page kept to its policy: no violation, nothing from elsewhere.
        assert page.evaluate("window.__violations") == []

        # Another application's token, and this one's, on each other's endpoints: 404 both ways.
        globex = session(api, "globex")
        for token, endpoint in ((acme["token"], other_app["id"]), (acme["token"], tenant_wide["id"]),
                                (globex["token"], endpoint_id)):
            answer = page.evaluate(
                """async ([token, id]) => { const r = await fetch(`/portal/api/endpoints/${id}`,
                   {headers: {Authorization: `Bearer ${token}`}}); return [r.status, await r.json()]; }""",
                [token, endpoint])
            assert answer[0] == 404 and answer[1]["error"]["code"] == "not_found", answer
        listed = httpx.get(f"{platform.edge_url}/portal/api/endpoints",
                           headers={"authorization": f"Bearer {globex['token']}"}).json()["data"]
        assert [e["id"] for e in listed] == [other_app["id"]]


def test_portal_api_refusals(platform: Platform) -> None:
    with platform.client() as api:
        acme = session(api, "acme", ttl_seconds=60)
        mine = httpx.post(f"{platform.edge_url}/portal/api/endpoints", json={"url": "http://127.0.0.1:9/acme"},
                          headers={"authorization": f"Bearer {acme['token']}"})
        assert mine.status_code == 201, mine.text
    _, other_admin = tenant_with_key(platform, "other", "admin")
    with platform.client(other_admin) as other:
        # The same application id in another tenant is another customer.
        foreign = session(other, "acme")
    url = f"{platform.edge_url}/portal/api/endpoints"

    def refused(method: str, path: str, token: str | None, status: int, code: str, **kwargs: Any) -> None:
        headers = {**kwargs.pop("headers", {}), **({"authorization": f"Bearer {token}"} if token else {})}
        reply = httpx.request(method, f"{platform.edge_url}/portal/api{path}", headers=headers, **kwargs)
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["code"] == code

    assert httpx.get(url, headers={"authorization": f"Bearer {foreign['token']}"}).json()["data"] == []
    refused("GET", f"/endpoints/{mine.json()['id']}", foreign["token"], 404, "not_found")
    refused("GET", "/endpoints", None, 401, "unauthenticated")
    refused("GET", "/endpoints", acme["token"][:-3] + "abc", 401, "unauthenticated")
    refused("GET", "/endpoints", platform_key(platform), 401, "unauthenticated")  # an API key is not a session
    # What is the tenant's to set stays the tenant's.
    refused("POST", "/endpoints", acme["token"], 400, "invalid_request",
            json={"url": "http://127.0.0.1:9/acme", "destination": "nats"})
    refused("POST", "/endpoints", acme["token"], 400, "invalid_request", json={"description": "no url"})
    refused("PATCH", f"/endpoints/{mine.json()['id']}", acme["token"], 400, "invalid_request",
            json={"options": {"max_in_flight": 1000}})
    refused("POST", "/endpoints", acme["token"], 400, "invalid_request", content=b"{not json",
            headers={"content-type": "application/json"})
    refused("GET", "/deliveries?endpoint_id=ep_nope", acme["token"], 404, "not_found")

    with platform.client() as api:
        for body, field in (({"application_id": "a b"}, "application_id"),
                            ({"application_id": "acme", "ttl_seconds": 10}, "ttl_seconds"),
                            ({"application_id": "acme", "allowed_origins": ["https://x.com/path"]}, "allowed_origins")):
            reply = api.post("/v1/portal/sessions", json=body)
            assert reply.status_code == 400 and reply.json()["error"]["field"] == field, reply.text
    read_only = tenant_with_key(platform, "reader", "read")[1]
    with platform.client(read_only) as reader:
        assert reader.post("/v1/portal/sessions", json={"application_id": "acme"}).status_code == 403


def test_the_portal_is_framed_only_by_the_sessions_origins(platform: Platform, page, sites) -> None:  # noqa: F811
    allowed, other = FramingSite("about:blank"), FramingSite("about:blank")
    sites += [allowed, other]
    with platform.client() as api:
        framed = session(api, "acme", allowed_origins=[allowed.origin])
        alone = session(api, "acme")
    headers = httpx.get(framed["url"].split("#")[0]).headers
    assert f"frame-ancestors {allowed.origin}" in headers["content-security-policy"]
    assert "x-frame-options" not in headers
    headers = httpx.get(alone["url"].split("#")[0]).headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    for site, should_load in ((allowed, True), (other, False)):
        page.goto(f"{site.origin}/")
        page.evaluate("url => { document.getElementById('portal').src = url; }", framed["url"])
        page.wait_for_timeout(1500)
        frame = next((f for f in page.frames if f.url.startswith(f"{platform.edge_url}/portal")), None)
        loaded = frame is not None and frame.evaluate("document.getElementById('endpoints-panel') !== null "
                                                      "&& !document.getElementById('endpoints-panel').hidden")
        assert loaded is should_load, (site.origin, frame and frame.url)
