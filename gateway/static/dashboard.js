// Switchboard's dashboard: reads the /v1 API with the key typed into the sign-in form.
//
// Security: the key lives in sessionStorage only (never a URL, never a cookie) and is
// sent as "Authorization: Bearer". Everything the API returns (event payloads, errors,
// endpoint descriptions) is attacker-controllable, so it reaches the DOM through
// textContent and createElement only, never innerHTML. Charts are SVG built the same way.
"use strict";

(() => {
  const KEY = "switchboard.apiKey";
  const SVG = "http://www.w3.org/2000/svg";
  const RANGES = {
    "1h": { ms: 3600e3, bucket: "minute" },
    "24h": { ms: 24 * 3600e3, bucket: "hour" },
    "7d": { ms: 7 * 24 * 3600e3, bucket: "hour" },
  };
  const $ = (id) => document.getElementById(id);
  const endpointNames = new Map();

  // -- the API --------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super(typeof body === "string" ? body : JSON.stringify(body));
      this.status = status;
      this.body = body;
    }
  }

  // `json`, when given, is sent as the request's JSON body.
  async function api(method, path, params, json) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, Accept: "application/json" };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    const reply = await fetch(url, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    const text = await reply.text();
    let body = text;
    try { body = JSON.parse(text); } catch (_) { /* not JSON: shown as it is */ }
    if (!reply.ok) throw new ApiError(reply.status, body);
    return body;
  }

  // -- small DOM helpers (textContent only) ---------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function titled(node, text) {
    node.append(svg("title", {}, text));
    return node;
  }

  const count = new Intl.NumberFormat("en");
  const ms = (value) => `${(value || 0).toFixed(value >= 100 ? 0 : 1)} ms`;
  const percent = (value) => `${((value || 0) * 100).toFixed(1)}%`;
  const when = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { hour12: false }) : "—");
  const endpointName = (id) => endpointNames.get(id) || id || "—";

  function showError(error) {
    const box = $("error");
    box.textContent = error instanceof ApiError ? `${error.status} ${error.message}` : String(error);
    box.hidden = false;
  }

  // -- sign in / out ----------------------------------------------------------------------

  function showSignedIn(signedIn) {
    $("signin-panel").hidden = signedIn;
    $("dashboard").hidden = !signedIn;
    $("controls").hidden = !signedIn;
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    $("api-key").value = "";
    showSignedIn(false);
    const box = $("signin-error");
    box.textContent = message || "";
    box.hidden = !message;
    document.body.dataset.state = message ? "signin-error" : "signed-out";
  }

  async function signIn(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("api-key").value = "";
    $("signin-error").hidden = true;
    await refresh();
  }

  // -- loading everything ----------------------------------------------------------------

  function range() {
    const chosen = RANGES[$("range").value] || RANGES["24h"];
    const until = new Date();
    return { since: new Date(until.getTime() - chosen.ms).toISOString(), until: until.toISOString(),
      bucket: chosen.bucket };
  }

  async function refresh() {
    document.body.dataset.state = "loading";
    $("error").hidden = true;
    const window_ = range();
    const span = { since: window_.since, until: window_.until };
    let signedIn = false;
    try {
      // The overview first: a wrong key is refused here, before anything else is asked.
      const overview = await api("GET", "v1/analytics/overview", span);
      signedIn = true;
      showSignedIn(true);
      renderOverview(overview);
      const [endpoints, trends, failing, dead] = await Promise.all([
        api("GET", "v1/endpoints"),
        api("GET", "v1/analytics/trends", { ...span, bucket: window_.bucket }),
        api("GET", "v1/analytics/failing-endpoints", span),
        api("GET", "v1/deliveries", { status: "failed", since: window_.since, limit: 20 }),
      ]);
      endpointNames.clear();
      for (const endpoint of endpoints.data) endpointNames.set(endpoint.id, endpoint.description || endpoint.url);
      renderTrend(trends);
      renderFailing(failing);
      renderDeadLetters(dead);
      await loadBreakdown();
      await loadEvents(false);
      await loadReplies(false);
      document.body.dataset.state = "ready";
    } catch (error) {
      // A refused key (or one without the read scope) goes back to the sign-in form with the API's error.
      if (error instanceof ApiError && (error.status === 401 || (error.status === 403 && !signedIn))) {
        signOut(JSON.stringify(error.body));
      } else {
        showError(error);
        document.body.dataset.state = "error";
      }
    }
  }

  async function loadBreakdown() {
    const { since, until } = range();
    renderBreakdown(await api("GET", "v1/analytics/breakdown", { since, until, by: $("breakdown-by").value }));
  }

  // -- overview: numbers, a success-rate bar, latency bars ------------------------------

  function renderOverview(o) {
    $("window").textContent = `Counted from ${when(o.since)} to ${when(o.until)}`;
    const cards = [
      ["events", o.events_received], ["unrouted", o.unrouted], ["dropped", o.dropped],
      ["succeeded", o.succeeded], ["failed", o.failed],
      ["pending", o.pending], ["dead", o.dead], ["success rate", percent(o.success_rate)],
      ["p50", ms(o.latency_ms.p50)], ["p95", ms(o.latency_ms.p95)], ["p99", ms(o.latency_ms.p99)],
    ];
    // Why the pending deliveries wait (retrying, circuit open, ...), on the pending card.
    const waiting = Object.entries(o.pending_by_reason || {}).filter(([, n]) => n)
      .map(([why, n]) => `${count.format(n)} ${why.replace(/_/g, " ")}`).join(", ");
    $("overview").replaceChildren(...cards.map(([label, value]) => el("div",
      { class: "card", "data-stat": label, ...(label === "pending" && waiting ? { title: waiting } : {}) },
      el("span", { class: "value" }, typeof value === "number" ? count.format(value) : value),
      el("span", { class: "label" }, label === "pending" && waiting ? `pending: ${waiting}` : label))));

    const width = 320, height = 28;
    const settled = o.succeeded + o.dead;
    const rate = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "rate", role: "img",
      "aria-label": `success rate ${percent(o.success_rate)}` });
    rate.append(svg("rect", { x: 0, y: 0, width, height, rx: 4, class: settled ? "bad" : "empty" }));
    rate.append(titled(svg("rect", { x: 0, y: 0, width: width * (o.success_rate || 0), height, rx: 4, class: "ok" }),
      `${o.succeeded} succeeded, ${o.dead} dead`));
    rate.append(svg("text", { x: width / 2, y: height / 2 + 5, "text-anchor": "middle", class: "on-bar" },
      settled ? percent(o.success_rate) : "nothing settled"));
    $("success-rate").replaceChildren(rate);

    const rows = [["p50", o.latency_ms.p50], ["p95", o.latency_ms.p95], ["p99", o.latency_ms.p99],
      ["mean", o.latency_ms.avg]];
    const top = Math.max(1, ...rows.map(([, v]) => v || 0));
    const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * 22}`, class: "latency", role: "img",
      "aria-label": "latency percentiles" });
    rows.forEach(([label, value], i) => {
      const y = i * 22;
      chart.append(svg("text", { x: 0, y: y + 15, class: "axis" }, label));
      chart.append(titled(svg("rect", { x: 44, y: y + 3, height: 16, rx: 3, class: "lat",
        width: Math.max(1, (width - 130) * (value || 0) / top) }), `${label} ${ms(value)}`));
      chart.append(svg("text", { x: width - 80, y: y + 15, class: "axis" }, ms(value)));
    });
    $("latency").replaceChildren(chart);
  }

  // -- trend: succeeded and failed per bucket, as stacked areas -------------------------

  function renderTrend(trends) {
    const points = trends.data;
    $("trend-bucket").textContent = `(per ${trends.bucket}, stacked)`;
    const width = 900, height = 220, left = 44, bottom = 24, top = 10;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, id: "trend-svg", role: "img",
      "aria-label": `succeeded and failed per ${trends.bucket}` });
    const peak = Math.max(1, ...points.map((p) => p.succeeded + p.failed));
    const x = (i) => left + (points.length > 1 ? (i * (width - left - 8)) / (points.length - 1) : (width - left) / 2);
    const y = (v) => height - bottom - ((height - bottom - top) * v) / peak;
    const ticks = [...new Set([0, Math.round(peak / 2), peak])];
    for (const value of ticks) {
      chart.append(svg("line", { x1: left, x2: width - 8, y1: y(value), y2: y(value), class: "grid" }));
      chart.append(svg("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end", class: "axis" }, value));
    }
    const labelled = Math.max(1, Math.ceil(points.length / 6));
    points.forEach((p, i) => {
      if (i % labelled === 0) {
        const start = new Date(p.start);
        const text = trends.bucket === "day" ? start.toLocaleDateString("en-GB")
          : start.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
        chart.append(svg("text", { x: x(i), y: height - 6, "text-anchor": "middle", class: "axis" }, text));
      }
    });
    // Succeeded from zero, failed attempts stacked on top: neither hides the other.
    const layers = [["succeeded", "ok", () => 0, (p) => p.succeeded],
      ["failed", "bad", (p) => p.succeeded, (p) => p.succeeded + p.failed]];
    for (const [field, cls, floor, ceiling] of layers) {
      if (!points.length) break;
      const upper = points.map((p, i) => `${x(i).toFixed(1)},${y(ceiling(p)).toFixed(1)}`);
      const lower = points.map((p, i) => `${x(i).toFixed(1)},${y(floor(p)).toFixed(1)}`).reverse();
      chart.append(svg("path", { d: `M${upper.join(" L")} L${lower.join(" L")} Z`, class: `area ${cls}` }));
      chart.append(svg("polyline", { points: upper.join(" "), class: `line ${cls}`, "data-field": field }));
      points.forEach((p, i) => {
        if (p[field] > 0) {
          chart.append(titled(svg("circle", { cx: x(i), cy: y(ceiling(p)), r: 3.5, class: `point ${cls}`,
            "data-field": field }), `${when(p.start)}: ${p[field]} ${field}`));
        }
      });
    }
    $("trend").replaceChildren(chart);
  }

  // -- breakdown: one horizontal bar per key ----------------------------------------------

  function renderBreakdown(breakdown) {
    const rows = breakdown.data;
    if (!rows.length) {
      $("breakdown").replaceChildren(el("p", { class: "muted" }, "Nothing delivered in this range."));
      return;
    }
    const width = 900, row = 26, labelWidth = 300;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * row + 4}`, id: "breakdown-svg", role: "img",
      "aria-label": `deliveries by ${breakdown.by}` });
    const top = Math.max(1, ...rows.map((r) => r.succeeded + r.dead));
    const scale = (width - labelWidth - 150) / top;
    rows.forEach((r, i) => {
      const y = i * row + 2;
      const name = breakdown.by === "endpoint" ? endpointName(r.key) : (r.key || "(none)");
      chart.append(titled(svg("text", { x: labelWidth - 8, y: y + 16, "text-anchor": "end", class: "axis" },
        name.length > 40 ? `${name.slice(0, 39)}…` : name), r.key));
      chart.append(titled(svg("rect", { x: labelWidth, y: y + 3, height: 18, width: Math.max(0, r.succeeded * scale),
        class: "ok" }), `${r.succeeded} succeeded`));
      chart.append(titled(svg("rect", { x: labelWidth + r.succeeded * scale, y: y + 3, height: 18,
        width: Math.max(0, r.dead * scale), class: "bad" }), `${r.dead} dead`));
      chart.append(svg("text", { x: labelWidth + (r.succeeded + r.dead) * scale + 6, y: y + 16, class: "axis" },
        `${r.succeeded} ok · ${r.dead} dead · ${percent(r.success_rate)}`));
    });
    $("breakdown").replaceChildren(chart);
  }

  // -- failing endpoints and dead letters -------------------------------------------------

  function renderFailing(failing) {
    const body = $("failing").querySelector("tbody");
    body.replaceChildren(...failing.data.map((f) => el("tr", { "data-endpoint": f.endpoint_id },
      el("td", { title: f.endpoint_id }, endpointName(f.endpoint_id)), el("td", {}, count.format(f.failures)),
      el("td", {}, count.format(f.dead)), el("td", {}, count.format(f.attempts)),
      el("td", { class: "error-text" }, f.last_error || "—"), el("td", {}, when(f.last_failure_at)))));
    $("failing-empty").hidden = failing.data.length > 0;
  }

  function lastAttempt(delivery) {
    const attempts = delivery.attempts || [];
    return attempts[attempts.length - 1] || {};
  }

  function eventLink(eventId) {
    const button = el("button", { type: "button", class: "link", "data-event": eventId }, eventId);
    button.addEventListener("click", () => openEvent(eventId));
    return button;
  }

  function renderDeadLetters(list) {
    const body = $("dead-letters").querySelector("tbody");
    body.replaceChildren(...list.data.map((d) => {
      const last = lastAttempt(d);
      const result = el("span", { class: "retry-result" });
      const retry = el("button", { type: "button", class: "retry" }, "Retry");
      retry.addEventListener("click", () => retryDelivery(d.id, retry, result));
      return el("tr", { "data-delivery": d.id },
        el("td", {}, eventLink(d.event_id)), el("td", { title: d.endpoint_id }, endpointName(d.endpoint_id)),
        el("td", {}, `#${last.number || "?"} · ${when(last.started_at)} · ${last.status_code || "no answer"}`),
        el("td", { class: "error-text" }, last.error || "—"), el("td", {}, retry, result));
    }));
    $("dead-empty").hidden = list.data.length > 0;
  }

  async function retryDelivery(id, button, result) {
    button.disabled = true;
    result.textContent = "retrying…";
    result.className = "retry-result";
    try {
      const before = (await api("POST", `v1/deliveries/${encodeURIComponent(id)}/retry`)).attempts?.length || 0;
      result.textContent = "queued";
      // Follow the new cycle for a few seconds so the outcome shows here.
      for (let i = 0; i < 20; i += 1) {
        await new Promise((done) => setTimeout(done, 500));
        const delivery = await api("GET", `v1/deliveries/${encodeURIComponent(id)}`);
        if ((delivery.attempts || []).length > before && delivery.status !== "pending") {
          const last = lastAttempt(delivery);
          result.textContent = `attempt #${last.number}: ${delivery.status}` +
            (last.status_code ? ` (${last.status_code})` : "") + (last.error ? ` — ${last.error}` : "");
          result.className = `retry-result ${delivery.status === "succeeded" ? "ok-text" : "bad-text"}`;
          result.dataset.outcome = delivery.status;
          return;
        }
      }
      result.textContent = "queued; still pending";
      result.dataset.outcome = "pending";
    } catch (error) {
      result.textContent = error instanceof ApiError ? `${error.status} ${error.message}` : String(error);
      result.className = "retry-result bad-text";
      result.dataset.outcome = "error";
    } finally {
      button.disabled = false;
    }
  }

  // -- events: list and search, newest first, a page at a time ---------------------------

  const EVENTS_PAGE = 20;
  const sourceNames = new Map();
  // The filters the shown pages were asked with: "Load more" goes on with them (a cursor
  // is only good for the filters it was given with), whatever the form says meanwhile.
  let eventsQuery = null;
  let eventsCursor = null;

  function eventFilters() {
    // datetime-local inputs hold local time without a zone: sent as UTC instants.
    const instant = (id) => ($(id).value ? new Date($(id).value).toISOString() : "");
    return { source_id: $("events-source").value, type: $("events-type").value.trim(),
      status: $("events-status").value, category: $("events-category").value.trim(),
      since: instant("events-since"), until: instant("events-until"), limit: EVENTS_PAGE };
  }

  async function loadSources() {
    const select = $("events-source");
    const chosen = select.value;
    const sources = await api("GET", "v1/sources");
    sourceNames.clear();
    for (const source of sources.data) sourceNames.set(source.id, source.name);
    select.replaceChildren(el("option", { value: "" }, "any"),
      ...sources.data.map((s) => el("option", { value: s.id }, `${s.name} (${s.type})`)));
    select.value = sourceNames.has(chosen) ? chosen : "";
  }

  function eventRow(e) {
    return el("tr", { "data-event-row": e.id, "data-status": e.status },
      el("td", {}, when(e.received_at)), el("td", {}, eventLink(e.id)), el("td", {}, e.type),
      el("td", { title: e.source_id }, sourceNames.get(e.source_id) || e.source_id),
      el("td", { class: `status ${e.status}` }, e.status), el("td", {}, e.category || "—"),
      el("td", {}, count.format(e.deliveries || 0)));
  }

  async function loadEvents(more) {
    const box = $("events-error");
    box.hidden = true;
    document.body.dataset.events = "loading";
    if (!more) {
      await loadSources();
      eventsQuery = eventFilters();
    }
    let page;
    try {
      page = await api("GET", "v1/events", more ? { ...eventsQuery, cursor: eventsCursor } : eventsQuery);
    } catch (error) {
      // A filter the API refuses (a bad glob, a range backwards): its message names the field.
      if (!(error instanceof ApiError) || error.status !== 400) throw error;
      box.textContent = error.body?.error?.message || error.message;
      box.hidden = false;
      document.body.dataset.events = "refused";
      return;
    }
    const body = $("events").querySelector("tbody");
    const rows = page.data.map(eventRow);
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    eventsCursor = page.next_cursor;
    $("events-more").hidden = !eventsCursor;
    $("events-empty").hidden = body.children.length > 0;
    document.body.dataset.events = "ready";
  }

  // -- replies: AI drafts a review route holds, approved (maybe edited) or rejected here --

  const REPLIES_PAGE = 20;
  // As for events: "Load more" goes on with the status the shown pages were asked for.
  let repliesQuery = null;
  let repliesBefore = null;

  // The API's own message for a refusal (403 for a read key, 409 when someone decided first, ...).
  const apiMessage = (error) => (error instanceof ApiError
    ? `${error.status} ${error.body?.error?.message || error.message}` : String(error));

  function replyRow(r) {
    const draft = el("textarea", { class: "draft", rows: 4, maxlength: 4000, "aria-label": `draft ${r.id}` });
    const status = el("td", {});
    const approve = el("button", { type: "button", class: "approve" }, "Approve");
    const reject = el("button", { type: "button", class: "reject" }, "Reject");
    const result = el("span", { class: "reply-result" });
    const row = el("tr", { "data-reply": r.id },
      el("td", {}, when(r.created_at)), el("td", { class: "conversation" }, r.conversation_key || "—"),
      el("td", {}, eventLink(r.event_id)), el("td", {}, draft), status,
      el("td", { class: "actions" }, approve, reject, result));
    // The draft as the API last told it: only a held one can still be edited and decided.
    let shown = r;
    const show = (reply) => {
      shown = reply;
      row.dataset.status = reply.status;
      status.className = `status ${reply.status}`;
      status.replaceChildren(reply.status,
        ...(reply.decided_at ? [el("span", { class: "decided muted" },
          `${when(reply.decided_at)}${reply.decided_by ? ` by ${reply.decided_by}` : ""}`)] : []),
        ...(reply.error ? [el("span", { class: "decided error-text" }, reply.error)] : []));
      const held = reply.status === "held";
      draft.value = reply.text || "";
      draft.readOnly = !held;
      approve.hidden = !held;
      reject.hidden = !held;
    };
    show(r);
    const decide = async (action) => {
      approve.disabled = true;
      reject.disabled = true;
      result.textContent = action === "approve" ? "approving…" : "rejecting…";
      result.className = "reply-result";
      delete result.dataset.outcome;
      // The text is sent only when edited: otherwise the draft goes as it was made.
      const edited = action === "approve" && draft.value !== (shown.text || "") ? { text: draft.value } : undefined;
      try {
        const decided = await api("POST", `v1/replies/${encodeURIComponent(r.id)}/${action}`, null, edited);
        show(decided);
        result.textContent = decided.status;
        result.className = "reply-result ok-text";
        result.dataset.outcome = decided.status;
      } catch (error) {
        // 409: someone decided first; the row then shows what they decided (before the outcome is set).
        if (error instanceof ApiError && error.status === 409) {
          const typed = draft.value;
          try { show(await api("GET", `v1/replies/${encodeURIComponent(r.id)}`)); } catch (_) { /* the 409 stays */ }
          if (row.dataset.status === "held") draft.value = typed;
        }
        result.textContent = apiMessage(error);
        result.className = "reply-result bad-text";
        result.dataset.outcome = "error";
      } finally {
        approve.disabled = false;
        reject.disabled = false;
      }
    };
    approve.addEventListener("click", () => decide("approve"));
    reject.addEventListener("click", () => decide("reject"));
    return row;
  }

  async function loadReplies(more) {
    const box = $("replies-error");
    box.hidden = true;
    document.body.dataset.replies = "loading";
    if (!more) repliesQuery = { status: $("replies-status").value, limit: REPLIES_PAGE };
    let page;
    try {
      page = await api("GET", "v1/replies", more ? { ...repliesQuery, before: repliesBefore } : repliesQuery);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 400) throw error;
      box.textContent = error.body?.error?.message || error.message;
      box.hidden = false;
      document.body.dataset.replies = "refused";
      return;
    }
    const body = $("replies").querySelector("tbody");
    const rows = page.data.map(replyRow);
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    // A full page may have more behind it: the next one starts before its last id.
    repliesBefore = page.data.length === REPLIES_PAGE ? page.data[page.data.length - 1].id : null;
    $("replies-more").hidden = !repliesBefore;
    $("replies-empty").hidden = body.children.length > 0;
    document.body.dataset.replies = "ready";
  }

  // -- one event's timeline ---------------------------------------------------------------

  async function openEvent(eventId) {
    $("event-id").value = eventId;
    $("timeline-panel").scrollIntoView({ block: "start" });
    try {
      renderEvent(await api("GET", `v1/events/${encodeURIComponent(eventId)}`));
    } catch (error) {
      showError(error);
    }
  }

  function renderEvent(event) {
    const routing = event.routing || {};
    const deliveries = event.deliveries || [];
    const facts = [["id", event.id], ["type", event.type], ["source", `${event.source_id} (${event.source_type})`],
      ["received", when(event.received_at)]];
    $("event-facts").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
    $("event-payload").textContent = JSON.stringify(event.payload, null, 2);

    // Classification and routing are drawn when the router decided (it stores the event
    // with its decision); an event not routed yet has no such time: drawn at reception.
    const received = Date.parse(event.received_at);
    const decided = event.routed_at ? Date.parse(event.routed_at) : received;
    const ai = routing.ai;
    const matched = (routing.routes || []).filter((r) => r.matched);
    const steps = [
      { kind: "received", time: received, text: `Received from ${event.source_id}: ${event.type}` },
      { kind: "classified", time: decided,
        text: ai ? `Classified by ${ai.provider || "?"}${ai.model ? ` (${ai.model})` : ""}: category ${ai.category}, `
          + `priority ${ai.priority}, sentiment ${ai.sentiment}, confidence ${ai.confidence}`
          : `Not classified${routing.ai_note ? `: ${routing.ai_note}` : " (no route asked for AI labels)"}` },
      { kind: "routed", time: decided,
        text: routing.dropped_by ? `Dropped by route ${routing.dropped_by}`
          : `Routed: ${matched.map((r) => r.name || r.route_id).join(", ") || "no route matched"}`
            + ` → ${deliveries.length} deliver${deliveries.length === 1 ? "y" : "ies"}` },
    ];
    for (const d of deliveries) {
      for (const a of d.attempts || []) {
        steps.push({ kind: "attempt", time: Date.parse(a.started_at), outcome: a.outcome, lane: d.endpoint_id,
          number: a.number, status: a.status_code,
          latency: a.latency_ms || 0,
          text: `Attempt ${a.number} to ${endpointName(d.endpoint_id)}: ${a.outcome}`
            + `${a.status_code ? ` ${a.status_code}` : ""} in ${ms(a.latency_ms)}${a.error ? ` — ${a.error}` : ""}` });
      }
    }
    steps.sort((a, b) => a.time - b.time);
    $("timeline-steps").replaceChildren(...steps.map((s) => el("li", { "data-step": s.kind, class: s.outcome || "" },
      el("time", {}, when(new Date(s.time).toISOString())), el("span", {}, s.text))));
    drawTimeline(event, steps, deliveries);
    $("event").hidden = false;
  }

  function drawTimeline(event, steps, deliveries) {
    const lanes = ["event", ...deliveries.map((d) => d.endpoint_id)];
    const width = 900, lane = 38, left = 200, right = 20, top = 30, axis = 22;
    const height = top + lanes.length * lane + axis;
    const times = steps.map((s) => s.time).concat(steps.map((s) => s.time + (s.latency || 0)));
    const start = Math.min(...times), end = Math.max(start + 1, ...times);
    const x = (t) => left + 12 + ((t - start) * (width - left - right - 12)) / (end - start);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, id: "timeline-svg", role: "img",
      "aria-label": `timeline of event ${event.id}` });
    [["received", "received"], ["classified", "classified"], ["routed", "routed"], ["ok", "attempt succeeded"],
      ["warn", "attempt to retry"], ["bad", "attempt failed"]].reduce((lx, [kind, label]) => {
      chart.append(kind.length > 4 ? svg("circle", { cx: lx + 6, cy: 10, r: 5, class: `step-${kind}` })
        : svg("rect", { x: lx + 3, y: 4, width: 7, height: 12, rx: 2, class: kind }));
      chart.append(svg("text", { x: lx + 16, y: 14, class: "axis" }, label));
      return lx + 40 + label.length * 6.5;
    }, left);
    lanes.forEach((name, i) => {
      const y = top + i * lane + lane / 2;
      chart.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, class: "grid" }));
      const label = i === 0 ? "event" : endpointName(name);
      chart.append(titled(svg("text", { x: left - 8, y: y + 4, "text-anchor": "end", class: "axis" },
        label.length > 28 ? `${label.slice(0, 27)}…` : label), name));
    });
    for (const s of steps) {
      const laneIndex = s.kind === "attempt" ? lanes.indexOf(s.lane) : 0;
      const y = top + laneIndex * lane + lane / 2;
      if (s.kind === "attempt") {
        const w = Math.max(3, x(s.time + s.latency) - x(s.time));
        chart.append(titled(svg("rect", { x: x(s.time), y: y - 9, width: w, height: 18, rx: 3,
          class: `mark ${s.outcome === "succeeded" ? "ok" : s.outcome === "retrying" ? "warn" : "bad"}`,
          "data-step": "attempt" }), s.text));
        chart.append(svg("text", { x: Math.min(x(s.time) + w / 2, width - right - 16), y: y - 12,
          "text-anchor": "middle", class: "axis" },
          `#${s.number}${s.status ? ` ${s.status}` : ""}`));
      } else {
        // The three may share one instant: spread them a little so each shows.
        const shift = { received: -7, classified: 0, routed: 7 }[s.kind];
        chart.append(titled(svg("circle", { cx: x(s.time) + shift, cy: y, r: 6, class: `mark step-${s.kind}`,
          "data-step": s.kind }), s.text));
      }
    }
    const elapsed = end - start;
    chart.append(svg("text", { x: left, y: height - 6, class: "axis" }, when(new Date(start).toISOString())));
    chart.append(svg("text", { x: width - right, y: height - 6, "text-anchor": "end", class: "axis" },
      `+${elapsed >= 1000 ? `${(elapsed / 1000).toFixed(1)} s` : `${elapsed.toFixed(0)} ms`}`));
    $("timeline").replaceChildren(chart);
  }

  // -- wiring -----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut());
    $("refresh").addEventListener("click", refresh);
    $("range").addEventListener("change", refresh);
    $("breakdown-by").addEventListener("change", () => loadBreakdown().catch(showError));
    $("event-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("event-id").value.trim();
      if (id) openEvent(id);
    });
    $("events-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadEvents(false).catch(showError);
    });
    $("events-more").addEventListener("click", () => loadEvents(true).catch(showError));
    $("replies-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadReplies(false).catch(showError);
    });
    $("replies-more").addEventListener("click", () => loadReplies(true).catch(showError));
    if (sessionStorage.getItem(KEY)) refresh();
    else signOut();
  });
})();
