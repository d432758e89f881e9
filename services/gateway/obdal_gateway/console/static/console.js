// The console's behaviour: every change is a call to Obdal's own HTTP API, made here with the
// session's CSRF token (and, on an app's pages, the app in the Obdal-App header). Plain module
// script, no framework, no inline handlers (the pages' Content-Security-Policy forbids them).

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";

/** Call the API as the signed-in operator; resolves to the JSON body, rejects with its error. */
export async function api(method, path, body, { headers = {}, raw = false } = {}) {
  const init = { method, credentials: "same-origin", headers: { ...headers } };
  const csrf = meta("csrf-token");
  const app = meta("obdal-app");
  if (csrf) init.headers["X-CSRF-Token"] = csrf;
  if (app && !init.headers["Obdal-App"]) init.headers["Obdal-App"] = app;
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (raw && response.ok) return response;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/v1/console/sign-in") && !path.startsWith("/v1/console/setup")) {
      location.assign(`/console/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    const error = new Error(data?.error?.message || `${response.status} ${response.statusText}`);
    error.code = data?.error?.code || "error";
    error.status = response.status;
    throw error;
  }
  return data;
}

// A source-file select is sent with only its current choice; the page's files (one
// <template id="file-options">) join it when it is first used, by keyboard or pointer.
function fillFileOptions(event) {
  const select = event.target;
  if (!(select instanceof HTMLSelectElement) || !("fileOptions" in select.dataset) || "filled" in select.dataset) return;
  select.dataset.filled = "";
  const template = document.getElementById("file-options");
  if (!template) return;
  const chosen = select.value;
  const none = select.querySelector('option[value=""]');
  select.replaceChildren(...(none ? [none] : []), template.content.cloneNode(true));
  select.value = chosen;
}
document.addEventListener("focusin", fillFileOptions);
document.addEventListener("pointerdown", fillFileOptions);

/** A form's fields as the JSON body of its API call. Field hints: data-type="number|lines|json|bool",
 * empty values left out unless data-keep-empty (then sent as null). */
export function formBody(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled || field.type === "submit") continue;
    if ((field.type === "checkbox" || field.type === "radio") && field.dataset.type !== "bool" && !field.checked) continue;
    const type = field.dataset.type;
    let value = field.value;
    if (type === "bool") value = field.checked;
    else if (value === "") {
      if (!("keepEmpty" in field.dataset)) continue;
      value = null;
    } else if (type === "number") value = Number(value);
    else if (type === "lines") value = value.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
    else if (type === "json") value = JSON.parse(value);
    if (field.type === "checkbox" && field.dataset.type === "list") {
      (body[field.name] ||= []).push(value);
      continue;
    }
    body[field.name] = value;
  }
  for (const field of form.querySelectorAll('input[type="checkbox"][data-type="list"]')) body[field.name] ||= [];
  return body;
}

const fill = (template, data) => template.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(data?.[k] ?? ""));

/** What a form or button does after its call succeeded: data-then="reload" (the default),
 * "go:/path/{field}", "say:message" (into its [data-status]) or "event" (a "api:done" event). */
function after(element, data) {
  const then = element.dataset.then || "reload";
  if (then === "reload") location.reload();
  else if (then.startsWith("go:")) location.assign(fill(then.slice(3), data));
  else if (then.startsWith("say:")) {
    const status = element.querySelector("[data-status]") || document.querySelector("[data-status]");
    if (status) status.textContent = then.slice(4);
    if (element instanceof HTMLFormElement) element.reset();
  }
  element.dispatchEvent(new CustomEvent("api:done", { bubbles: true, detail: data }));
}

// The error box nearest the control: its own, else the first in the closest ancestor that has one.
function showError(element, error) {
  let target = null;
  for (let node = element; node && !target; node = node.parentElement) target = node.querySelector("[data-error]");
  if (target) {
    target.textContent = error.message;
    target.focus?.();
  } else alert(error.message);
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
  event.preventDefault();
  if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
  const button = form.querySelector('[type="submit"]');
  const errorBox = form.querySelector("[data-error]");
  if (errorBox) errorBox.textContent = "";
  if (button) button.disabled = true;
  try {
    let body;
    try { body = formBody(form); } catch (e) { throw new Error(`not valid JSON: ${e.message}`); }
    const data = await api(form.dataset.method || "POST", fill(form.dataset.api, {}), body);
    after(form, data);
  } catch (error) {
    showError(form, error);
  } finally {
    if (button) button.disabled = false;
  }
});

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-api]");
  if (button) {
    if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
      after(button, await api(button.dataset.method || "POST", button.dataset.api, body));
    } catch (error) {
      showError(button, error);
    } finally {
      button.disabled = false;
    }
    return;
  }
  const copy = event.target.closest("button[data-copy]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copy);
    const text = source ? (source.value ?? source.textContent) : "";
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
    } catch {
      if (source?.select) source.select();
      copy.textContent = "Press Ctrl+C to copy";
    }
    return;
  }
  if (event.target.closest("[data-sign-out]")) {
    try { await api("POST", "/v1/console/sign-out"); } finally { location.assign("/console/sign-in"); }
  }
});

// Page-specific behaviour lives in modules named by the page: <body data-module="documents">.
const module = document.body?.dataset.module;
if (module && /^[a-z-]+$/.test(module)) import(`./${module}.js`);
