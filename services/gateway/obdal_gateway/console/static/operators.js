// Operators: the add and set-role forms send their app and role as one entry of `roles`
// ({"app_…": "viewer"}, or null to take a role back), which a flat form cannot say.
import { api, formBody } from "./console.js";

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !("operatorForm" in form.dataset)) return;
  event.preventDefault();
  const { app, role, ...body } = formBody(form);
  body.roles = { [app]: role || null };
  const button = form.querySelector('[type="submit"]');
  const error = form.querySelector("[data-error]");
  error.textContent = "";
  button.disabled = true;
  try {
    await api(form.dataset.method, form.dataset.path, body);
    location.reload();
  } catch (failure) {
    error.textContent = failure.message;
    error.focus();
  } finally {
    button.disabled = false;
  }
});
