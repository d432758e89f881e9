// The Keys page: create a key (its secret shown once, never stored) and show the new secret of a
// rotation. Everything else on the page is console.js's data-api forms and buttons.
import { api, formBody } from "./console.js";

const form = document.getElementById("create-key");
const kind = document.getElementById("key-kind");
const box = document.getElementById("new-secret");
const error = document.getElementById("create-error");
const origins = document.getElementById("new-origins");

/** The secret from the API's answer, in the highlighted box, once: a reload forgets it. */
function showSecret(secret) {
  document.getElementById("secret-value").textContent = secret;
  for (const button of box.querySelectorAll("[data-copy]")) button.textContent = button.dataset.label;
  const publishable = secret.startsWith("obd_pk_");
  document.getElementById("new-snippet").hidden = !publishable;
  document.getElementById("new-snippet-code").textContent = publishable
    ? `<script src="${location.origin}/widget.js" data-key="${secret}" async></script>`
    : "";
  box.hidden = false;
  box.focus();
}

// Publishable keys may only chat: the other scopes are not offered; proof of work is theirs only.
function followKind() {
  const publishable = kind.value === "publishable";
  document.getElementById("key-pow").disabled = !publishable;
  for (const input of form.querySelectorAll('input[name="scopes"]')) {
    const allowed = !publishable || "publishable" in input.dataset;
    input.disabled = !allowed;
    if (publishable) input.checked = allowed;
  }
}

kind.addEventListener("change", followKind);
followKind();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  origins.removeAttribute("aria-invalid");
  const button = form.querySelector('[type="submit"]');
  button.disabled = true;
  try {
    const body = formBody(form);
    // A date input gives a day; the API takes an instant with its timezone.
    if (body.expires_at) body.expires_at = `${body.expires_at}T00:00:00Z`;
    const created = await api("POST", `/v1/admin/apps/${encodeURIComponent(form.dataset.app)}/keys`, body);
    form.reset();
    followKind();
    showSecret(created.key);
  } catch (e) {
    error.textContent = e.message;
    if (e.code === "invalid_origin") {
      origins.setAttribute("aria-invalid", "true");
      origins.focus();
    } else error.focus();
  } finally {
    button.disabled = false;
  }
});

// A rotation (console.js's data-then="event" form) answers with the new secret.
document.addEventListener("api:done", (event) => {
  if (event.detail && typeof event.detail.key === "string") showSecret(event.detail.key);
});
