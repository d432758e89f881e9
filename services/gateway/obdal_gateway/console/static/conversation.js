// A conversation: a person's reply, once the API stored it (a data-then="event" form), joins the
// thread from the page's <template>, set as text; the reply box is emptied and keeps the focus,
// and the status line says it was sent. Anything else on the page reloads it (console.js).
document.addEventListener("api:done", (event) => {
  const form = event.target;
  const reply = event.detail;
  if (!(form instanceof HTMLFormElement) || !("reply" in form.dataset) || !reply) return;
  const turn = document.getElementById("agent-turn").content.firstElementChild.cloneNode(true);
  turn.querySelector("[data-name]").textContent = reply.name || "A person";
  const when = turn.querySelector("[data-when]");
  when.dateTime = reply.timestamp;
  when.textContent = String(reply.timestamp).slice(0, 16).replace("T", " ");
  turn.querySelector("[data-content]").textContent = reply.content;
  document.getElementById("thread").append(turn);
  const box = form.elements.namedItem("content");
  box.value = "";
  form.querySelector("[data-status]").textContent = `Reply sent${reply.name ? ` as ${reply.name}` : ""}.`;
  box.focus();
});
document.addEventListener("input", (event) => {
  // A new reply being typed: the old "sent" line would be stale.
  const status = event.target.closest?.("form[data-reply]")?.querySelector("[data-status]");
  if (status) status.textContent = "";
});
