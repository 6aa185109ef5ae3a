"""The dashboard end to end: the real platform delivers (and dead-letters) signed webhooks, then Debian's
Chromium, headless and driven by Playwright, signs in at /dashboard and shows what the API says.

Playwright never downloads a browser here: it launches /usr/bin/chromium (``make test`` installs the
Debian package when it is missing and it can). Screenshots are decoded and checked for the colours the
charts draw with, so a blank or unstyled page fails.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.slice import send, wait_for, wait_routed
from tests.e2e.test_auth import add_key, cli_json
from tests.e2e.test_sources import make_source, post, sender_headers
from tests.plugins.test_sources import sample
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NO_CHROMIUM = "chromium is not installed (/usr/bin/chromium): `make test` installs Debian's chromium as root"
# The dashboard's colours (dashboard.css): succeeded, failed.
GREEN, RED = (0x1F, 0x9D, 0x63), (0xD6, 0x45, 0x45)
XSS = '<img src=x onerror="window.__pwned = 1">'


@pytest.fixture
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    # Collected by the page's own listener: any CSP violation the dashboard causes (or an attack would).
    page.add_init_script("window.__violations = [];"
                         "document.addEventListener('securitypolicyviolation',"
                         " e => window.__violations.push(e.effectiveDirective));")
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


# -- helpers ------------------------------------------------------------------------------



def sign_in(page, edge_url: str, key: str, state: str = "ready") -> None:
    page.goto(f"{edge_url}/dashboard")
    page.fill("#api-key", key)
    page.click("#signin button[type=submit]")
    page.locator(f'body[data-state="{state}"]').wait_for(state="attached")


def png_pixels(data: bytes) -> tuple[int, int, set[tuple[int, int, int]]]:
    """Width, height and the set of colours of an 8-bit RGB(A) PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, header = 8, b"", None
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunk = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    assert header is not None
    width, height, depth, colour_type, *_ = header
    assert depth == 8 and colour_type in (2, 6), header
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    assert len(raw) == height * (stride + 1)
    colours: set[tuple[int, int, int]] = set()
    previous = bytearray(stride)
    for row in range(height):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = previous[i - channels] if i >= channels else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        colours.update(zip(line[0::channels], line[1::channels], line[2::channels]))
        previous = line
    return width, height, colours


def check_screenshot(path: Path, min_width: int, min_height: int, *must_show: tuple[int, int, int]) -> None:
    width, height, colours = png_pixels(path.read_bytes())
    assert width >= min_width and height >= min_height, (path.name, width, height)
    assert len(colours) > 20, f"{path.name} is (nearly) blank: {len(colours)} colours"
    for colour in must_show:
        assert any(max(abs(a - b) for a, b in zip(colour, c)) <= 3 for c in colours), (path.name, colour)


def card(page, stat: str) -> str:
    return page.text_content(f'.card[data-stat="{stat}"] .value').strip()


# -- the tests ----------------------------------------------------------------------------

def test_the_dashboard_shows_what_the_api_says_retries_and_draws_an_event_timeline(
        platform: Platform, page, tmp_path: Path) -> None:
    with Receiver() as ok, Receiver(status=500) as broken, platform.client() as api:
        source = api.post("/v1/sources", json={"name": "billing", "config": {"event_type_field": "type"}}).json()
        good = api.post("/v1/endpoints", json={"url": ok.url, "description": "good receiver"}).json()["id"]
        # One attempt only: each delivery to it is a dead letter at once.
        bad = api.post("/v1/endpoints", json={"url": broken.url, "description": "broken receiver",
                                              "options": {"retry": {"max_attempts": 1}}}).json()["id"]
        for route in ({"name": "everything", "endpoint_ids": [good, bad]},
                      # An AI condition: every event is classified, so its timeline has labels.
                      {"name": "billing by AI", "ai": {"category": ["billing"]}, "endpoint_ids": [good]}):
            assert api.post("/v1/routes", json=route).status_code == 201
        events = [send(platform, source["id"], source["secret"],
                       {"type": "invoice.payment_failed", "n": n, "text": "the card payment for invoice failed"})
                  for n in range(3)]
        overview = wait_for(lambda: (o := api.get("/v1/analytics/overview").json())["attempts"] == 6
                            and o["dead"] == 3 and o)
        trends = api.get("/v1/analytics/trends", params={"bucket": "hour"}).json()
        wait_for(lambda: len(api.get("/v1/deliveries", params={"status": "failed"}).json()["data"]) == 3)

        assert platform.admin_key is not None
        sign_in(page, platform.edge_url, platform.admin_key)
        # The key is in this tab's sessionStorage only: not in the URL, not in a cookie.
        assert page.evaluate("sessionStorage.getItem('switchboard.apiKey')") == platform.admin_key
        assert page.evaluate("document.cookie") == "" and platform.admin_key not in page.url

        # Overview numbers as the API counts them.
        for stat, field in (("events", "events_received"), ("succeeded", "succeeded"), ("failed", "failed"),
                            ("pending", "pending"), ("dead", "dead")):
            assert card(page, stat) == str(overview[field]), stat
        assert card(page, "success rate") == "50.0%"
        for p in ("p50", "p95", "p99"):
            assert card(page, p).endswith(" ms") and float(card(page, p)[:-3]) > 0
        assert page.get_attribute("#success-rate svg", "aria-label") == "success rate 50.0%"
        assert page.locator("#latency svg rect").count() == 4

        # The trend: one vertex per hour bucket, and points where something happened.
        vertices = page.get_attribute("#trend-svg polyline.line.ok", "points").split()
        assert abs(len(vertices) - len(trends["data"])) <= 1
        assert page.locator('#trend-svg circle.point[data-field="succeeded"]').count() >= 1
        assert page.locator('#trend-svg circle.point[data-field="failed"]').count() >= 1

        # The last hour, in minute buckets, and the last 7 days count the same deliveries.
        for chosen, buckets in (("1h", 60), ("7d", 7 * 24)):
            page.select_option("#range", chosen)
            page.locator('body[data-state="ready"]').wait_for(state="attached")
            assert card(page, "dead") == "3" and card(page, "events") == "3", chosen
            points = page.get_attribute("#trend-svg polyline.line.ok", "points").split()
            assert buckets <= len(points) <= buckets + 2, (chosen, len(points))
        page.select_option("#range", "24h")
        page.locator('body[data-state="ready"]').wait_for(state="attached")

        # Breakdown by endpoint (named by description), then by event type.
        assert page.locator("#breakdown-svg text", has_text="broken receiver").count() == 1
        assert page.locator("#breakdown-svg text", has_text="3 ok · 0 dead · 100.0%").count() == 1
        page.select_option("#breakdown-by", "event_type")
        page.locator("#breakdown-svg text", has_text="invoice.payment_failed").wait_for()
        # By the AI's labels: every event here was classified (the AI route), each bar one the API counts.
        for by in ("category", "priority"):
            rows_by = api.get("/v1/analytics/breakdown", params={"by": by}).json()["data"]
            assert rows_by and all(r["key"] for r in rows_by), (by, rows_by)
            page.select_option("#breakdown-by", by)
            page.locator(f'#breakdown-svg[aria-label="deliveries by {by}"]').wait_for()
            for r in rows_by:
                page.locator("#breakdown-svg text", has_text=r["key"]).first.wait_for()
            assert page.get_attribute("#breakdown-svg", "aria-label") == f"deliveries by {by}"
            assert page.locator("#breakdown-svg text", has_text="invoice.payment_failed").count() == 0

        # The failing endpoint with its last error and when.
        failing = page.locator(f'#failing tr[data-endpoint="{bad}"]')
        assert "broken receiver" in failing.text_content()
        assert "receiver answered 500" in failing.locator(".error-text").text_content()
        assert page.locator("#failing tbody tr").count() == 1

        # Dead letters, newest first; the receiver is mended and one is retried from the page.
        rows = page.locator("#dead-letters tbody tr")
        assert rows.count() == 3
        delivery_id = rows.first.get_attribute("data-delivery")
        assert delivery_id in {f"{event}:{bad}" for event in events}
        full = tmp_path / "dashboard.png"
        page.screenshot(path=str(full), full_page=True)
        page.locator("#trend").screenshot(path=str(tmp_path / "trend.png"))
        broken.status = 200
        rows.first.locator("button.retry").click()
        result = rows.first.locator(".retry-result")
        page.locator("#dead-letters tbody tr .retry-result[data-outcome]").wait_for()
        assert result.get_attribute("data-outcome") == "succeeded", result.text_content()
        assert "attempt #2: succeeded (200)" in result.text_content()
        retried = api.get(f"/v1/deliveries/{delivery_id}").json()
        assert retried["status"] == "succeeded" and [a["number"] for a in retried["attempts"]] == [1, 2]

        # That event's timeline: received → classified → routed → each attempt, listed and drawn.
        rows.first.locator("button.link").click()
        steps = page.locator("#timeline-steps li")
        page.locator('#timeline-steps li[data-step="attempt"]').nth(2).wait_for()
        kinds = [steps.nth(i).get_attribute("data-step") for i in range(steps.count())]
        assert kinds[:3] == ["received", "classified", "routed"] and kinds[3:] == ["attempt"] * 3, kinds
        classified = page.text_content('#timeline-steps li[data-step="classified"]')
        assert "Classified by local" in classified and "category billing" in classified
        assert "everything" in page.text_content('#timeline-steps li[data-step="routed"]')
        attempts = page.locator('#timeline-steps li[data-step="attempt"]')
        texts = [attempts.nth(i).text_content() for i in range(3)]
        assert sum("broken receiver: failed 500" in t for t in texts) == 1
        assert sum("broken receiver: succeeded 200" in t for t in texts) == 1
        assert sum("good receiver: succeeded 200" in t for t in texts) == 1
        assert page.locator('#timeline-svg [data-step="attempt"]').count() == 3
        assert page.locator('#timeline-svg circle[data-step]').count() == 3
        assert '"invoice.payment_failed"' in page.text_content("#event-payload")
        page.locator("#timeline-panel").screenshot(path=str(tmp_path / "timeline.png"))

        # The event id typed in works as well as a click.
        page.fill("#event-id", events[0])
        page.click("#event-form button[type=submit]")
        page.locator("#event-facts dd", has_text=events[0]).wait_for()

        # Sign out forgets the key; a wrong key shows the API's own error.
        page.click("#sign-out")
        assert page.evaluate("sessionStorage.getItem('switchboard.apiKey')") is None
        assert page.is_visible("#signin-panel") and not page.is_visible("#dashboard")
        wrong = "sb_live_not_a_real_key"
        expected = httpx.get(f"{platform.edge_url}/v1/analytics/overview",
                             headers={"Authorization": f"Bearer {wrong}"})
        assert expected.status_code == 401
        sign_in(page, platform.edge_url, wrong, state="signin-error")
        assert json.loads(page.text_content("#signin-error")) == expected.json()
        assert page.evaluate("sessionStorage.getItem('switchboard.apiKey')") is None
        page.screenshot(path=str(tmp_path / "wrong-key.png"))
        assert page.evaluate("window.__violations") == []

    check_screenshot(full, 1280, 1200, GREEN, RED)
    check_screenshot(tmp_path / "trend.png", 600, 150, GREEN, RED)
    check_screenshot(tmp_path / "timeline.png", 600, 200, GREEN, RED)
    check_screenshot(tmp_path / "wrong-key.png", 1280, 900, RED)


def test_the_page_has_strict_headers_and_shows_attacker_data_as_text(platform: Platform, page) -> None:
    for path, media in (("/dashboard", "text/html"), ("/dashboard/dashboard.js", "text/javascript"),
                        ("/dashboard/dashboard.css", "text/css")):
        reply = httpx.get(f"{platform.edge_url}{path}")  # no key: the page itself holds no data
        assert reply.status_code == 200 and reply.headers["content-type"].startswith(media), path
        csp = reply.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and "form-action 'none'" in csp
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["referrer-policy"] == "no-referrer"
        assert reply.headers["x-frame-options"] == "DENY"
    html = httpx.get(f"{platform.edge_url}/dashboard").text
    assert "<script>" not in html and "<style" not in html and "style=" not in html
    assert "/dashboard" not in httpx.get(f"{platform.edge_url}/openapi.json").json()["paths"]

    with Receiver(status=500) as broken, platform.client() as api:
        source = api.post("/v1/sources", json={"name": XSS, "config": {"event_type_field": "type"}}).json()
        endpoint = api.post("/v1/endpoints", json={"url": broken.url, "description": XSS,
                                                   "options": {"retry": {"max_attempts": 1}}}).json()["id"]
        api.post("/v1/routes", json={"name": XSS, "endpoint_ids": [endpoint]}).raise_for_status()
        event_id = send(platform, source["id"], source["secret"],
                        {"type": XSS, "html": XSS, "script": "<script>window.__pwned = 2</script>"})
        wait_for(lambda: api.get("/v1/analytics/overview").json()["dead"] == 1)

        assert platform.admin_key is not None
        sign_in(page, platform.edge_url, platform.admin_key)
        page.select_option("#breakdown-by", "event_type")
        page.locator("#breakdown-svg text", has_text="<img src=x").wait_for()
        assert page.text_content(f'#failing tr[data-endpoint="{endpoint}"] td') == XSS
        # The events view: the type and the source's name as text too.
        listed = page.locator(f'#events tr[data-event-row="{event_id}"] td')
        assert listed.nth(2).text_content() == XSS and listed.nth(3).text_content() == XSS
        page.fill("#event-id", event_id)
        page.click("#event-form button[type=submit]")
        page.locator('#timeline-steps li[data-step="attempt"]').wait_for()
        assert json.loads(page.text_content("#event-payload"))["html"] == XSS
        assert XSS in page.text_content('#timeline-steps li[data-step="received"]')
        assert XSS in page.text_content('#timeline-steps li[data-step="routed"]')
        # Shown as text: no element was made from it, and nothing ran.
        assert page.evaluate("document.querySelectorAll('img, main script').length") == 0
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("window.__violations") == []

        # And the policy holds if something did slip in: an inline script is refused.
        page.evaluate("() => { const s = document.createElement('script');"
                      " s.textContent = 'window.__inline = 1'; document.body.append(s); }")
        page.wait_for_function("() => window.__violations.length > 0")
        assert page.evaluate("window.__inline") is None
        assert "script-src-elem" in page.evaluate("window.__violations")


def test_the_events_view_lists_filters_pages_and_opens_a_timeline(platform: Platform, page) -> None:
    with Receiver() as ok, platform.client() as api:
        orders = api.post("/v1/sources", json={"name": "orders", "config": {"event_type_field": "type"}}).json()
        shop = api.post("/v1/sources", json={"name": "shop", "config": {"event_type_field": "type"}}).json()
        endpoint = api.post("/v1/endpoints", json={"url": ok.url, "description": "receiver"}).json()["id"]
        for route in ({"name": "tests", "action": "drop", "event_types": ["test.*"]},
                      {"name": "orders", "event_types": ["order.*"], "endpoint_ids": [endpoint]},
                      {"name": "billing", "event_types": ["invoice.*"], "endpoint_ids": [endpoint],
                       "ai": {"category": ["billing"]}}):
            assert api.post("/v1/routes", json=route).status_code == 201
        for n in range(22):
            send(platform, orders["id"], orders["secret"], {"type": "order.created", "n": n})
        dropped = send(platform, orders["id"], orders["secret"], {"type": "test.ping"})
        unrouted = send(platform, orders["id"], orders["secret"], {"type": "misc.note"})
        invoice = send(platform, shop["id"], shop["secret"],
                       {"type": "invoice.payment_failed", "text": "the card payment for invoice failed"})
        listed = wait_for(lambda: len(d := api.get("/v1/events", params={"limit": 100}).json()["data"]) == 25 and d)
        newest_first = [e["id"] for e in listed]

        def shown() -> list[str]:
            return page.eval_on_selector_all("#events tbody tr", "rows => rows.map(r => r.dataset.eventRow)")

        def search(**fields: str) -> None:
            for name, value in fields.items():
                if name in ("source", "status"):
                    page.select_option(f"#events-{name}", value)
                else:
                    page.fill(f"#events-{name}", value)
            page.click("#events-form button[type=submit]")
            page.locator('body[data-events="ready"], body[data-events="refused"]').wait_for(state="attached")

        assert platform.admin_key is not None
        sign_in(page, platform.edge_url, platform.admin_key)
        page.locator('body[data-events="ready"]').wait_for(state="attached")
        # Newest first, a page of 20, then the rest through the cursor.
        assert shown() == newest_first[:20]
        assert page.is_visible("#events-more")
        page.click("#events-more")
        page.locator("#events tbody tr").nth(24).wait_for()
        assert shown() == newest_first and not page.is_visible("#events-more")
        row = page.locator(f'#events tr[data-event-row="{invoice}"]')
        assert row.locator("td.status").text_content() == "routed"
        assert "shop" in row.text_content() and "billing" in row.text_content()

        # Each filter, as the API answers it.
        search(status="dropped")
        assert shown() == [dropped] and page.text_content("#events td.status") == "dropped"
        search(status="unrouted")
        assert shown() == [unrouted]
        search(status="", type="invoice.*")
        assert shown() == [invoice]
        search(type="", category="billing")
        assert shown() == [invoice]
        search(category="", source=shop["id"])
        assert shown() == [invoice]
        search(source="", type="order.*", since="2000-01-01T00:00:00", until="2000-01-02T00:00:00")
        assert shown() == [] and page.is_visible("#events-empty")
        # A filter the API refuses shows its message, which names the field.
        search(since="2000-01-02T00:00:00", until="2000-01-01T00:00:00")
        assert page.text_content("#events-error").startswith("until:")
        search(since="", until="")
        assert shown() == [i for i in newest_first if i not in (dropped, unrouted, invoice)][:20]

        # Clicking an event opens its timeline.
        search(type="", status="dropped")
        page.locator(f'#events tr[data-event-row="{dropped}"] button.link').click()
        page.locator("#event-facts dd", has_text=dropped).wait_for()
        page.locator('#timeline-steps li[data-step="routed"]', has_text="Dropped by route").wait_for()
        assert page.evaluate("window.__violations") == []


def test_the_replies_view_approves_an_edited_draft_and_rejects_another(platform: Platform, page) -> None:
    edited = "A person wrote this, not the AI."
    with Receiver(response_body=b"ok") as chat, platform.client() as api:
        source = make_source(api, "intercom")
        hook = api.post("/v1/endpoints", json={"url": chat.url, "destination": "slack"}).json()["id"]
        api.post("/v1/routes", json={"source_id": source["id"], "action": "reply", "review": True,
                                     "endpoint_ids": [hook]}).raise_for_status()
        held_ids, event_ids = [], []
        # The customers' conversation ids are theirs to choose: one is markup.
        for n, conversation in enumerate(("conv_review_0", XSS, "conv_review_2")):
            message = json.loads(sample("intercom"))
            message.update(id=f"notif_review_{n}")
            message["data"]["item"]["id"] = conversation
            body = json.dumps(message).encode()
            accepted = post(platform, source, body, sender_headers(source, body, source["ingest_url"]))
            assert accepted.status_code == 202, accepted.text
            event = wait_routed(api, accepted.json()["event_id"])
            assert event["routing"]["reply"]["status"] == "held", event["routing"]
            held_ids.append(event["routing"]["reply"]["reply_id"])
            event_ids.append(event["id"])
        first, second, third = held_ids
        listed = api.get("/v1/replies", params={"status": "held"}).json()["data"]
        assert {r["id"] for r in listed} == set(held_ids)
        drafts = {r["id"]: r for r in listed}
        [tenant] = cli_json(platform, "tenants", "list")
        reader = add_key(platform, tenant["id"], "read")["secret"]

        def row(reply_id: str):
            return page.locator(f'#replies tr[data-reply="{reply_id}"]')

        def decide(reply_id: str, action: str) -> str:
            row(reply_id).locator(f"button.{action}").click()
            result = row(reply_id).locator(".reply-result[data-outcome]")
            result.wait_for()
            return result.get_attribute("data-outcome")

        # A read key sees the held drafts, newest first, as the API lists them; its approval is the API's 403.
        sign_in(page, platform.edge_url, reader)
        page.locator('body[data-replies="ready"]').wait_for(state="attached")
        shown = page.eval_on_selector_all("#replies tbody tr", "rows => rows.map(r => r.dataset.reply)")
        assert shown == [r["id"] for r in listed]
        for reply_id in held_ids:
            cells = row(reply_id).locator("td")
            assert cells.nth(1).text_content() == drafts[reply_id]["conversation_key"]
            assert row(reply_id).locator("button.link").text_content() == drafts[reply_id]["event_id"]
            assert row(reply_id).locator("textarea").input_value() == drafts[reply_id]["text"]
            assert row(reply_id).get_attribute("data-status") == "held"
        assert row(second).locator("td").nth(1).text_content() == XSS
        refused = httpx.post(f"{platform.edge_url}/v1/replies/{first}/approve",
                             headers={"Authorization": f"Bearer {reader}"})
        assert refused.status_code == 403
        assert decide(first, "approve") == "error"
        assert row(first).locator(".reply-result").text_content() == f"403 {refused.json()['error']['message']}"
        assert row(first).get_attribute("data-status") == "held"
        page.click("#sign-out")

        # An admin approves the first with an edited text and rejects the second.
        assert platform.admin_key is not None
        sign_in(page, platform.edge_url, platform.admin_key)
        page.locator('body[data-replies="ready"]').wait_for(state="attached")
        row(first).locator("textarea").fill(edited)
        assert decide(first, "approve") == "approved"
        assert row(first).get_attribute("data-status") == "approved"
        assert row(first).locator("td.status").text_content().startswith("approved")
        assert row(first).locator("textarea").input_value() == edited
        assert row(first).locator("textarea").get_attribute("readonly") is not None
        assert not row(first).locator("button.approve").is_visible()
        assert decide(second, "reject") == "rejected"
        assert row(second).locator("td.status").text_content().startswith("rejected")
        # Someone else decides the third first: the API's 409, and the row then shows their decision.
        assert api.post(f"/v1/replies/{third}/reject").status_code == 200
        assert decide(third, "approve") == "error"
        assert row(third).locator(".reply-result").text_content().startswith("409 ")
        assert row(third).get_attribute("data-status") == "rejected"

        [sent] = chat.wait_for(lambda r: len(r) >= 1)
        assert json.loads(sent.body)["text"] == edited
        time.sleep(1)
        assert len(chat.requests) == 1  # once, and nothing for the rejected two
        approved = api.get(f"/v1/replies/{first}").json()
        assert (approved["status"], approved["text"]) == ("approved", edited) and approved["decided_by"]
        assert [api.get(f"/v1/replies/{r}").json()["status"] for r in (second, third)] == ["rejected"] * 2

        # The status filter: none held any more; any status lists all three as the API does.
        page.click("#replies-form button[type=submit]")
        page.locator('body[data-replies="ready"]').wait_for(state="attached")
        assert page.locator("#replies tbody tr").count() == 0 and page.is_visible("#replies-empty")
        page.select_option("#replies-status", "")
        page.click("#replies-form button[type=submit]")
        page.locator("#replies tbody tr").nth(2).wait_for()
        everything = api.get("/v1/replies").json()["data"]
        statuses = page.eval_on_selector_all("#replies tbody tr",
                                             "rows => rows.map(r => [r.dataset.reply, r.dataset.status])")
        assert statuses == [[r["id"], r["status"]] for r in everything]
        assert not page.is_visible("#replies-more")

        # A draft's event opens its timeline.
        row(first).locator("button.link").click()
        page.locator("#event-facts dd", has_text=event_ids[0]).wait_for()

        # The markup was text throughout: no element made from it, nothing ran, no policy violated.
        assert page.evaluate("document.querySelectorAll('img, main script').length") == 0
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("window.__violations") == []
