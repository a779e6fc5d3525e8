// The dsession admin console. The admin key lives only in `adminKey`
// (memory): never in storage or cookies. Session tokens are secrets too:
// they stay in `tokens` (session_id -> token) and never reach the DOM.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_EVENTS = 200;
  const RECONNECT_MS = 2000;
  const CONFIRM_MS = 5000;

  let adminKey = null;
  let tokens = new Map();
  const list = { user: null, page: 0, next: null, busy: false };
  const events = { abort: null, lastId: null, seen: new Set(), pending: [], frame: 0 };
  let revokeAllTimer = 0;
  let epoch = 0; // bumped on logout, so late answers of the old login are dropped

  class ApiError extends Error {
    constructor(status, code, message) {
      super(`${code}: ${message}`);
      this.status = status;
    }
  }

  // One API call. A 401 anywhere forgets the key and goes back to login.
  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${adminKey}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      logout("wrong admin key");
      throw new ApiError(401, "unauthorized", "wrong admin key");
    }
    if (!response.ok) throw await errorOf(response);
    return response.status === 204 ? null : response.json();
  }

  async function errorOf(response) {
    try {
      const { error } = await response.json();
      if (error && error.code) return new ApiError(response.status, error.code, error.message);
    } catch (_) { /* not JSON */ }
    return new ApiError(response.status, `http_${response.status}`, response.statusText || "request failed");
  }

  function showError(err) {
    if (err instanceof ApiError && err.status === 401) return;
    const box = $("error");
    box.textContent = err instanceof ApiError ? err.message : `error: ${err.message || err}`;
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // DOM helper: el("td", {className: "x", title: "y"}, "text", child…)
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  const iso = (seconds) => seconds == null ? "—" : new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
  const isoMs = (ms) => new Date(ms).toISOString();
  const shorten = (s, n) => s.length > n ? `${s.slice(0, n - 1)}…` : s;

  // ---- login / logout ----

  async function login(event) {
    event.preventDefault();
    clearError();
    const input = $("admin-key");
    adminKey = input.value;
    input.value = "";
    $("login-error").hidden = true;
    let policy;
    try {
      policy = await api("GET", "/v1/policy");
    } catch (err) {
      if (err.status !== 401) showError(err);
      adminKey = null;
      return;
    }
    $("login-view").hidden = true;
    $("main-view").hidden = false;
    $("logout").hidden = false;
    renderPolicy(policy);
    if (policy.events === false) {
      $("events-status").textContent = "off";
    } else {
      startEvents();
    }
    $("user-id").focus();
  }

  function logout(reason) {
    adminKey = null;
    epoch += 1;
    tokens = new Map();
    Object.assign(list, { user: null, page: 0, next: null, busy: false });
    if (events.abort) events.abort.abort();
    cancelAnimationFrame(events.frame);
    Object.assign(events, { abort: null, lastId: null, seen: new Set(), pending: [], frame: 0 });
    disarmRevokeAll();
    $("sessions").tBodies[0].replaceChildren();
    $("config").tBodies[0].replaceChildren();
    $("event-list").replaceChildren();
    $("list-status").textContent = "";
    $("events-status").textContent = "";
    updatePager();
    clearError();
    $("main-view").hidden = true;
    $("logout").hidden = true;
    $("login-view").hidden = false;
    const problem = $("login-error");
    problem.textContent = reason || "";
    problem.hidden = !reason;
    $("admin-key").focus();
  }

  // ---- policy ----

  function renderPolicy(p) {
    $("policy-name").textContent = p.name;
    $("policy-path").textContent = p.path == null ? "built in" : p.path;
    $("policy-exports").textContent = (p.exports || []).join(", ") || "—";
    $("policy-loaded").textContent = iso(p.loaded_at);
    const r = p.last_reload;
    $("policy-reload").textContent = r == null ? "never"
      : `${iso(r.at)} — ${r.ok ? "ok" : "failed"}${r.error ? `: ${r.error}` : ""}`;
    const config = p.config || {};
    const keys = [...(p.config_keys || [])];
    for (const name of Object.keys(config)) {
      if (!keys.some((k) => k.name === name)) keys.push({ name, default: null, description: "" });
    }
    const rows = keys.map((k) => {
      const set = Object.prototype.hasOwnProperty.call(config, k.name);
      const value = set ? config[k.name] : (k.default ?? "—");
      return el("tr", {},
        el("td", { className: "mono" }, k.name),
        el("td", { className: set ? "mono" : "mono muted" }, value),
        el("td", { className: "mono" }, k.default ?? "—"),
        el("td", {}, k.description || ""));
    });
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colSpan: 4, className: "muted" },
        "This policy reads no settings of its own.")));
    }
    $("config").tBodies[0].replaceChildren(...rows);
  }

  // ---- sessions of a user ----

  async function loadPage(cursor) {
    if (!list.user || list.busy) return;
    list.busy = true;
    updatePager();
    const size = $("page-size").value;
    let path = `/v1/users/${encodeURIComponent(list.user)}/tokens?limit=${size}`;
    if (cursor) path += `&cursor=${encodeURIComponent(cursor)}`;
    const number = cursor ? list.page + 1 : 1;
    $("list-status").textContent = `Loading page ${number}…`;
    const started = performance.now();
    const mine = epoch;
    try {
      const page = await api("GET", path);
      if (mine !== epoch) return;
      list.page = number;
      list.next = page.next_cursor;
      renderSessions(page.tokens || []);
      const ms = Math.round(performance.now() - started);
      const n = (page.tokens || []).length;
      $("list-status").textContent =
        `${n} session${n === 1 ? "" : "s"} on page ${list.page} (loaded in ${ms} ms)`;
    } catch (err) {
      if (mine !== epoch) return;
      $("list-status").textContent = `Page ${number} failed to load`;
      showError(err);
    } finally {
      if (mine === epoch) list.busy = false;
      updatePager();
    }
  }

  function renderSessions(items) {
    tokens = new Map();
    const rows = items.map((t) => {
      tokens.set(t.session_id, t.token);
      const a = t.attributes || {};
      const ua = a.user_agent || "";
      const labels = Object.entries(a.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
      return el("tr", { "data-session": t.session_id },
        el("td", { className: "mono session" }, t.session_id),
        el("td", { className: "device" }, a.device || "—"),
        el("td", { className: "mono ip" }, a.ip || "—"),
        el("td", { className: "ua", title: ua }, ua ? shorten(ua, 60) : "—"),
        el("td", { className: "labels" }, labels || "—"),
        el("td", { className: "mono" }, iso(t.created_at)),
        el("td", { className: "mono" }, iso(t.last_seen)),
        el("td", { className: "mono" }, t.token_expire_time === -1 ? "never" : iso(t.token_expire_time)),
        el("td", {}, el("button", { type: "button", className: "revoke", "data-session": t.session_id }, "Revoke")));
    });
    $("sessions").tBodies[0].replaceChildren(...rows);
  }

  function updatePager() {
    const idle = list.user !== null && !list.busy;
    $("first-page").disabled = !idle || list.page <= 1;
    $("next-page").disabled = !idle || list.next == null;
    $("revoke-all").disabled = !idle;
    $("users").classList.toggle("loading", list.busy);
  }

  function find(event) {
    event.preventDefault();
    clearError();
    const user = $("user-id").value.trim();
    if (!user) return;
    disarmRevokeAll();
    list.user = user;
    list.next = null;
    loadPage(null);
  }

  async function revokeOne(event) {
    const button = event.target.closest("button.revoke");
    if (!button) return;
    clearError();
    const token = tokens.get(button.dataset.session);
    if (!token) return;
    button.disabled = true;
    try {
      await api("POST", "/v1/tokens/revoke", { token });
      await loadPage(null);
    } catch (err) {
      showError(err);
      button.disabled = false;
    }
  }

  // Two clicks within CONFIRM_MS revoke every session of the user.
  async function revokeAll() {
    const button = $("revoke-all");
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = "Click again to revoke all";
      revokeAllTimer = setTimeout(disarmRevokeAll, CONFIRM_MS);
      return;
    }
    disarmRevokeAll();
    clearError();
    try {
      await api("DELETE", `/v1/users/${encodeURIComponent(list.user)}/tokens`);
      await loadPage(null);
    } catch (err) {
      showError(err);
    }
  }

  function disarmRevokeAll() {
    clearTimeout(revokeAllTimer);
    const button = $("revoke-all");
    button.classList.remove("armed");
    button.textContent = "Revoke all sessions of this user";
  }

  // ---- live events: server-sent events read through fetch ----

  async function startEvents() {
    const controller = new AbortController();
    events.abort = controller;
    while (events.abort === controller) {
      try {
        await readEvents(controller);
      } catch (err) {
        if (controller.signal.aborted) return;
        if (err instanceof ApiError && err.status === 401) return;
      }
      if (events.abort !== controller) return;
      $("events-status").textContent = "reconnecting…";
      $("events-status").className = "status bad";
      await new Promise((done) => setTimeout(done, RECONNECT_MS));
    }
  }

  async function readEvents(controller) {
    const headers = { Authorization: `Bearer ${adminKey}`, Accept: "text/event-stream" };
    if (events.lastId) headers["Last-Event-ID"] = events.lastId;
    const response = await fetch("/v1/events", { headers, signal: controller.signal, cache: "no-store" });
    if (response.status === 401) {
      logout("wrong admin key");
      throw new ApiError(401, "unauthorized", "wrong admin key");
    }
    if (!response.ok) throw await errorOf(response);
    $("events-status").textContent = "connected";
    $("events-status").className = "status good";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let current = { id: null, event: "message", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an unfinished line waits for the next chunk
      for (const line of lines) {
        if (line === "") {
          if (current.data.length) dispatch(current);
          current = { id: null, event: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // comment / keepalive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "id") current.id = val;
        else if (field === "event") current.event = val;
        else if (field === "data") current.data.push(val);
      }
    }
  }

  function dispatch(raw) {
    if (raw.id) events.lastId = raw.id;
    let data;
    try {
      data = JSON.parse(raw.data.join("\n"));
    } catch (_) {
      return;
    }
    // The stream goes on after a store failure; say so until it recovers.
    if (raw.event === "error") {
      const { code, message } = data.error || {};
      $("events-status").textContent = `${code || "error"}: ${message || "the events cannot be read"}`;
      $("events-status").className = "status bad";
      return;
    }
    if (raw.event !== "session") return;
    if ($("events-status").className !== "status good") {
      $("events-status").textContent = "connected";
      $("events-status").className = "status good";
    }
    const id = data.id || raw.id;
    if (id && events.seen.has(id)) return; // replayed after a reconnect
    if (id) events.seen.add(id);
    events.pending.push(data);
    // A hidden tab gets no animation frames: keep only what will be shown.
    if (events.pending.length > 2 * MAX_EVENTS) events.pending.splice(0, events.pending.length - MAX_EVENTS);
    if (!events.frame) events.frame = requestAnimationFrame(flushEvents);
  }

  // Render what arrived since the last frame in one go.
  function flushEvents() {
    events.frame = 0;
    const batch = events.pending.slice(-MAX_EVENTS);
    events.pending = [];
    const ul = $("event-list");
    const items = batch.reverse().map((e) => el("li", {
      className: "event", "data-event": e.event || "", "data-user": e.user || "", "data-session": e.session || "",
    },
    el("span", { className: "mono at" }, e.at ? isoMs(e.at) : "—"),
    el("span", { className: `kind kind-${e.event}` }, e.event || "?"),
    el("span", { className: "user" }, e.user || "—"),
    el("span", { className: "mono session" }, e.session || "—"),
    el("span", { className: "device" }, e.device || ""),
    el("span", { className: "detail" }, e.detail || "")));
    ul.prepend(...items);
    while (ul.children.length > MAX_EVENTS) ul.lastElementChild.remove();
    if (events.seen.size > MAX_EVENTS * 10) events.seen = new Set([...events.seen].slice(-MAX_EVENTS * 2));
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", login);
    $("find").addEventListener("submit", find);
    $("logout").addEventListener("click", () => logout(""));
    $("first-page").addEventListener("click", () => { clearError(); loadPage(null); });
    $("next-page").addEventListener("click", () => { clearError(); if (list.next) loadPage(list.next); });
    $("revoke-all").addEventListener("click", revokeAll);
    $("sessions").addEventListener("click", revokeOne);
    $("admin-key").focus();
  });
})();
