// Webhooks: add an endpoint and show its signing secret once (from the API's answer: never stored,
// never rendered by the server), show a rotation's new secret the same way, and on an endpoint's
// page follow its pending deliveries (a replay makes one) every 2 s for a while. Everything else is
// console.js's data-api buttons and forms. URLs, messages and ids are set as text.
import { api, formBody } from "./console.js";

const POLL_MS = 2000;
const MOST_POLLS = 60; // two minutes; a receiver down for longer is retried for a day (reload)
// What a refusal means, before the API's own words (docs/webhooks.md#outbound-safety).
const REFUSALS = {
  private_address: "Obdal does not post to private or internal addresses.",
  scheme_not_allowed: "That kind of address is not allowed.",
  credentials_in_url: "Leave the user name and password out of the address.",
  unresolvable: "That host name could not be found.",
  invalid_url: "That is not a web address.",
  invalid_webhook: "The endpoint was refused.",
  too_many_webhooks: "This app has as many endpoints as it may have: delete one first.",
  role_forbids: "Your role on this app may not manage webhooks.",
};
const URL_CODES = new Set(["private_address", "scheme_not_allowed", "credentials_in_url", "unresolvable", "invalid_url"]);

function element(tag, { className, text } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A timestamp as the templates show it: to the minute, or (``seconds``) to the second. */
function time(iso, seconds = false) {
  const node = element("time", { text: iso.slice(0, seconds ? 19 : 16).replace("T", " ") });
  node.dateTime = iso;
  return node;
}

// --- the signing secret, once ---------------------------------------------------------------

const box = document.getElementById("new-secret");

function showSecret(endpoint, rotated) {
  const until = endpoint.secrets.map((s) => s.expires_at).filter(Boolean).sort().pop();
  const about = box.querySelector("[data-secret-for]");
  if (rotated && until) about.replaceChildren(`A new secret for ${endpoint.url}. The old one keeps signing beside it until `, time(until), " UTC.");
  else if (rotated) about.textContent = `A new secret for ${endpoint.url}. The old one no longer signs.`;
  else about.textContent = `Added ${endpoint.url}.`;
  document.getElementById("secret-value").textContent = endpoint.secret;
  for (const button of box.querySelectorAll("[data-copy]")) button.textContent = button.dataset.label;
  box.hidden = false;
  box.focus();
}

const form = document.getElementById("add-webhook");
if (form) {
  const error = document.getElementById("add-error");
  const url = form.elements.namedItem("url");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    url.removeAttribute("aria-invalid");
    const button = form.querySelector('[type="submit"]');
    button.disabled = true;
    try {
      const created = await api("POST", "/v1/webhooks", formBody(form));
      form.reset();
      showSecret(created, false);
    } catch (e) {
      const lead = REFUSALS[e.code];
      error.replaceChildren(...(lead ? [element("strong", { text: lead }), " "] : []), e.message);
      if (URL_CODES.has(e.code) || (e.code === "invalid_webhook" && e.message.startsWith("url"))) {
        url.setAttribute("aria-invalid", "true");
      }
      error.focus();
    } finally {
      button.disabled = false;
    }
  });
}

// --- an endpoint's delivery log -------------------------------------------------------------

const table = document.querySelector("[data-deliveries]");
const section = document.querySelector("[data-endpoint]");

function say(message) {
  const status = document.querySelector("[data-status]");
  if (status) status.textContent = message;
}

/** An attempt's outcome as pages/webhooks.py attempt_words words it. */
function attemptWords(a) {
  const answer = a.status_code !== null ? `HTTP ${a.status_code}` : "no answer";
  const words = `${answer} in ${Math.round(a.latency_ms).toLocaleString("en-US")} ms`;
  return a.error ? `${words}: ${a.error}` : words;
}

function showDelivery(row, d) {
  row.dataset.state = d.state;
  const badge = row.querySelector("[data-badge]");
  badge.className = `badge ${d.state}`;
  badge.textContent = d.state;
  const attempts = row.querySelector("[data-attempts]");
  if (d.attempts.length) {
    const list = element("ol", { className: "attempts" });
    for (const a of d.attempts) {
      const item = element("li");
      item.append(time(a.at, true), ` UTC: ${attemptWords(a)}`);
      list.append(item);
    }
    attempts.replaceChildren(list);
  } else attempts.textContent = "none yet";
  const next = row.querySelector("[data-next]");
  if (d.next_attempt_at) next.replaceChildren(time(d.next_attempt_at), " UTC");
  else next.textContent = "–";
}

const pending = () => [...table.querySelectorAll("tr[data-delivery-id]")].filter((r) => r.dataset.state === "pending");
let polls = 0;
let following = false;

/** The page's own query again (its state filter and cursor): each pending row as it stands now. */
async function poll() {
  polls += 1;
  try {
    const query = new URLSearchParams(location.search);
    query.set("limit", table.dataset.limit);
    for (const [key, value] of [...query]) if (!value) query.delete(key);
    const path = `/v1/webhooks/${encodeURIComponent(section.dataset.endpointId)}/deliveries?${query}`;
    const byId = new Map((await api("GET", path)).deliveries.map((d) => [d.delivery_id, d]));
    for (const row of pending()) {
      const d = byId.get(row.dataset.deliveryId);
      if (!d) continue;
      showDelivery(row, d);
      if (d.state !== "pending") say(`${d.type} (${d.event_id}): ${d.state}.`);
    }
  } catch (error) {
    say(`Could not check the deliveries: ${error.message}. Trying again.`);
  }
  following = pending().length > 0 && polls < MOST_POLLS;
  if (following) setTimeout(poll, POLL_MS);
}

function follow() {
  if (following || !table || !section) return;
  polls = 0;
  following = true;
  setTimeout(poll, POLL_MS);
}

if (table && pending().length) follow();

// A rotation (a data-then="event" form) answers with the new secret; a replay with the delivery.
document.addEventListener("api:done", (event) => {
  const target = event.target;
  if ("rotate" in target.dataset && typeof event.detail?.secret === "string") showSecret(event.detail, true);
  if ("replay" in target.dataset && event.detail) {
    const d = event.detail;
    showDelivery(target.closest("tr"), d);
    say(`Sent ${d.type} (${d.event_id}) again, with the same webhook-id.`);
    follow();
  }
});
