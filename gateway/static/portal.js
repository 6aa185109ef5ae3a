// Switchboard's consumer portal: one customer ("application") manages its webhook endpoints.
//
// Security: the session token arrives in the URL's fragment (never sent to a server), is moved
// to sessionStorage and removed from the address bar, and is sent as "Authorization: Bearer"
// to /portal/api only. Everything the API returns (URLs, descriptions, payloads, receivers'
// answers) is attacker-controllable, so it reaches the DOM through textContent and
// createElement only, never innerHTML.
"use strict";

(() => {
  const KEY = "switchboard.portalToken";
  const $ = (id) => document.getElementById(id);
  let selected = null; // the endpoint shown in the detail panel
  let catalogue = []; // the tenant's event types, when it has a catalogue

  if (location.hash.length > 1) {
    sessionStorage.setItem(KEY, decodeURIComponent(location.hash.slice(1)));
    history.replaceState(null, "", location.pathname + location.search);
  }

  async function api(method, path, json) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, Accept: "application/json" };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    const reply = await fetch(new URL(`portal/api${path}`, document.baseURI), {
      method, headers, body: json === undefined ? undefined : JSON.stringify(json),
      credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
    });
    const text = await reply.text();
    let body = text;
    try { body = JSON.parse(text); } catch (_) { /* not JSON: shown as it is */ }
    if (!reply.ok) {
      const message = body && body.error ? body.error.message : String(body);
      throw new Error(`${reply.status}: ${message}`);
    }
    return body;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
    return node;
  }

  function showError(error) {
    $("error").textContent = error instanceof Error ? error.message : String(error);
    $("error").hidden = false;
  }

  function clearError() { $("error").hidden = true; }

  // Runs an action, showing its error instead of losing it.
  function guarded(action) {
    return async (event) => {
      if (event) event.preventDefault();
      clearError();
      try { await action(event); } catch (error) { showError(error); }
    };
  }

  const globs = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

  // -- endpoints ---------------------------------------------------------------------------

  async function loadEndpoints() {
    const { data } = await api("GET", "/endpoints");
    const rows = $("endpoints");
    rows.replaceChildren();
    for (const endpoint of data) {
      const row = el("tr", { "data-id": endpoint.id, tabindex: "0", class: "clickable" },
        el("td", {}, endpoint.url), el("td", {}, endpoint.description),
        el("td", {}, endpoint.event_types.length ? endpoint.event_types.join(", ") : "all"),
        el("td", {}, endpoint.enabled ? "enabled" : "disabled"));
      row.addEventListener("click", guarded(() => select(endpoint.id)));
      rows.append(row);
    }
    $("no-endpoints").hidden = data.length > 0;
    return data;
  }

  async function select(endpointId) {
    selected = await api("GET", `/endpoints/${encodeURIComponent(endpointId)}`);
    $("detail").hidden = false;
    $("detail-id").textContent = selected.id;
    $("edit-url").value = selected.url;
    $("edit-description").value = selected.description;
    $("edit-types").value = selected.event_types.join(", ");
    $("toggle").textContent = selected.enabled ? "Disable" : "Enable";
    $("secret").textContent = "••••••••";
    $("saved").hidden = true;
    $("delivery-detail").hidden = true;
    await loadDeliveries();
  }

  async function addEndpoint() {
    const ticked = [...document.querySelectorAll("#new-types input:checked")].map((box) => box.value);
    const created = await api("POST", "/endpoints", {
      url: $("new-url").value, description: $("new-description").value,
      event_types: [...ticked, ...globs($("new-globs").value)],
    });
    $("add-form").reset();
    await loadEndpoints();
    await select(created.id);
  }

  async function saveEndpoint() {
    selected = await api("PATCH", `/endpoints/${encodeURIComponent(selected.id)}`, {
      url: $("edit-url").value, description: $("edit-description").value, event_types: globs($("edit-types").value),
    });
    $("saved").hidden = false;
    await loadEndpoints();
  }

  async function toggleEndpoint() {
    const action = selected.enabled ? "disable" : "enable";
    await api("POST", `/endpoints/${encodeURIComponent(selected.id)}/${action}`);
    await loadEndpoints();
    await select(selected.id);
  }

  async function revealSecret() {
    const shown = await api("GET", `/endpoints/${encodeURIComponent(selected.id)}/secret`);
    $("secret").textContent = shown.secret || shown.public_key;
  }

  async function rotateSecret() {
    if (!confirm("Rotate the signing secret? The old one keeps signing beside the new one for a day.")) return;
    const rotated = await api("POST", `/endpoints/${encodeURIComponent(selected.id)}/rotate-secret`);
    $("secret").textContent = rotated.secret || rotated.public_key || "";
  }

  // -- deliveries --------------------------------------------------------------------------

  async function loadDeliveries() {
    const { data } = await api("GET", `/deliveries?endpoint_id=${encodeURIComponent(selected.id)}`);
    const rows = $("deliveries");
    rows.replaceChildren();
    for (const delivery of data) {
      const last = delivery.attempts[delivery.attempts.length - 1];
      const row = el("tr", { "data-id": delivery.id, "data-status": delivery.status, tabindex: "0", class: "clickable" },
        el("td", {}, when(delivery.created_at)), el("td", {}, delivery.event_id),
        el("td", { class: `status-${delivery.status}` }, delivery.status), el("td", {}, delivery.attempts.length),
        el("td", {}, last ? (last.status_code || last.error || "") : ""));
      row.addEventListener("click", guarded(() => showDelivery(delivery.id)));
      rows.append(row);
    }
  }

  async function sendTest() {
    await api("POST", `/endpoints/${encodeURIComponent(selected.id)}/test`);
    await loadDeliveries();
  }

  async function showDelivery(deliveryId) {
    const delivery = await api("GET", `/deliveries/${encodeURIComponent(deliveryId)}`);
    $("delivery-detail").hidden = false;
    $("delivery-detail").dataset.id = delivery.id;
    $("delivery-id").textContent = delivery.id;
    $("retry").hidden = delivery.status !== "failed";
    // The request's headers are the signature's, made anew for each attempt: the body is what was sent.
    // A body that is not text (a binary one) comes in base64, said as such.
    const body = delivery.request_body ?? (delivery.request_body_base64
      ? `(${delivery.request_content_type}, not text; in base64)\n${delivery.request_body_base64}` : "");
    $("delivery-request").textContent = `${delivery.event_type}\n\n${body}`;
    const attempts = $("attempts");
    attempts.replaceChildren();
    for (const attempt of delivery.attempts) {
      attempts.append(el("li", {},
        el("div", {}, `${when(attempt.started_at)}  ${attempt.outcome}  ${attempt.status_code || ""}  `
          + `${attempt.latency_ms} ms`),
        attempt.error ? el("div", { class: "error-text" }, attempt.error) : "",
        el("pre", { class: "response" }, attempt.response_excerpt)));
    }
  }

  async function retryDelivery() {
    const deliveryId = $("delivery-detail").dataset.id;
    await api("POST", `/deliveries/${encodeURIComponent(deliveryId)}/retry`);
    await loadDeliveries();
    await showDelivery(deliveryId);
  }

  // -- the event-type catalogue ---------------------------------------------------------------

  async function loadCatalogue() {
    ({ data: catalogue } = await api("GET", "/event-types"));
    const boxes = $("new-types");
    const list = $("catalogue");
    boxes.replaceChildren();
    list.replaceChildren();
    for (const type of catalogue) {
      boxes.append(el("label", { class: "type" }, el("input", { type: "checkbox", value: type.name }), ` ${type.name}`));
      list.append(el("dt", {}, type.name + (type.deprecated ? " (deprecated)" : "")),
        el("dd", {}, type.description || ""),
        type.example ? el("dd", {}, el("pre", {}, JSON.stringify(type.example, null, 2))) : "");
    }
    $("catalogue-panel").hidden = catalogue.length === 0;
  }

  async function start() {
    if (!sessionStorage.getItem(KEY)) {
      showError("This page needs a portal link from the service you use: ask them for a new one.");
      return;
    }
    const session = await api("GET", "/session");
    $("app-name").textContent = `${session.application_id} · until ${when(session.expires_at * 1000)}`;
    $("endpoints-panel").hidden = false;
    await loadCatalogue();
    await loadEndpoints();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("add-form").addEventListener("submit", guarded(addEndpoint));
    $("edit-form").addEventListener("submit", guarded(saveEndpoint));
    $("toggle").addEventListener("click", guarded(toggleEndpoint));
    $("reveal").addEventListener("click", guarded(revealSecret));
    $("rotate").addEventListener("click", guarded(rotateSecret));
    $("send-test").addEventListener("click", guarded(sendTest));
    $("reload-deliveries").addEventListener("click", guarded(loadDeliveries));
    $("retry").addEventListener("click", guarded(retryDelivery));
    guarded(start)();
  });
})();
