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
