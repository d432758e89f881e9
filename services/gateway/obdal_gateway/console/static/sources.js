// Websites: the add form's re-sync choice, and a source that is queued or syncing followed every
// 2 s until it is ready or has failed (its status in words, as pages/sources.py words it). Every
// change is a call to /v1/sources; every URL, title and message is set as text (a site chooses them).
import { api } from "./console.js";

const POLL_MS = 2000;
const FINAL = new Set(["ready", "failed"]);
// What a sync's figures mean, in the order the pages show them (pages/sources.py FIGURES).
const FIGURES = [
  ["found", "found"], ["indexed", "indexed"], ["unchanged", "unchanged"], ["duplicate", "duplicates"],
  ["failed", "failed"], ["blocked", "blocked"], ["removed", "removed"],
];

const number = (n) => Number(n || 0).toLocaleString("en-US");
const pages = (n) => (n === 1 ? "1 page" : `${number(n)} pages`);

function ago(iso) {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  for (const [size, unit] of [[86400, "day"], [3600, "hour"], [60, "minute"]]) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "just now";
}

function words(source) {
  if (source.status === "queued") return "Queued: the sync starts in a moment";
  if (source.status === "syncing") return `Syncing: ${pages(source.progress?.found || 0)} so far`;
  if (source.status === "failed") return `Failed: ${source.error || "the sync did not finish"}`;
  const synced = source.last_sync_at ? `, synced ${ago(source.last_sync_at)}` : "";
  return `Ready: ${pages(source.pages)}${synced}`;
}

function element(tag, { className, text } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A timestamp as the templates' at() shows it, or ``empty``. */
function at(cell, iso, empty) {
  if (!cell) return;
  if (!iso) {
    cell.textContent = empty;
    return;
  }
  const time = element("time", { text: iso.slice(0, 16).replace("T", " ") });
  time.dateTime = iso;
  cell.replaceChildren(time, " UTC");
}

/** An address as a link that gives the site neither this page nor a handle on it; else text. */
function address(url, text) {
  if (!/^https?:\/\//i.test(url)) return document.createTextNode(text);
  const link = element("a", { text });
  link.href = url;
  link.rel = "noopener noreferrer";
  return link;
}

function badge(status) {
  return element("span", { className: `badge ${status}`, text: status });
}

const part = (root, name) => root.querySelector(`[data-${name}]`);

/** Show ``source`` in ``root`` (a list row or the source page's section); true once it is final. */
function show(root, source) {
  part(root, "words").textContent = words(source);
  root.dataset.sourceStatus = source.status;
  at(part(root, "last-sync"), source.last_sync_at, "never");
  at(part(root, "next-sync"), source.next_sync_at, "not scheduled");
  const figures = part(root, "figures");
  if (figures) {
    const s = source.last_sync;
    if (s) {
      const listed = FIGURES.map(([key, label]) => `${number(s[key])} ${label}`).join(", ");
      figures.textContent = `${listed} (${number(s.requests)} requests)`;
    }
  }
  return FINAL.has(source.status);
}

function say(message) {
  const status = document.querySelector("[data-sync-status]");
  if (status) status.textContent = message;
}

// --- the list of websites ------------------------------------------------------------------

async function pollList() {
  let finished = true;
  try {
    const byId = new Map((await api("GET", "/v1/sources")).sources.map((s) => [s.source_id, s]));
    for (const row of document.querySelectorAll("[data-sources] tr[data-source-id]")) {
      const source = byId.get(row.dataset.sourceId);
      if (!source) continue;
      const before = row.dataset.sourceStatus;
      finished = show(row, source) && finished;
      if (before !== source.status) say(`${source.url}: ${words(source)}.`);
    }
  } catch (error) {
    finished = false;
    say(`Could not check the websites' status: ${error.message}. Trying again.`);
  }
  if (!finished) setTimeout(pollList, POLL_MS);
}

const form = document.querySelector("[data-add-source]");
if (form) {
  // The API takes one "resync" field: off, daily, weekly, or the cron expression typed.
  const choice = form.querySelector("[data-resync-choice]");
  const cronLabel = form.querySelector("[data-resync-cron]");
  const cron = form.querySelector("[data-resync-cron-input]");
  const resync = form.elements.namedItem("resync");
  const sync = () => {
    const custom = choice.value === "custom";
    cronLabel.hidden = !custom;
    cron.required = custom;
    resync.value = custom ? cron.value.trim() : choice.value;
  };
  choice.addEventListener("change", sync);
  cron.addEventListener("input", sync);
  sync();
}
// The page after adding one says so; the focus takes it there.
document.querySelector("[data-added]")?.focus();

const rows = [...document.querySelectorAll("[data-sources] tr[data-source-id]")];
if (rows.some((row) => !FINAL.has(row.dataset.sourceStatus))) setTimeout(pollList, POLL_MS);

// --- one website -----------------------------------------------------------------------------

const section = document.querySelector("section[data-source]");

function showSource(source) {
  const done = show(section, source);
  part(section, "pages").textContent = number(source.pages);
  at(part(section, "last-started"), source.last_sync_started_at, "never");
  const s = source.last_sync;
  for (const cell of document.querySelectorAll("[data-stat]")) cell.textContent = s ? number(s[cell.dataset.stat]) : "–";
  const errors = source.errors.map((e) => {
    const item = element("li");
    item.append(address(e.url, e.url), `: ${e.message} `, element("code", { text: e.code }));
    return item;
  });
  document.querySelector("[data-errors]").replaceChildren(...errors);
  document.querySelector("[data-no-errors]").hidden = errors.length > 0;
  const syncNow = part(section, "sync-now");
  if (syncNow) {
    syncNow.disabled = !done;
    part(section, "sync-note").textContent = done
      ? "Reads the site again now; unchanged pages cost one request each."
      : "A sync is under way: Sync now is available again when it ends.";
    part(section, "delete-source").dataset.confirm =
      `Delete the website ${source.url} and its ${number(source.pages)} pages? Chat can no longer cite them.`;
  }
  return done;
}

/** The first page of the source's pages again (a later page, opened by its cursor, stays as it is). */
async function refreshPages() {
  const table = document.querySelector("[data-pages-table]");
  const body = table.tBodies[0];
  if ("paged" in body.dataset) return;
  const query = new URLSearchParams({ limit: table.dataset.limit });
  const listed = await api("GET", `/v1/sources/${encodeURIComponent(section.dataset.sourceId)}/pages?${query}`);
  body.replaceChildren(...listed.pages.map((p) => {
    const row = element("tr");
    const heading = element("th");
    heading.scope = "row";
    heading.append(address(p.url, p.title || p.url));
    const state = element("td");
    state.append(badge(p.status));
    if (p.error) state.append(" ", element("span", { className: "reason", text: p.error }));
    const seen = element("td");
    const changed = element("td");
    at(seen, p.last_seen_at, "");
    at(changed, p.changed_at, "");
    row.append(heading, state, seen, changed);
    return row;
  }));
  document.querySelector("[data-no-pages]").hidden = listed.pages.length > 0;
  const pager = document.querySelector("[data-pager]");
  if (listed.next_cursor) {
    const next = element("a", { text: "Next page" });
    next.href = `?${new URLSearchParams({ cursor: listed.next_cursor })}`;
    next.rel = "next";
    pager.replaceChildren(next);
  } else pager.replaceChildren();
}

let following = false;

async function pollSource() {
  let done = false;
  try {
    const source = await api("GET", `/v1/sources/${encodeURIComponent(section.dataset.sourceId)}`);
    const before = section.dataset.sourceStatus;
    done = showSource(source);
    if (done) await refreshPages();
    if (before !== source.status) say(`${words(source)}.`);
  } catch (error) {
    say(`Could not check the website's status: ${error.message}. Trying again.`);
  }
  following = !done;
  if (following) setTimeout(pollSource, POLL_MS);
}

function followSource() {
  if (following) return;
  following = true;
  setTimeout(pollSource, POLL_MS);
}

if (section) {
  if (!FINAL.has(section.dataset.sourceStatus)) followSource();
  section.addEventListener("api:done", (event) => {
    if (!("syncNow" in event.target.dataset)) return;
    // console.js enables its button again once this event has run: show the queued sync after that.
    queueMicrotask(() => {
      showSource(event.detail);
      say(`${words(event.detail)}.`);
      followSource();
    });
  });
}
