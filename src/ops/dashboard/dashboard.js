// The dashboard's script (see index.html).
"use strict";
const TOKEN_KEY = "agentcron.ops.token";

/** Thrown when the server wants a token; the login form is shown instead of an error. */
class Unauthorized extends Error {}

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, { headers });
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json();
  if (!response.ok) throw new Error(path + ": " + (body.error || response.status));
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

function time(ms) {
  return ms ? new Date(Number(ms)).toISOString().replace(".000Z", "Z") : "-";
}

function showStatus(status) {
  const cards = document.getElementById("status");
  const items = [
    ["workers", status.workers.length],
    ["pending", status.queue.pending],
    ["scheduled", status.queue.scheduled],
    ["running", status.queue.running],
    ["dead", status.queue.dead],
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
}

function showRuns(runs) {
  const body = document.getElementById("runs");
  body.replaceChildren(...runs.map((run) => {
    const tr = row([run.run_id, run.user, run.schedule || "-",
      el("td", run.state, "state-" + run.state), run.phase || "-", run.attempts,
      time(run.created_at_ms)]);
    tr.className = "run";
    tr.addEventListener("click", () => openRun(run.run_id));
    return tr;
  }));
  if (runs.length === 0) body.append(row([el("td", "No runs.", "muted")]));
}

function showNotices(notices) {
  const body = document.getElementById("notices");
  body.replaceChildren(...notices.map((notice) => {
    const details = Object.entries(notice.fields)
      .filter(([name]) => name !== "user" && name !== "connection")
      .map(([name, value]) => name + "=" + value).join(" ");
    return row([notice.user, notice.connection, details]);
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

async function openRun(id) {
  const detail = await api("/api/runs/" + encodeURIComponent(id));
  const lines = await api("/api/runs/" + encodeURIComponent(id) + "/transcript");
  document.getElementById("detail-id").textContent = id;
  const fields = document.getElementById("detail-fields");
  const record = detail.record;
  fields.replaceChildren(...Object.entries(record).filter(([name]) => name !== "result_text")
    .map(([name, value]) =>
      row([el("th", name), name === "state" ? el("td", value, "state-" + value) : value])));
  document.getElementById("detail-result").textContent = record.result_text ?? "(no result yet)";
  document.getElementById("detail-usage").textContent = record.tokens_input == null ? "" :
    `${record.model}: ${record.tokens_input} input, ${record.tokens_output} output, ` +
    `${record.tokens_cache_write} cache write, ${record.tokens_cache_read} cache read tokens` +
    (record.cost_usd ? ` · about $${Number(record.cost_usd).toFixed(4)} (estimate)` : "");
  document.getElementById("detail-timeline").replaceChildren(...detail.timeline.map((span) =>
    row([span.phase, time(span.at_ms), span.duration_ms == null ? "-" : span.duration_ms + " ms"])));
  document.getElementById("transcript").textContent = renderTranscript(lines);
  document.getElementById("detail").hidden = false;
  const url = new URL(location.href);
  url.searchParams.set("run", id);
  history.replaceState(null, "", url);
}

async function load() {
  document.getElementById("error").textContent = "";
  try {
    const [status, runs, notices] = await Promise.all(
      [api("/api/status"), api("/api/runs?limit=50"), api("/api/notices")]);
    document.getElementById("login").hidden = true;
    showStatus(status);
    showRuns(runs);
    showNotices(notices);
    const wanted = new URLSearchParams(location.search).get("run");
    if (wanted) await openRun(wanted);
  } catch (error) {
    if (error instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById("login").hidden = false;
      document.getElementById("error").textContent = "This dashboard needs the ops token.";
    } else {
      document.getElementById("error").textContent = String(error.message || error);
    }
  }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
  load();
});

load();
