// The Unanswered page: a question turned into a curated answer is marked in place, so the
// operator keeps their place in the list (the page is not reloaded; console.js made the call).

document.addEventListener("api:done", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !("curate" in form.dataset)) return;
  const cell = form.closest("td");
  const status = cell?.querySelector("[data-status]");
  form.closest("details")?.remove();
  if (status) {
    status.textContent = "Answered";
    status.focus();
  }
});
