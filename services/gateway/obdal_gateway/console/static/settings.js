// Settings: a saved form keeps what it shows (the values just stored) and says so in its status line.
document.addEventListener("api:done", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.saved) return;
  const status = form.querySelector("[data-status]");
  if (status) status.textContent = form.dataset.saved;
});
document.addEventListener("input", (event) => {
  // An edited form's old "saved" line would be stale.
  const status = event.target.closest?.("form[data-saved]")?.querySelector("[data-status]");
  if (status) status.textContent = "";
});

// A new identity secret (the API's answer to the identity form): shown once, focused, never stored.
document.addEventListener("api:done", (event) => {
  const secret = event.detail && event.detail.identity_secret;
  if (typeof secret !== "string") return;
  const box = document.getElementById("identity-secret");
  document.getElementById("identity-secret-value").textContent = secret;
  document.getElementById("identity-state").textContent = "Identity verification is on.";
  box.hidden = false;
  box.focus();
});
