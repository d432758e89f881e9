/* Obdal chat widget: <script src="https://HOST/widget.js" data-key="obd_pk_…" async></script>
 * Options: the app's widget settings (GET /v1/widget/config), each overridden by its data-*
 * attribute: title, greeting, color, position (right|left), placeholder. data-preview shows the
 * open panel without a key (the console's preview). data-user-id and data-user-hash (the site's
 * backend signs the id, docs/identity.md) name a verified end user, whose conversation follows
 * them to another device. When the app turned handoff on (docs/handoff.md), the customer can ask
 * for a person and read their replies here (an EventSource on the session's events).
 * Renders in a Shadow DOM; streams answers over fetch + SSE; never renders HTML it receives. */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[src*='widget.js'][data-key]");
  if (!script || window.__obdalWidget) return;
  window.__obdalWidget = true;

  var data = script.dataset;
  var apiBase = new URL(script.src, location.href).origin;
  var key = data.key || "";
  var preview = "preview" in data;
  var user = data.userId && data.userHash ? { user: data.userId, user_hash: data.userHash } : null;
  var COLOR = /^(#[0-9a-f]{3,8}|[a-z]{3,20})$/i;

  // The app's settings, at most 3 s late; without them (refused origin, gateway down) the
  // defaults, and the first question says what is wrong.
  async function settings() {
    if (preview || !key) return {};
    try {
      var response = await fetch(apiBase + "/v1/widget/config", {
        headers: { "Authorization": "Bearer " + key }, cache: "no-store", signal: AbortSignal.timeout(3000)
      });
      return response.ok ? (await response.json()) || {} : {};
    } catch (e) {
      return {};
    }
  }

  function start(remote) {
    function pick(name) { return data[name] || (typeof remote[name] === "string" ? remote[name] : ""); }
    var safeColor = [data.color, remote.color].filter(function (c) { return COLOR.test(c || ""); })[0] || "#2563eb";
    var onColor = textOn(safeColor);
    var cfg = {
      title: pick("title") || "Ask us anything",
      greeting: pick("greeting") || "Hi! Ask me a question about our products and policies.",
      placeholder: pick("placeholder") || "Type your question…",
      left: pick("position") === "left",
      // Talking to a person: only when the app turned it on (absent or disabled: nothing of it shows).
      handoff: remote.handoff && remote.handoff.enabled === true
        ? { ask: ["off", "optional", "required"].indexOf(remote.handoff.ask_contact) >= 0 ? remote.handoff.ask_contact : "optional" }
        : null
    };
    // Per signed-in user too: another account on the same browser does not see this one's.
    var storeName = "obdal-widget:" + key.split("_").slice(0, 3).join("_") + (user ? ":" + user.user : "");
    var MAX_KEPT = 50;

    // White or near-black text on the site's colour, whichever contrasts more (WCAG: a light brand
    // colour such as #0a7 under white text is 2.9:1, under #111 6.3:1). The canvas names the colour.
    function textOn(color) {
      var ctx = document.createElement("canvas").getContext("2d");
      if (!ctx) return "#fff";
      ctx.fillStyle = color;
      var hex = /^#([0-9a-f]{6})$/i.exec(ctx.fillStyle);
      if (!hex) return "#fff";
      var lum = [0, 2, 4].map(function (i) {
        var c = parseInt(hex[1].substr(i, 2), 16) / 255;
        return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
      });
      var l = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
      return 1.05 / (l + 0.05) >= (l + 0.05) / 0.0556 ? "#fff" : "#111";
    }

    var css = [
      ":host{all:initial}",
      "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
      ".launcher{position:fixed;bottom:20px;" + (cfg.left ? "left" : "right") + ":20px;width:56px;height:56px;",
      "border-radius:50%;border:0;background:" + safeColor + ";color:" + onColor + ";cursor:pointer;z-index:2147483646;",
      "box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center}",
      ".launcher svg{width:26px;height:26px;fill:currentColor}",
      ".launcher:focus-visible,button:focus-visible,textarea:focus-visible,select:focus-visible,input:focus-visible{outline:3px solid #111;",
      "outline-offset:2px}",
      ".panel{position:fixed;bottom:88px;" + (cfg.left ? "left" : "right") + ":20px;width:370px;height:540px;",
      "max-height:calc(100vh - 110px);background:#fff;color:#111;border-radius:14px;z-index:2147483647;",
      "box-shadow:0 10px 40px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}",
      ".panel[hidden]{display:none}",
      "header{background:" + safeColor + ";color:" + onColor + ";padding:12px 14px;display:flex;align-items:center;gap:8px}",
      "h2{font-size:16px;margin:0;flex:1;font-weight:600}",
      "header button{background:transparent;border:1px solid currentColor;color:inherit;border-radius:8px;",
      "padding:4px 8px;font-size:13px;cursor:pointer}",
      ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:#f7f7f8}",
      ".msg{max-width:88%;padding:9px 12px;border-radius:12px;font-size:14px;line-height:1.45;white-space:pre-wrap;",
      "overflow-wrap:anywhere}",
      ".user{align-self:flex-end;background:" + safeColor + ";color:" + onColor + "}",
      ".bot{align-self:flex-start;background:#fff;border:1px solid #e3e3e6}",
      ".error{align-self:stretch;background:#fff4f4;border:1px solid #f3b7b7;color:#8a1010}",
      ".sources{margin:6px 0 0;padding:6px 0 0 16px;border-top:1px solid #eee;font-size:12px;color:#444}",
      ".sources li{margin:2px 0}",
      ".ask{display:flex;gap:8px;padding:10px;border-top:1px solid #e3e3e6;background:#fff}",
      "textarea{flex:1;resize:none;border:1px solid #c9c9ce;border-radius:10px;padding:8px 10px;font-size:14px;",
      "min-height:40px;max-height:120px}",
      ".ask button,.fb-form button{border:0;border-radius:10px;background:" + safeColor + ";color:" + onColor + ";padding:0 14px;",
      "font-size:14px;cursor:pointer}",
      ".ask button:disabled{opacity:.5;cursor:default}",
      // Feedback under an answer: a white-space:normal block, so the bubble's pre-wrap does not leak in.
      ".fb{margin-top:6px;padding-top:6px;border-top:1px solid #eee;white-space:normal;display:flex;flex-wrap:wrap;",
      "align-items:center;gap:6px;font-size:12px;color:#444}",
      ".fb-btn{display:inline-flex;align-items:center;justify-content:center;width:32px;height:28px;padding:0;",
      "border:1px solid #c9c9ce;border-radius:8px;background:#fff;color:#444;cursor:pointer}",
      ".fb-btn svg{width:16px;height:16px;fill:currentColor}.fb-down svg{transform:rotate(180deg)}",
      ".fb-btn[aria-pressed=true]{background:" + safeColor + ";border-color:" + safeColor + ";color:" + onColor + "}",
      ".fb-btn[aria-disabled=true]{opacity:.6;cursor:progress}",
      ".fb-status:empty,.fb-error:empty{display:none}",
      ".fb-error{flex-basis:100%;background:#fff4f4;border:1px solid #f3b7b7;color:#8a1010;border-radius:8px;",
      "padding:4px 8px}",
      ".fb-form{flex-basis:100%;display:flex;flex-direction:column;gap:6px;margin:4px 0 0}",
      ".fb-form label{font-size:12px;color:#333}",
      ".fb-form select,.fb-form textarea{width:100%;font-size:13px;border:1px solid #c9c9ce;border-radius:8px;",
      "padding:5px 8px;background:#fff;color:#111}",
      ".fb-form textarea{flex:none;min-height:56px;resize:vertical}",
      ".fb-actions{display:flex;gap:6px;justify-content:flex-end}",
      ".fb-form button{padding:5px 12px;font-size:13px}",
      ".fb-form .fb-skip{background:#fff;color:#333;border:1px solid #c9c9ce}",
      // A person's reply, notices about the handoff, and the contact form (a .fb-form too).
      ".agent{align-self:flex-start;background:#fff;border:1px solid #e3e3e6;border-left:4px solid #555}",
      ".who{white-space:normal;font-size:12px;font-weight:600;color:#333;margin:0 0 3px}",
      ".note{align-self:center;max-width:94%;background:#e9ebef;color:#222;font-size:13px;text-align:center}",
      ".to-team{align-self:flex-end;margin-top:-6px;font-size:12px;color:#444}",
      ".ho{margin-top:6px;padding-top:6px;border-top:1px solid #eee;white-space:normal;display:flex;flex-direction:column;",
      "gap:6px}",
      ".ho-card{align-self:stretch;max-width:none;background:#fff;border:1px solid #e3e3e6;white-space:normal}",
      ".ho-btn{align-self:flex-start;border:1px solid #8c8c94;border-radius:8px;background:#fff;color:#111;",
      "padding:5px 10px;font-size:13px;cursor:pointer}",
      ".ho-btn[aria-disabled=true],.fb-form button[aria-disabled=true]{opacity:.6;cursor:progress}",
      ".ho-form{margin:0}.ho-form p{margin:0;font-size:12px;color:#333}",
      ".fb-form input{width:100%;font-size:13px;border:1px solid #c9c9ce;border-radius:8px;padding:5px 8px;",
      "background:#fff;color:#111}",
      ".fb-form input[aria-invalid=true]{border-color:#b42318}",
      ".ho-err{font-size:12px;color:#8a1010}.ho-err:empty{display:none}",
      ".foot{display:flex;justify-content:center;align-items:center;padding:0 10px 6px;background:#fff;font-size:12px;",
      "color:#444}.foot[hidden],.foot [hidden]{display:none}",
      ".link{background:none;border:0;padding:4px 6px;min-height:24px;color:#333;text-decoration:underline;",
      "font-size:12px;cursor:pointer}",
      ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
      "@media (max-width:480px){.panel{left:0;right:0;bottom:0;top:0;width:100%;height:100%;max-height:none;",
      "border-radius:0}.launcher{bottom:14px}}"
    ].join("");

    function el(tag, attrs, text) {
      var node = document.createElement(tag);
      Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
      if (text) node.textContent = text;  // text only: nothing received is ever parsed as HTML
      return node;
    }

    var host = el("div", { id: "obdal-widget" });
    var root = host.attachShadow({ mode: "open" });
    var style = el("style");
    style.textContent = css;
    var launcher = el("button", {
      "class": "launcher", type: "button", "aria-label": "Open chat: " + cfg.title,
      "aria-expanded": "false", "aria-controls": "obdal-panel"
    });
    launcher.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
    var panel = el("section", { "class": "panel", id: "obdal-panel", role: "dialog", "aria-labelledby": "obdal-title" });
    panel.hidden = true;
    var header = el("header");
    var title = el("h2", { id: "obdal-title" }, cfg.title);
    var reset = el("button", { type: "button", "aria-label": "Start a new conversation" }, "New");
    var close = el("button", { type: "button", "aria-label": "Close chat" }, "✕");
    header.append(title, reset, close);
    // Focusable: a keyboard user scrolls a long conversation with the arrow keys (WCAG 2.1.1).
    var log = el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
    var form = el("form", { "class": "ask" });
    var label = el("label", { "for": "obdal-input", "class": "sr" }, "Your question");
    var input = el("textarea", { id: "obdal-input", rows: "1", placeholder: cfg.placeholder, maxlength: "4000" });
    var send = el("button", { type: "submit" }, "Send");
    form.append(label, input, send);
    // "Talk to a person" on request, under the question box; while handed off, what to expect.
    var foot = el("div", { "class": "foot" });
    var person = el("button", { type: "button", "class": "link" }, "Talk to a person");
    var waiting = el("span", { "class": "waiting" }, "A person will reply here.");
    foot.append(person, waiting);
    foot.hidden = true;
    panel.append(header, log, form, foot);
    root.append(style, launcher, panel);

    var state = load();
    var busy = false;
    var controller = null;

    function load() {
      if (preview) return { session_id: null, messages: [] };
      try {
        var saved = JSON.parse(localStorage.getItem(storeName) || "null");
        if (saved && Array.isArray(saved.messages)) return saved;
      } catch (e) { /* storage unavailable or corrupt: start fresh */ }
      return { session_id: null, messages: [] };
    }

    function save() {
      if (preview) return;
      state.messages = state.messages.slice(-MAX_KEPT);
      try { localStorage.setItem(storeName, JSON.stringify(state)); } catch (e) { /* private mode */ }
    }

    function addMessage(role, text, sources) {
      var node = el("div", { "class": "msg " + role }, text);
      if (role === "error") node.setAttribute("role", "alert");
      if (sources && sources.length) node.appendChild(sourceList(sources));
      log.appendChild(node);
      log.scrollTop = log.scrollHeight;
      return node;
    }

    function sourceList(sources) {
      var list = el("ul", { "class": "sources", "aria-label": "Sources" });
      sources.slice(0, 5).forEach(function (s) {
        list.appendChild(el("li", {}, String(s.filename || "document") + " — " + String(s.snippet || "")));
      });
      return list;
    }

    // A person's reply: their name (or "Support") above it, as text like everything received.
    function addAgent(m) {
      var node = el("div", { "class": "msg agent" });
      var who = el("div", { "class": "who" }, m.name || "Support");
      who.appendChild(el("span", { "class": "sr" }, " (a person from the team)"));
      node.append(who, el("div", { "class": "said" }, m.text));
      log.appendChild(node);
      log.scrollTop = log.scrollHeight;
      return node;
    }

    function addUser(m) {
      var node = addMessage("user", m.text);
      if (m.to_team) log.appendChild(el("div", { "class": "to-team" }, "Sent to the team"));
      return node;
    }

    function render() {
      log.textContent = "";
      contact = null;  // a contact form in the log went with it
      addMessage("bot", cfg.greeting);
      state.messages.forEach(function (m) {
        if (m.role === "agent") return addAgent(m);
        if (m.role === "user") return addUser(m);
        var node = addMessage(m.role, m.text, m.sources);
        if (m.role === "bot" && m.message_id) {
          node.appendChild(feedback(m, state));
          if (m.declined) offer(node, DECLINED);
          else if (m.rating === "down") offer(node, DISLIKED);
        }
      });
      showFoot();
    }

    // Static markup only (no received text): the two thumb glyphs.
    var THUMB = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3a1.5 1.5 0 0 0-.4-1L13.2 1 6.6 7.6A2 2 0 0 0 6 9v10a2 2 0 0 0 2 2h9a2 2 0 0 0 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z"/></svg>';
    var REASONS = [["", "Choose a reason"], ["inaccurate", "Inaccurate"], ["incomplete", "Incomplete"],
      ["irrelevant", "Not relevant"], ["outdated", "Out of date"], ["other", "Something else"]];
    var fbCount = 0;

    function feedbackError(status, body, retryAfter) {
      var code = body && body.error && body.error.code;
      if (status === 404) return "This answer can no longer be rated.";
      if (status === 413) return "That comment is too long (2000 characters at most).";
      if (status === 422) return "That feedback was not accepted (" + (code || status) + ").";
      if (status === 429) return "Too many requests right now. Please wait " + (retryAfter || "a few") + " seconds and try again.";
      return "Your feedback could not be sent: " + explain(status, body, retryAfter);
    }

    // Thumbs under one answer (m: its stored record, with message_id and the last rating).
    function feedback(m, conversation) {
      var n = ++fbCount;
      var bar = el("div", { "class": "fb", role: "group", "aria-label": "Rate this answer" });
      var up = el("button", { type: "button", "class": "fb-btn", "aria-pressed": "false", "aria-label": "Helpful", title: "Helpful" });
      var down = el("button", { type: "button", "class": "fb-btn fb-down", "aria-pressed": "false", "aria-label": "Not helpful", title: "Not helpful" });
      up.innerHTML = THUMB;
      down.innerHTML = THUMB;
      var status = el("span", { "class": "fb-status", role: "status" });
      var error = el("div", { "class": "fb-error", role: "alert" });
      bar.append(up, down, status, error);
      var pending = false;
      var sheet = null;

      function show(rating) {
        up.setAttribute("aria-pressed", String(rating === "up"));
        down.setAttribute("aria-pressed", String(rating === "down"));
      }
      show(m.rating);

      async function post(body) {
        if (pending) return null;
        pending = true;
        up.setAttribute("aria-disabled", "true");
        down.setAttribute("aria-disabled", "true");
        status.textContent = "";
        error.textContent = "";
        body.session_id = conversation.session_id;
        var result = null;
        try {
          var response = await fetch(apiBase + "/v1/messages/" + encodeURIComponent(m.message_id) + "/feedback", {
            method: "POST",
            headers: { "Content-Type": "application/json", "Authorization": "Bearer " + key },
            body: JSON.stringify(body)
          });
          var data = null;
          try { data = await response.json(); } catch (e) { /* not JSON */ }
          if (response.ok && data) {
            result = data;
            m.rating = data.rating;  // the pressed state follows the server's answer
            show(m.rating);
            if (conversation === state) save();
          } else {
            error.textContent = feedbackError(response.status, data, response.headers.get("Retry-After"));
          }
        } catch (e) {
          error.textContent = "Your feedback could not be sent. Please check your connection and try again.";
        }
        pending = false;
        up.removeAttribute("aria-disabled");
        down.removeAttribute("aria-disabled");
        return result;
      }

      function closeSheet(focusBack) {
        if (!sheet) return;
        sheet.remove();
        sheet = null;
        if (focusBack) down.focus();
      }

      function openSheet() {
        if (sheet) { sheet.querySelector("select").focus(); return; }
        sheet = el("form", { "class": "fb-form", "aria-label": "Tell us what was wrong" });
        var reasonId = "obdal-fb-reason-" + n;
        var commentId = "obdal-fb-comment-" + n;
        var select = el("select", { id: reasonId });
        REASONS.forEach(function (r) { select.appendChild(el("option", { value: r[0] }, r[1])); });
        var comment = el("textarea", { id: commentId, rows: "3", maxlength: "2000" });
        var actions = el("div", { "class": "fb-actions" });
        var skip = el("button", { type: "button", "class": "fb-skip" }, "Skip");
        var submit = el("button", { type: "submit", "aria-label": "Send feedback" }, "Send");
        actions.append(skip, submit);
        sheet.append(el("label", { "for": reasonId }, "What was wrong? (optional)"), select,
          el("label", { "for": commentId }, "Comment (optional)"), comment, actions);
        skip.addEventListener("click", function () { closeSheet(true); });
        sheet.addEventListener("keydown", function (e) {
          if (e.key === "Escape") { e.stopPropagation(); closeSheet(true); }
        });
        sheet.addEventListener("submit", async function (e) {
          e.preventDefault();
          var body = { rating: "down" };
          if (select.value) body.reason = select.value;
          var text = comment.value.trim();
          if (text) body.comment = text.slice(0, 2000);
          if (await post(body)) {
            closeSheet(true);
            status.textContent = "Thanks for your feedback";
          }
        });
        bar.insertBefore(sheet, status);
        log.scrollTop = log.scrollHeight;
        select.focus();
      }

      up.addEventListener("click", async function () {
        if (m.rating === "up") return;
        if (await post({ rating: "up" })) {
          closeSheet(false);
          status.textContent = "Thanks for your feedback";
        }
      });
      down.addEventListener("click", async function () {
        if (m.rating === "down") return openSheet();  // already recorded: offer the details again
        if (await post({ rating: "down" })) {
          status.textContent = "Thanks for your feedback";
          openSheet();
          if (bar.parentNode) offer(bar.parentNode, DISLIKED);
        }
      });
      return bar;
    }

    // Proof of work, for keys that ask for it (docs/security.md#proof-of-work): a challenge is
    // fetched and solved while the visitor types, one per question.
    var proof = null;  // a promise of the next solved challenge ("" when the key asks for none)

    function hexBytes(hex) {
      var out = new Uint8Array(hex.length / 2);
      for (var i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
      return out;
    }

    function toHex(bytes) {
      return Array.prototype.map.call(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
    }

    // ALTCHA v2 with PBKDF2: the first counter whose derived key starts with keyPrefix.
    async function solve(challenge) {
      var p = challenge.parameters;
      if (p.algorithm !== "PBKDF2/SHA-256" || !(window.crypto && crypto.subtle)) return "";
      var nonce = hexBytes(p.nonce), salt = hexBytes(p.salt), prefix = String(p.keyPrefix).toLowerCase();
      var password = new Uint8Array(nonce.length + 4);
      password.set(nonce);
      var view = new DataView(password.buffer);
      var deadline = (p.expiresAt || 0) * 1000;
      for (var counter = 0; counter <= 0xFFFFFFFF; counter++) {
        if (deadline && Date.now() > deadline) return "";
        view.setUint32(nonce.length, counter);
        var material = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
        var bits = await crypto.subtle.deriveBits(
          { name: "PBKDF2", hash: "SHA-256", salt: salt, iterations: p.cost }, material, (p.keyLength || 32) * 8);
        var hex = toHex(new Uint8Array(bits));
        if (hex.indexOf(prefix) === 0) {
          return btoa(JSON.stringify({ challenge: challenge, solution: { counter: counter, derivedKey: hex } }));
        }
      }
      return "";
    }

    async function challenge() {
      try {
        var response = await fetch(apiBase + "/v1/widget/challenge", {
          headers: { "Authorization": "Bearer " + key }, cache: "no-store", signal: AbortSignal.timeout(5000)
        });
        if (!response.ok) return "";
        var body = await response.json();
        return body && body.required ? await solve(body.challenge) : "";
      } catch (e) {
        return "";  // the question goes without; its answer says what is wrong
      }
    }

    function prepare() {
      if (!preview && key && proof === null) proof = challenge();
    }

    function open() {
      prepare();
      panel.hidden = false;
      launcher.setAttribute("aria-expanded", "true");
      launcher.setAttribute("aria-label", "Close chat: " + cfg.title);
      input.focus();
    }

    function shut() {
      panel.hidden = true;
      launcher.setAttribute("aria-expanded", "false");
      launcher.setAttribute("aria-label", "Open chat: " + cfg.title);
      launcher.focus();
    }

    function explain(status, body, retryAfter) {
      var code = body && body.error && body.error.code;
      if (status === 403 && /^proof_of_work/.test(code || "")) {
        proof = null;  // a fresh challenge for the next try
        return "Your browser could not prove it is not a robot (" + code + "). Please try again.";
      }
      if (status === 403) return "This website is not allowed to use this assistant.";
      if (status === 401) return "This assistant is not set up correctly (its key was refused).";
      if (status === 429 && code === "token_budget_exhausted") return "The assistant has reached its limit for today. Please try again tomorrow.";
      if (status === 429) return "Too many questions right now. Please wait " + (retryAfter || "a few") + " seconds and try again.";
      if (status === 503 || status === 504) return "The assistant is temporarily unavailable. Please try again shortly.";
      if (status === 413) return "That question is too long. Please shorten it.";
      return "Something went wrong (" + (code || status) + "). Please try again.";
    }

    // A refused CORS check and a service that is down fail fetch() alike. A no-cors request
    // needs no CORS approval: if it gets any answer, the service is up and this origin was refused.
    async function unreachable() {
      try {
        // Bounded: after a connection that timed out, a second full timeout would keep Send disabled.
        await fetch(apiBase + "/v1/status/live", { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(5000) });
        return "This assistant is not enabled for this website.";
      } catch (e) {
        return "The assistant cannot be reached right now. Please check your connection and try again.";
      }
    }

    function finish() {
      busy = false;
      send.disabled = false;
      controller = null;
    }

    async function ask(question) {
      var conversation = state;  // "New" during the answer starts another one: keep them apart
      busy = true;
      send.disabled = true;
      var asked = { role: "user", text: question };
      var askedNode = addUser(asked);
      conversation.messages.push(asked);
      save();
      var answer = addMessage("bot", "");
      answer.setAttribute("aria-busy", "true");
      controller = new AbortController();
      var text = "";
      var response;
      prepare();
      var solved = await proof;
      proof = solved ? challenge() : Promise.resolve("");  // the next one, while this answer streams
      try {
        response = await fetch(apiBase + "/v1/chat", {
          method: "POST",
          headers: { "Content-Type": "application/json", "Authorization": "Bearer " + key },
          body: JSON.stringify(Object.assign(
            { message: question, session_id: conversation.session_id || undefined, stream: true },
            user || {}, solved ? { altcha: solved } : {})),
          signal: controller.signal
        });
      } catch (e) {
        answer.remove();
        if (e.name !== "AbortError") addMessage("error", await unreachable());
        return finish();
      }
      if (!response.ok || !response.body) {
        var body = null;
        try { body = await response.json(); } catch (e) { /* not JSON */ }
        answer.remove();
        addMessage("error", explain(response.status, body, response.headers.get("Retry-After")));
        return finish();
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      var sources = [];
      var failed = null;
      var messageId = null;
      var declined = false;
      var toTeam = false;  // handed off: no model ran, the question went to the team
      try {
        for (;;) {
          var chunk = await reader.read();
          if (chunk.done) break;
          buffer += decoder.decode(chunk.value, { stream: true });
          var blocks = buffer.split(/\r?\n\r?\n/);
          buffer = blocks.pop();
          blocks.forEach(function (block) {
            var event = "message";
            var payload = "";
            block.split(/\r?\n/).forEach(function (line) {
              if (line.indexOf("event:") === 0) event = line.slice(6).trim();
              else if (line.indexOf("data:") === 0) payload += line.slice(5).trim();
            });
            if (!payload) return;  // a ": ping" comment
            var value = JSON.parse(payload);
            if (event === "message") {
              text += value.content;
              answer.textContent = text;
              log.scrollTop = log.scrollHeight;
            } else if (event === "sources") {
              sources = value.sources || [];
            } else if (event === "end") {
              conversation.session_id = value.session_id;
              messageId = value.message_id || null;
              declined = value.answered === false;
              toTeam = value.handed_off === true;
            } else if (event === "error") {
              failed = value;
            }
          });
        }
      } catch (e) {
        if (e.name !== "AbortError") failed = { code: "stream_interrupted" };
      }
      if (sources.length) answer.appendChild(sourceList(sources));
      if (text) {
        var record = { role: "bot", text: text, sources: sources };
        // Thumbs only on a whole answer: its `end` came, with the id the rating refers to.
        if (messageId && !failed) {
          record.message_id = messageId;
          answer.appendChild(feedback(record, conversation));
          if (declined) {
            record.declined = true;
            if (conversation === state) offer(answer, DECLINED);
          }
        }
        conversation.messages.push(record);
      } else {
        answer.remove();  // also while handed off: no empty bubble, a caption under the question
        if (toTeam && !failed) {
          asked.to_team = true;
          if (askedNode.isConnected) askedNode.after(el("div", { "class": "to-team" }, "Sent to the team"));
          // Handed off elsewhere (the app's servers, another tab): listen for the person too.
          if (!openHandoff(conversation)) handedOver(conversation, {});
        }
      }
      answer.removeAttribute("aria-busy");
      if (conversation === state) {
        save();
        if (failed) addMessage("error", "The answer was interrupted. Please ask again.");
      }
      finish();
    }

    // --- Talking to a person (docs/handoff.md) ---------------------------------------------------
    var NOTICE = "We've passed your conversation to the team. A person will reply here.";
    var RESOLVED = "The team marked this resolved; the assistant is back.";
    var DECLINED = "The assistant could not answer the question";
    var DISLIKED = "The answer did not help";
    var EMAIL = /^[^\s@]+@[^\s@]+$/;  // a first check only: the API says whether it is an address
    var contact = null;  // the open contact form: { form, card, trigger }
    var stream = null;  // the EventSource of the open handoff
    var retry = null;
    var retryMs = 1000;
    var hoCount = 0;

    function openHandoff(conversation) {
      return !!(conversation.handoff && conversation.handoff.status === "requested");
    }

    function lastAgentId(conversation) {
      for (var i = conversation.messages.length - 1; i >= 0; i--) {
        if (conversation.messages[i].role === "agent") return conversation.messages[i].message_id || null;
      }
      return null;
    }

    function showFoot() {
      foot.hidden = !cfg.handoff || preview;
      person.hidden = openHandoff(state);
      waiting.hidden = !openHandoff(state);
    }

    // "Talk to a person" under an answer (declined, or rated down).
    function offer(bubble, reason) {
      if (!cfg.handoff || preview || openHandoff(state) || bubble.querySelector(".ho")) return;
      var box = el("div", { "class": "ho" });
      var button = el("button", { type: "button", "class": "ho-btn" }, "Talk to a person");
      button.addEventListener("click", function () { talk(box, button, reason); });
      box.appendChild(button);
      bubble.appendChild(box);
    }

    function talk(where, trigger, reason) {
      if (openHandoff(state) || trigger.getAttribute("aria-disabled") === "true") return;
      if (!state.session_id) {
        // Nothing stored to pass on yet: the team needs the question.
        addMessage("note", "Type your question below first; then you can pass the conversation to a person.");
        input.focus();
        return;
      }
      if (cfg.handoff.ask === "off") {
        trigger.setAttribute("aria-disabled", "true");
        return handOff(reason, null).then(function (result) {
          trigger.removeAttribute("aria-disabled");
          if (!result.ok) addMessage("error", result.message);
        });
      }
      openContact(where, trigger, reason);
    }

    function closeContact(focusBack) {
      if (!contact) return;
      var open = contact;
      contact = null;
      open.form.remove();
      if (open.card) open.card.remove();
      if (focusBack && open.trigger.isConnected && !open.trigger.hidden) open.trigger.focus();
      else if (focusBack) input.focus();
    }

    function openContact(where, trigger, reason) {
      if (contact && contact.trigger === trigger) return contact.form.querySelector("input").focus();
      closeContact(false);
      var n = ++hoCount;
      var required = cfg.handoff.ask === "required";
      var card = null;
      if (!where) {  // from the footer: a card at the end of the conversation
        card = el("div", { "class": "msg ho-card" });
        log.appendChild(card);
        where = card;
      }
      var sheet = el("form", { "class": "fb-form ho-form", "aria-label": "Your contact details", novalidate: "" });
      var ids = { intro: "obdal-ho-intro-" + n, email: "obdal-ho-email-" + n, name: "obdal-ho-name-" + n };
      var intro = el("p", { id: ids.intro }, required
        ? "A person will reply here. Leave your e-mail so the team can also reach you."
        : "A person will reply here. Leave your e-mail if the team may also write to you, or leave it empty.");
      var email = el("input", {
        id: ids.email, type: "email", autocomplete: "email", maxlength: "254",
        "aria-describedby": ids.intro + " " + ids.email + "-error"
      });
      if (required) email.setAttribute("aria-required", "true");
      var emailError = el("div", { "class": "ho-err", id: ids.email + "-error", role: "alert" });
      var name = el("input", {
        id: ids.name, type: "text", autocomplete: "name", maxlength: "120", "aria-describedby": ids.name + "-error"
      });
      var nameError = el("div", { "class": "ho-err", id: ids.name + "-error", role: "alert" });
      var error = el("div", { "class": "fb-error", role: "alert" });
      var actions = el("div", { "class": "fb-actions" });
      var cancel = el("button", { type: "button", "class": "fb-skip" }, "Cancel");
      var submit = el("button", { type: "submit" }, "Send to the team");
      actions.append(cancel, submit);
      sheet.append(intro, el("label", { "for": ids.email }, required ? "E-mail" : "E-mail (optional)"), email, emailError,
        el("label", { "for": ids.name }, "Name (optional)"), name, nameError, error, actions);

      function clear() {
        [email, name].forEach(function (field) { field.removeAttribute("aria-invalid"); });
        emailError.textContent = nameError.textContent = error.textContent = "";
      }
      function wrong(field, message) {
        field.setAttribute("aria-invalid", "true");
        (field === email ? emailError : nameError).textContent = message;
        field.focus();
      }
      cancel.addEventListener("click", function () { closeContact(true); });
      sheet.addEventListener("keydown", function (e) {
        if (e.key === "Escape") { e.stopPropagation(); closeContact(true); }
      });
      sheet.addEventListener("submit", async function (e) {
        e.preventDefault();
        if (submit.getAttribute("aria-disabled") === "true") return;
        clear();
        var given = { email: email.value.trim(), name: name.value.trim() };
        if (required && !given.email) return wrong(email, "Please enter your e-mail address, so the team can reach you.");
        if (given.email && !EMAIL.test(given.email)) return wrong(email, "This does not look like an e-mail address.");
        var details = {};
        if (given.email) details.email = given.email;
        if (given.name) details.name = given.name;
        submit.setAttribute("aria-disabled", "true");
        var result = await handOff(reason, Object.keys(details).length ? details : null);
        submit.removeAttribute("aria-disabled");
        if (result.ok || !sheet.isConnected) return;
        if (result.field) wrong(result.field === "name" ? name : email, result.message);
        else error.textContent = result.message;
      });
      where.appendChild(sheet);
      contact = { form: sheet, card: card, trigger: trigger };
      log.scrollTop = log.scrollHeight;
      email.focus();
    }

    // What a refused handoff means, in words; `field` when it is about what was typed.
    function handoffError(status, body, retryAfter) {
      var code = body && body.error && body.error.code;
      var said = String((body && body.error && body.error.message) || "");
      if (status === 422 && code === "contact_required") {
        return { field: "email", message: "Please enter your e-mail address, so the team can reach you." };
      }
      if (status === 422 && code === "invalid_contact") {
        return /name/i.test(said) && !/mail/i.test(said)
          ? { field: "name", message: "Please check your name (120 characters at most)." }
          : { field: "email", message: "Please check your e-mail address: it does not look like one." };
      }
      if (status === 404) {
        return { message: "This conversation can no longer be passed to the team. Start a new one with “New” and ask again." };
      }
      if (status === 403 && code === "handoff_off") return { message: "Talking to a person is not available here right now." };
      if (status === 429) return { message: "Too many requests right now. Please wait " + (retryAfter || "a few") + " seconds and try again." };
      if (status >= 500) return { message: "The team cannot be reached right now. Please try again in a moment." };
      if (status === 401 || status === 403 || status === 413) return { message: explain(status, body, retryAfter) };
      return { message: "Your request was not accepted (" + (code || status) + "). Please try again." };
    }

    // POST /v1/sessions/{id}/handoff; { ok } or { field?, message }.
    async function handOff(reason, details) {
      var conversation = state;
      var body = {};
      if (reason) body.reason = reason;
      if (details) body.contact = details;
      try {
        var response = await fetch(apiBase + "/v1/sessions/" + encodeURIComponent(conversation.session_id) + "/handoff", {
          method: "POST",
          headers: { "Content-Type": "application/json", "Authorization": "Bearer " + key },
          body: JSON.stringify(body), cache: "no-store", signal: AbortSignal.timeout(15000)
        });
        var data = null;
        try { data = await response.json(); } catch (e) { /* not JSON */ }
        if (response.ok && data) {
          handedOver(conversation, data);
          return { ok: true };
        }
        return handoffError(response.status, data, response.headers.get("Retry-After"));
      } catch (e) {
        return { message: "Your request could not be sent. Please check your connection and try again." };
      }
    }

    // The handoff is open: say so once, keep it with the conversation, listen for the person.
    function handedOver(conversation, handoff) {
      var already = openHandoff(conversation);
      conversation.handoff = {
        status: "requested",
        handoff_id: handoff.handoff_id ? String(handoff.handoff_id) : (conversation.handoff && conversation.handoff.handoff_id) || null,
        after: (already && conversation.handoff.after) || lastAgentId(conversation)
      };
      if (!already) conversation.messages.push({ role: "note", text: NOTICE });
      if (conversation !== state) return;
      save();
      var focusInput = !!contact;
      closeContact(false);
      Array.prototype.forEach.call(log.querySelectorAll(".ho"), function (node) { node.remove(); });
      if (!already) addMessage("note", NOTICE);
      showFoot();
      if (focusInput && !panel.hidden) input.focus();
      listen();
    }

    function stopListening() {
      if (retry) clearTimeout(retry);
      retry = null;
      if (stream) stream.close();
      stream = null;
    }

    // The session's events: people's replies and the handoff's state. The browser reconnects by
    // itself (with Last-Event-ID); a stream it gave up on (CLOSED) is reopened here, with backoff.
    function listen() {
      stopListening();
      var conversation = state;
      if (preview || !key || !conversation.session_id || !openHandoff(conversation)) return;
      var after = conversation.handoff.after || lastAgentId(conversation);
      var source = new EventSource(apiBase + "/v1/sessions/" + encodeURIComponent(conversation.session_id) +
        "/events?api_key=" + encodeURIComponent(key) + (after ? "&after=" + encodeURIComponent(after) : ""));
      stream = source;
      function live() { return stream === source && conversation === state; }
      source.addEventListener("open", function () { if (live()) retryMs = 1000; });
      source.addEventListener("message", function (e) { if (live()) replied(conversation, e.data); });
      source.addEventListener("handoff", function (e) { if (live()) changed(conversation, e.data); });
      source.addEventListener("error", function () {
        if (!live() || source.readyState !== EventSource.CLOSED) return;  // reconnecting by itself
        stopListening();
        retry = setTimeout(listen, retryMs);
        retryMs = Math.min(retryMs * 2, 60000);
      });
    }

    function parsed(raw) {
      try { return JSON.parse(raw) || {}; } catch (e) { return {}; }
    }

    function replied(conversation, raw) {
      var m = parsed(raw);
      if (!m.message_id || typeof m.content !== "string") return;
      var id = String(m.message_id);
      var seen = conversation.messages.some(function (x) { return x.role === "agent" && x.message_id === id; });
      if (conversation.handoff) conversation.handoff.after = id;
      if (!seen) {
        var record = { role: "agent", text: m.content, name: m.name ? String(m.name) : "", message_id: id };
        conversation.messages.push(record);
        addAgent(record);
      }
      save();
    }

    function changed(conversation, raw) {
      var status = parsed(raw).status;
      if (status === "requested") return;  // still waiting for (or talking to) the person
      stopListening();
      delete conversation.handoff;
      if (status === "resolved") {
        conversation.messages.push({ role: "note", text: RESOLVED });
        addMessage("note", RESOLVED);
      }
      save();
      showFoot();
    }

    person.addEventListener("click", function () { talk(null, person, ""); });

    launcher.addEventListener("click", function () { panel.hidden ? open() : shut(); });
    close.addEventListener("click", shut);
    reset.addEventListener("click", function () {
      if (controller) controller.abort();
      stopListening();  // a handoff stays open for the team; this browser starts afresh
      state = { session_id: null, messages: [] };
      save();
      render();
      input.focus();
    });
    panel.addEventListener("keydown", function (e) { if (e.key === "Escape") shut(); });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var question = input.value.trim();
      if (!question || busy) return;
      input.value = "";
      if (preview) {
        addMessage("user", question);
        addMessage("bot", "This is a preview: on your website, the answer appears here.");
        return;
      }
      ask(question);
    });

    // A verified user new to this browser: their latest conversation, from wherever it was held.
    async function resume() {
      if (preview || !user || state.session_id) return;
      try {
        var response = await fetch(apiBase + "/v1/widget/conversation", {
          method: "POST",
          headers: { "Content-Type": "application/json", "Authorization": "Bearer " + key },
          body: JSON.stringify(user), cache: "no-store", signal: AbortSignal.timeout(5000)
        });
        if (!response.ok) return;
        var found = await response.json();
        if (state.session_id || !found || !Array.isArray(found.messages)) return;  // asked meanwhile
        var messages = [];
        found.messages.forEach(function (m) {
          var text = String(m.content || "");
          if (m.role === "assistant" && !text) {
            // A question left to a person is stored with an empty answer: no bubble, a caption.
            var asked = messages[messages.length - 1];
            if (asked && asked.role === "user") asked.to_team = true;
          } else if (m.role === "assistant") {
            messages.push({ role: "bot", text: text, message_id: m.message_id });
          } else if (m.role === "agent") {
            messages.push({ role: "agent", text: text, name: m.name ? String(m.name) : "", message_id: String(m.message_id) });
          } else {
            messages.push({ role: "user", text: text });
          }
        });
        state = { session_id: String(found.session_id), messages: messages };
        if (found.handoff && found.handoff.status === "requested") {
          state.handoff = { status: "requested", handoff_id: found.handoff.handoff_id || null, after: lastAgentId(state) };
        }
        save();
        render();
        listen();
      } catch (e) { /* nothing to resume: a fresh conversation */ }
    }

    render();
    listen();  // a handoff still open from before the reload: the person's replies go on arriving
    resume();
    (document.body || document.documentElement).appendChild(host);
    if (preview) {
      panel.hidden = false;
      launcher.setAttribute("aria-expanded", "true");
      launcher.setAttribute("aria-label", "Close chat: " + cfg.title);
    }
  }

  settings().then(start);
})();
