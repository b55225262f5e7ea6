// The dashboard's script (see index.html). Every value from the server is set as text
// (textContent, attributes), never parsed as HTML.
"use strict";
const REFRESH_MS = 5000;
const CHARTS_EVERY = 6; // Charts are redrawn every sixth refresh (30 s).
const STATES = ["queued", "running", "succeeded", "needs_auth", "failed", "dead", "cancelled", "skipped"];
// Which states each action takes (as the queue's scripts decide; the server says why not).
const ACTIONS = {
  requeue: ["dead", "failed", "cancelled", "skipped"],
  cancel: ["queued", "failed", "running"],
  retry: ["failed"],
};

/** Thrown when the session has ended (expired, signed out, the token changed). */
class Unauthorized extends Error {}

async function api(path, method) {
  // Same-origin requests carry the session cookie by themselves.
  const response = await fetch(path, { method: method || "GET", headers: { Accept: "application/json" } });
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || path + ": " + response.status);
  return body;
}

/** An element with text (never HTML: every value shown comes from run data). */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function td(child) {
  const cell = el("td");
  cell.append(child);
  return cell;
}

/** "3 min ago" / "in 2 h", relative to now. */
function ago(ms) {
  const seconds = Math.round((Date.now() - ms) / 1000);
  const abs = Math.abs(seconds);
  const [n, unit] = abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.floor(abs / 60), "min"] :
    abs < 86400 ? [Math.floor(abs / 3600), "h"] : [Math.floor(abs / 86400), "d"];
  if (abs < 5) return "just now";
  return seconds >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
}

/** A <time> showing "3 min ago", the exact RFC 3339 time on hover. */
function when(ms) {
  if (!ms) return el("span", "-", "muted");
  const date = new Date(Number(ms));
  const node = el("time", ago(date.getTime()));
  node.dateTime = date.toISOString();
  node.title = date.toISOString();
  node.dataset.ms = String(date.getTime());
  return node;
}

/** A link only for http(s) URLs, opened without the opener or a referrer; else the text. */
function link(url, text) {
  let parsed = null;
  try { parsed = new URL(url); } catch (_) { /* not a URL: shown as text */ }
  if (!parsed || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) return el("span", url);
  const a = el("a", text || url);
  a.href = parsed.href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

function flash(message) {
  document.getElementById("flash").textContent = message;
}

function showError(error) {
  document.getElementById("error").textContent = String(error.message || error);
}

// Actions ---------------------------------------------------------------------------------

/** Buttons for the actions `run` (a summary or a record) can take now. */
function actionButtons(run) {
  const box = el("span", null, "actions");
  for (const [verb, states] of Object.entries(ACTIONS)) {
    if (!states.includes(run.state)) continue;
    const button = el("button", verb, "act act-" + verb);
    button.type = "button";
    button.dataset.action = verb;
    button.dataset.run = run.run_id;
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      act(verb, run.run_id, button);
    });
    box.append(button);
  }
  return box;
}

async function act(verb, id, button) {
  button.disabled = true;
  try {
    const action = await api("/api/runs/" + encodeURIComponent(id) + "/" + verb, "POST");
    flash(`${verb}: ${action.run_id} was ${action.found}, done.`);
  } catch (error) {
    if (error instanceof Unauthorized) return signIn();
    showError(error);
  }
  await refresh();
}

async function copyLink(notice, button) {
  button.disabled = true;
  try {
    const path = "/api/notices/" + encodeURIComponent(notice.user) + "/" +
      encodeURIComponent(notice.connection) + "/link";
    const answer = await api(path, "POST");
    try {
      await navigator.clipboard.writeText(answer.auth_link);
      flash(`Auth link for ${notice.user} / ${notice.connection} copied.`);
    } catch (_) {
      flash(`Auth link for ${notice.user} / ${notice.connection}: ${answer.auth_link}`);
    }
  } catch (error) {
    if (error instanceof Unauthorized) return signIn();
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// Views -----------------------------------------------------------------------------------

function showStatus(status) {
  const cards = document.getElementById("status");
  const items = [
    ["workers", status.workers.length],
    ["pending", status.queue.pending],
    ["scheduled", status.queue.scheduled],
    ["running", status.queue.running],
    ["open notices", status.notices_open],
  ];
  for (const [state, n] of Object.entries(status.runs_last_day)) {
    if (n > 0) items.push([state + " (24 h)", n]);
  }
  const mb = (bytes) => bytes === undefined ? "-" : (bytes / 1048576).toFixed(1);
  items.push(["Redis MB", mb(status.usage.redis_bytes)], ["transcripts MB", mb(status.usage.transcript_bytes)]);
  // Usage: every token kind, and the estimated cost (an estimate from list prices).
  const spent = (row) => (row.input + row.output + row.cache_write + row.cache_read).toLocaleString("en-US") +
    " (~$" + row.cost_usd.toFixed(2) + ")";
  items.push(["tokens today", spent(status.tokens.today)], ["tokens this month", spent(status.tokens.month)]);
  // A setup object gone at the vendor: runs wait until `agentcron setup` runs.
  if (status.setup_missing) items.push(["missing: run agentcron setup", status.setup_missing.object]);
  cards.replaceChildren(...items.map(([label, n]) => {
    const card = el("div", label, "card");
    card.prepend(el("b", n));
    return card;
  }));
  showRunRows("failures", status.recent_failures, (run) =>
    [run.run_id, run.user, run.schedule || "-", el("td", run.state, "state-" + run.state),
      run.last_error || "-", td(when(run.created_at_ms)), td(actionButtons(run))]);
}

function showRunRows(bodyId, runs, cells) {
  const body = document.getElementById(bodyId);
  body.replaceChildren(...runs.map((run) => {
    const tr = row(cells(run));
    tr.className = "run";
    tr.dataset.run = run.run_id;
    tr.addEventListener("click", () => openRun(run.run_id));
    return tr;
  }));
  if (runs.length === 0) body.append(row([el("td", "No runs.", "muted")]));
}

function showRuns(runs) {
  showRunRows("runs", runs, (run) => [run.run_id, run.user, run.schedule || "-",
    el("td", run.state, "state-" + run.state), run.phase || "-", run.attempts,
    td(when(run.created_at_ms)), td(actionButtons(run))]);
}

function showNotices(notices) {
  const body = document.getElementById("notices");
  body.replaceChildren(...notices.map((notice) => {
    const fields = notice.fields;
    const button = el("button", "Copy link", "act act-link");
    button.type = "button";
    button.addEventListener("click", () => copyLink(notice, button));
    const linkCell = el("td");
    if (fields.auth_link) linkCell.append(link(fields.auth_link, "Open"), " ");
    linkCell.append(button);
    return row([notice.user, notice.connection, fields.connection_status || fields.status || "-",
      td(when(fields.first_seen_ms)), td(when(fields.last_seen_ms)), fields.count || "1", linkCell]);
  }));
  if (notices.length === 0) body.append(row([el("td", "No open notices.", "muted")]));
}

/** A transcript as the guide prints it: agent text, then `→ tool_name` per tool use. */
function renderTranscript(lines) {
  let out = "";
  for (const line of lines) {
    const data = line.data || {};
    if (line.type === "agent.message") {
      out += (data.content || []).filter((b) => b.type === "text").map((b) => b.text).join("");
    } else if (line.type === "agent.mcp_tool_use" || line.type === "agent.tool_use") {
      out += "\n→ " + data.name + "\n";
    }
  }
  return out.trim() || "(no agent output yet)";
}

/** A record field as a cell: times as human times, links as links. */
function fieldCell(name, value) {
  if (name === "state") return el("td", value, "state-" + value);
  if (/_at_ms$|_ms$/.test(name) && /^\d{12,}$/.test(String(value))) return td(when(Number(value)));
  if (/link|url/.test(name) && /^https?:/.test(String(value))) return td(link(String(value)));
  return el("td", value);
}

async function loadRun(id) {
  const path = "/api/runs/" + encodeURIComponent(id);
  const [detail, lines] = await Promise.all([api(path), api(path + "/transcript")]);
  const record = detail.record;
  document.getElementById("detail-id").textContent = id;
  const state = document.getElementById("detail-state");
  state.textContent = record.state;
  state.className = "state-" + record.state;
  document.getElementById("detail-actions").replaceChildren(actionButtons({ run_id: id, state: record.state }));
  document.getElementById("detail-fields").replaceChildren(...Object.entries(record)
    .filter(([name]) => name !== "result_text")
    .map(([name, value]) => row([el("th", name), fieldCell(name, value)])));
  document.getElementById("detail-result").textContent = record.result_text ?? "(no result yet)";
  document.getElementById("detail-usage").textContent = record.tokens_input == null ? "" :
    `${record.model}: ${record.tokens_input} input, ${record.tokens_output} output, ` +
    `${record.tokens_cache_write} cache write, ${record.tokens_cache_read} cache read tokens` +
    (record.cost_usd ? ` · about $${Number(record.cost_usd).toFixed(4)} (estimate)` : "");
  document.getElementById("detail-timeline").replaceChildren(...detail.timeline.map((span) =>
    row([span.phase, td(when(span.at_ms)), span.duration_ms == null ? "-" : span.duration_ms + " ms"])));
  document.getElementById("transcript").textContent = renderTranscript(lines);
  const live = record.state === "running" || record.state === "queued";
  document.getElementById("transcript-live").textContent = live ? "(live: refreshed every 5 s)" : "";
}

// Navigation and refresh ------------------------------------------------------------------

let view = "overview";
let runId = null;
let nRefreshes = 0;

function setUrl() {
  const url = new URL(location.href);
  url.search = "";
  if (runId) url.searchParams.set("run", runId);
  else if (view !== "overview") url.searchParams.set("view", view);
  if (view === "runs") {
    for (const name of ["state", "user", "schedule"]) {
      const value = document.getElementById("filter-" + name).value;
      if (value) url.searchParams.set(name, value);
    }
  }
  history.replaceState(null, "", url);
}

function show(name, id) {
  view = name;
  runId = id || null;
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== "view-" + (runId ? "run" : view);
  }
  for (const button of document.querySelectorAll("#nav button")) {
    button.classList.toggle("current", !runId && button.dataset.view === view);
  }
  setUrl();
  return refresh();
}

function openRun(id) {
  return show(view, id);
}

function runsQuery() {
  const params = new URLSearchParams({ limit: "100" });
  for (const name of ["state", "user", "schedule"]) {
    const value = document.getElementById("filter-" + name).value.trim();
    if (value) params.set(name, value);
  }
  return "/api/runs?" + params;
}

let refreshing = null;
/** Reloads what the current view shows; one refresh at a time. */
function refresh() {
  if (!refreshing) refreshing = load().finally(() => { refreshing = null; });
  return refreshing;
}

async function load() {
  document.getElementById("error").textContent = "";
  try {
    if (runId) await loadRun(runId);
    else if (view === "overview") showStatus(await api("/api/status"));
    else if (view === "runs") showRuns(await api(runsQuery()));
    else if (view === "notices") showNotices(await api("/api/notices"));
    else if (view === "charts" && nRefreshes % CHARTS_EVERY === 0) drawCharts(await api("/api/charts"));
    document.getElementById("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (error) {
    if (error instanceof Unauthorized) signIn();
    else showError(error);
  }
  for (const node of document.querySelectorAll("time[data-ms]")) node.textContent = ago(Number(node.dataset.ms));
}

/** The server shows its sign-in page at `/` to a browser whose session has ended. */
function signIn() {
  location.assign("/");
}

function start() {
  const select = document.getElementById("filter-state");
  for (const state of STATES) select.append(new Option(state, state));
  const params = new URLSearchParams(location.search);
  for (const name of ["state", "user", "schedule"]) {
    if (params.get(name)) document.getElementById("filter-" + name).value = params.get(name);
  }
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => { nRefreshes = 0; show(button.dataset.view); });
  }
  const filters = document.getElementById("filters");
  filters.addEventListener("submit", (event) => { event.preventDefault(); show("runs"); });
  filters.addEventListener("reset", () => setTimeout(() => show("runs"), 0));
  select.addEventListener("change", () => show("runs"));
  setInterval(() => { nRefreshes += 1; refresh(); }, REFRESH_MS);
  const wanted = params.get("view");
  show(["runs", "notices", "charts"].includes(wanted) ? wanted : params.get("state") ? "runs" : "overview",
    params.get("run"));
}

start();
