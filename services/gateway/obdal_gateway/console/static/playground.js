// Playground: ask the app as a customer would, over POST /v1/chat with the operator's session.
// The answer's server-sent events are read as they arrive (fetch's body reader: EventSource
// cannot POST) and shown as text; the next question continues the session the last one began.
import { api } from "./console.js";

const form = document.querySelector("[data-ask]");
const thread = document.querySelector("[data-thread]");
const status = document.querySelector("[data-chat-status]");
const failure = document.querySelector("[data-chat-error]");
let sessionId = null;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function turn(role, label, text) {
  const item = element("li", `turn ${role}`);
  const content = element("div", "content", text);
  item.append(element("p", "meta", label), content);
  thread.append(item);
  return { item, content };
}

/** Each `event:`/`data:` block of a server-sent event stream, as [event, parsed data]. */
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield [name, JSON.parse(data.join("\n"))]; // comments (pings) have none
    }
  }
}

function showSources(item, sources) {
  if (!sources.length) return;
  const list = element("ol", "sources");
  for (const source of sources) {
    const entry = element("li");
    const title = source.kind === "curated" ? `Curated answer${source.filename ? ` (from ${source.filename})` : ""}` : source.filename;
    entry.append(element("strong", "", title));
    const where = source.page ? `page ${source.page}, ` : "";
    entry.append(` (${where}score ${Number(source.score).toFixed(2)})`);
    entry.append(element("span", "snippet", source.snippet));
    list.append(entry);
  }
  item.append(element("p", "meta", "Sources"), list);
}

function showEnd(item, end) {
  sessionId = end.session_id;
  const usage = end.usage || {};
  const facts = [`${usage.total_tokens ?? 0} tokens`, `$${Number(usage.cost || 0).toFixed(6)}`, `session ${end.session_id}`];
  if (end.answered === false) facts.unshift("nothing in the documents answered this: declined");
  item.append(element("p", "meta", facts.join(" · ")));
}

async function ask(message) {
  turn("user", "You", message);
  const answer = turn("assistant", "Answer", "");
  status.textContent = "Answering…";
  const body = { message, stream: true };
  if (sessionId) body.session_id = sessionId;
  const response = await api("POST", "/v1/chat", body, { raw: true });
  let ended = false;
  for await (const [name, data] of events(response)) {
    if (name === "message") answer.content.append(data.content);
    else if (name === "sources") showSources(answer.item, data.sources || []);
    else if (name === "end") {
      showEnd(answer.item, data);
      ended = true;
    } else if (name === "error") throw new Error(data.message || "the answer failed");
  }
  if (!ended) throw new Error("the answer stopped before it was complete");
  status.textContent = `Answered${answer.content.textContent ? "" : " (no text)"}. Ask a follow-up, or start a new conversation.`;
}

if (form) {
  const field = form.elements.message;
  const button = form.querySelector('[type="submit"]');
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = field.value.trim();
    if (!message) return;
    failure.textContent = "";
    button.disabled = true;
    try {
      await ask(message);
      field.value = "";
    } catch (error) {
      status.textContent = "";
      failure.textContent = error.message;
    } finally {
      button.disabled = false;
      field.focus();
    }
  });
  // Enter asks, Shift+Enter is a new line (as in the widget).
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  document.querySelector("[data-new-conversation]").addEventListener("click", () => {
    sessionId = null;
    thread.replaceChildren();
    failure.textContent = "";
    status.textContent = "New conversation: the next question starts afresh.";
    field.focus();
  });
}
