// Documents: upload many files or whole folders with per-file progress, follow each new file's
// ingestion until it is ready or has failed, replace and delete. Every change is a call to
// /v1/files; every name and message is set as text (a file's name is whatever its uploader chose).
import { api } from "./console.js";

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
const tbody = document.querySelector("[data-files] tbody");
const empty = document.querySelector("[data-empty]");
const announcer = document.querySelector("[data-upload-status]");
const replaceInput = document.querySelector("[data-replace-input]");
const zone = document.querySelector("[data-dropzone]");
const editable = Boolean(zone);
const POLL_MS = 1500;
// Uploads in flight at once: enough to keep the line busy, few enough to show progress that moves.
const PARALLEL = 3;
// Up to this many unfinished files are polled one by one; more are read in one list call, so a
// dropped folder of hundreds does not spend the operator's rate limit.
const FEW = 4;
const FINAL = new Set(["ready", "failed"]);

const pending = new Map(); // file id -> its row, until ready or failed
let pollTimer = null;
const batch = { total: 0, ready: 0, failed: 0 };

const number = (n) => Number(n || 0).toLocaleString("en-US");

/** Bytes as the page's server-rendered rows write them (Jinja's filesizeformat). */
function size(bytes) {
  if (bytes < 1000) return bytes === 1 ? "1 Byte" : `${bytes} Bytes`;
  const units = ["kB", "MB", "GB", "TB"];
  let unit = 0;
  let value = bytes / 1000;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function element(tag, { className, text, data } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(data || {})) node.dataset[key] = value;
  return node;
}

const say = (message) => { if (announcer) announcer.textContent = message; };
const part = (row, name) => row.querySelector(`[data-${name}]`);
const nameOf = (row) => part(row, "name").textContent;

function showState(row, status, reason) {
  const badge = element("span", { className: `badge ${status}`, text: status });
  const cell = part(row, "state");
  cell.replaceChildren(badge);
  if (reason) cell.append(" ", element("span", { className: "reason", text: reason }));
  row.dataset.fileStatus = status;
}

function showProgress(row, fraction) {
  const cell = part(row, "state");
  let bar = cell.querySelector("progress");
  if (!bar) {
    bar = element("progress");
    bar.max = 100;
    bar.setAttribute("aria-label", `Uploading ${nameOf(row)}`);
    cell.replaceChildren(bar, " ", element("span", { data: { percent: "" } }));
  }
  const percent = Math.round(fraction * 100);
  bar.value = percent;
  cell.querySelector("[data-percent]").textContent = `Uploading ${percent}%`;
}

function actions(row, fileId) {
  const name = nameOf(row);
  const replace = element("button", { className: "secondary", text: "Replace", data: { replace: fileId } });
  const remove = element("button", {
    className: "danger",
    text: "Delete",
    data: { api: `/v1/files/${fileId}`, method: "DELETE", then: "event", confirm: `Delete ${name}? Chat can no longer cite it.` },
  });
  replace.type = remove.type = "button";
  replace.setAttribute("aria-label", `Replace ${name}`);
  remove.setAttribute("aria-label", `Delete ${name}`);
  part(row, "actions").replaceChildren(replace, " ", remove);
}

function newRow(name, bytes) {
  const row = element("tr");
  const heading = element("th", { text: name, data: { name: "" } });
  heading.scope = "row";
  row.append(
    heading,
    element("td", { data: { state: "" } }),
    element("td", { className: "num", text: "–", data: { chunks: "" } }),
    element("td", { className: "num", text: "–", data: { tokens: "" } }),
    element("td", { className: "num", text: size(bytes), data: { size: "" } }),
    element("td", { data: { uploaded: "" } }),
    element("td", { className: "actions", data: { actions: "" } }),
  );
  tbody.prepend(row);
  if (empty) empty.hidden = true;
  return row;
}

/** A row as the API now shows its file. */
function update(row, file) {
  row.dataset.fileId = file.file_id;
  part(row, "name").textContent = file.filename;
  const working = file.status === "processing" && file.progress ? `${file.progress}% done` : "";
  showState(row, file.status, file.status === "failed" ? file.error || "the file could not be ingested" : working);
  part(row, "chunks").textContent = number(file.chunks);
  part(row, "tokens").textContent = number(file.tokens);
  part(row, "size").textContent = size(file.size);
  const time = element("time", { text: file.created_at.slice(0, 16).replace("T", " ") });
  time.dateTime = file.created_at;
  part(row, "uploaded").replaceChildren(time);
}

function tally() {
  if (!batch.total) return;
  const waiting = batch.total - batch.ready - batch.failed;
  const files = batch.total === 1 ? "1 file" : `${batch.total} files`;
  say(`${files}: ${batch.ready} ready, ${batch.failed} failed${waiting ? `, ${waiting} still in progress` : ""}.`);
}

function settle(status) {
  if (status === "ready") batch.ready += 1;
  else batch.failed += 1;
  tally();
}

function follow(row, fileId) {
  pending.set(fileId, row);
  if (!pollTimer) pollTimer = setTimeout(poll, POLL_MS);
}

async function current() {
  if (pending.size > FEW) return (await api("GET", "/v1/files")).files;
  const one = (id) => api("GET", `/v1/files/${encodeURIComponent(id)}`).catch((error) => {
    if (error.status === 404) return null; // deleted meanwhile
    throw error;
  });
  return (await Promise.all([...pending.keys()].map(one))).filter(Boolean);
}

async function poll() {
  pollTimer = null;
  try {
    const byId = new Map((await current()).map((file) => [file.file_id, file]));
    for (const [id, row] of pending) {
      const file = byId.get(id);
      if (!file) {
        pending.delete(id);
        continue;
      }
      update(row, file);
      if (FINAL.has(file.status)) {
        pending.delete(id);
        if (row.dataset.counted) settle(file.status);
      }
    }
  } catch (error) {
    say(`Could not check the files' status: ${error.message}. Trying again.`);
  }
  if (pending.size) pollTimer = setTimeout(poll, POLL_MS);
}

/** POST or PUT one file as multipart field "file", with upload progress (fetch has none). */
function send(method, path, file, row) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.setRequestHeader("X-CSRF-Token", meta("csrf-token"));
    xhr.setRequestHeader("Obdal-App", meta("obdal-app"));
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) showProgress(row, event.loaded / event.total); };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else if (xhr.status === 413 && !data?.error) reject(new Error("the file is too large to upload"));
      else reject(new Error(data?.error?.message || `${xhr.status} ${xhr.statusText}`));
    };
    xhr.onerror = () => reject(new Error("the upload did not reach the server (connection lost)"));
    const body = new FormData();
    body.append("file", file, file.name);
    showProgress(row, 0);
    xhr.send(body);
  });
}

async function uploadOne(file) {
  const row = newRow(file.name, file.size);
  row.dataset.counted = "yes";
  try {
    const accepted = await send("POST", "/v1/files", file, row);
    const existing = tbody.querySelector(`tr[data-file-id="${CSS.escape(accepted.file_id)}"]`);
    if (accepted.duplicate && existing) {
      // The app already has this content: one row for it, not two.
      row.remove();
      batch.total -= 1;
      say(`${file.name} is already here, as ${nameOf(existing)}.`);
      return;
    }
    row.dataset.fileId = accepted.file_id;
    part(row, "name").textContent = accepted.filename;
    showState(row, accepted.status);
    actions(row, accepted.file_id);
    if (FINAL.has(accepted.status)) settle(accepted.status);
    else follow(row, accepted.file_id);
  } catch (error) {
    showState(row, "failed", error.message);
    settle("failed");
  }
}

async function uploadAll(files) {
  const queue = [...files];
  if (!queue.length) return;
  if (!pending.size && batch.total === batch.ready + batch.failed) Object.assign(batch, { total: 0, ready: 0, failed: 0 });
  batch.total += queue.length;
  say(`Uploading ${queue.length === 1 ? "1 file" : `${queue.length} files`}.`);
  const worker = async () => { while (queue.length) await uploadOne(queue.shift()); };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
  tally();
}

// A folder's hidden files (.DS_Store, .git) are not documents.
const hidden = (path) => path.split("/").some((segment) => segment.startsWith("."));

async function walk(entry, out) {
  if (hidden(entry.name)) return;
  if (entry.isFile) {
    out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      // readEntries answers in batches (100 in Chromium) until an empty one.
      const children = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!children.length) break;
      for (const child of children) await walk(child, out);
    }
  }
}

/** The files of a drop, folders walked. Entries must be taken before the first await. */
async function dropped(transfer) {
  const entries = [...transfer.items].filter((item) => item.kind === "file").map((item) => item.webkitGetAsEntry?.());
  if (!entries.length || entries.some((entry) => !entry)) return [...transfer.files];
  const files = [];
  for (const entry of entries) await walk(entry, files);
  return files;
}

if (editable) {
  for (const picker of document.querySelectorAll("[data-pick]")) {
    picker.addEventListener("change", () => {
      const files = [...picker.files].filter((file) => !hidden(file.webkitRelativePath || ""));
      picker.value = "";
      uploadAll(files);
    });
  }
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    dropped(event.dataTransfer).then(uploadAll, (error) => say(`Could not read what was dropped: ${error.message}`));
  });
  // A file dropped beside the zone would otherwise replace the page with itself.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  let replacing = null;
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-replace]");
    if (!button) return;
    replacing = button.closest("tr");
    replaceInput.click();
  });
  replaceInput.addEventListener("change", async () => {
    const file = replaceInput.files[0];
    const row = replacing;
    replaceInput.value = "";
    if (!file || !row) return;
    const before = row.dataset.fileStatus;
    try {
      const accepted = await send("PUT", `/v1/files/${encodeURIComponent(row.dataset.fileId)}`, file, row);
      part(row, "name").textContent = accepted.filename;
      showState(row, accepted.status);
      say(`Replacing ${accepted.filename}.`);
      delete row.dataset.counted;
      follow(row, row.dataset.fileId);
    } catch (error) {
      // The file's current version is still there and still answers.
      showState(row, before, `The replacement was refused: ${error.message}`);
    }
  });

  document.addEventListener("api:done", (event) => {
    const row = event.target.closest?.("tr[data-file-id]");
    if (!row) return;
    pending.delete(row.dataset.fileId);
    const name = nameOf(row);
    row.remove();
    if (empty && !tbody.rows.length) empty.hidden = false;
    say(`Deleted ${name}.`);
    // The button that had the focus is gone: the page's heading takes it, not the document's end.
    const heading = document.querySelector("h1");
    heading.tabIndex = -1;
    heading.focus();
  });
}

// Files still being ingested when the page was loaded are followed too.
for (const row of tbody.querySelectorAll("tr[data-file-id]")) {
  if (!FINAL.has(row.dataset.fileStatus)) follow(row, row.dataset.fileId);
}
