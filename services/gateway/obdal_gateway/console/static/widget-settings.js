// The Widget page: the preview follows the form as it is typed, and the embed tag follows the
// chosen key. Saving is console.js's data-api form.
import { formBody } from "./console.js";

const form = document.getElementById("widget-form");
const frame = document.getElementById("widget-preview");
const PREVIEW = frame.getAttribute("src").split("?")[0];
let pending = 0;

// Saved: said, and the form keeps what was typed (console.js's "say:" would reset it to the
// values the page was rendered with).
form.addEventListener("api:done", () => {
  document.getElementById("widget-saved").textContent = "Saved. Widgets use these settings from their next page load.";
});

// Reloading the frame on every keystroke would flicker: once typing pauses.
form.addEventListener("input", () => {
  document.getElementById("widget-saved").textContent = "";
  clearTimeout(pending);
  pending = setTimeout(() => {
    const look = formBody(form);
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(look)) if (typeof value === "string" && value) query.set(name, value);
    frame.src = `${PREVIEW}?${query}`;
  }, 250);
});

const select = document.getElementById("snippet-key");
const secret = document.getElementById("snippet-secret");
const snippet = document.getElementById("snippet");
const note = document.getElementById("snippet-note");
const KEY = /^obd_pk_([A-Za-z0-9]{16})_[A-Za-z0-9]{32}$/;

/** The tag for the chosen key: whole when its secret was pasted, else with the secret left out. */
function updateSnippet() {
  const pasted = secret.value.trim();
  const match = KEY.exec(pasted);
  if (match && [...select.options].some((o) => o.value === match[1])) select.value = match[1];
  const whole = match && match[1] === select.value;
  const key = whole ? pasted : `obd_pk_${select.value}_…`;
  snippet.textContent = `<script src="${location.origin}/widget.js" data-key="${key}" async></script>`;
  note.textContent = pasted && !whole ? "That is not one of this app's publishable keys." : "";
  document.querySelector('[data-copy="snippet"]').textContent = "Copy the tag";
}

if (select) {
  select.addEventListener("change", updateSnippet);
  secret.addEventListener("input", updateSnippet);
  updateSnippet();
}
