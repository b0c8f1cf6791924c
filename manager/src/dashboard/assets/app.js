// acv dashboard: reads the manager's JSON API with the bearer token kept in sessionStorage, listens to
// /v1/dashboard/events (read with fetch so it can carry the token), and renders with DOM calls only (no innerHTML:
// programs, reports and arguments are shown as text).
"use strict";

const TOKEN_KEY = "acv-token";
const OPERATOR_KEY = "acv-operator";
const state = {
  charts: new Map(),      // component -> {plot, data, marks, card}
  mutating: new Set(),    // host calls that change the cluster (from /v1/series)
  episodes: [],
  approvals: [],
  features: { approvals: true, episodes: true },
  goalDetails: new Map(), // goal id -> detail
  stream: null,
  refreshes: 0,
};

// ---- helpers -------------------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
}

function time(v) {
  if (v === undefined || v === null) return "—";
  const d = typeof v === "number" ? new Date(v) : new Date(String(v));
  return isNaN(d) ? String(v) : d.toLocaleTimeString();
}

function ms(v) {
  return v === undefined || v === null ? "—" : v >= 1000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms";
}

function badge(s) {
  return h("span", { class: "state " + String(s).toLowerCase() }, s);
}

function json(v) {
  if (v === undefined || v === null) return "";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

class Unauthorized extends Error {}

async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const resp = await fetch(path, Object.assign({}, opts, { headers }));
  if (resp.status === 401) throw new Unauthorized();
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!resp.ok) {
    const err = new Error((body && body.message) || resp.statusText || String(resp.status));
    err.status = resp.status;
    throw err;
  }
  return body;
}

function showError(e) {
  if (e instanceof Unauthorized) return showLogin("The token was refused.");
  document.getElementById("error").textContent = e ? String(e.message || e) : "";
}

// ---- sign-in ---------------------------------------------------------------------------------------------------

function showLogin(msg) {
  stopStream();
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("logout").hidden = true;
  document.getElementById("login-error").textContent = token() ? msg || "" : "";
  document.getElementById("token").focus();
}

async function start() {
  try {
    await api("/v1/agents");
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("The token was refused.");
    return showError(e);
  }
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("logout").hidden = !token();
  try {
    const idx = await api("/v1/series");
    state.mutating = new Set(idx.mutating_calls || []);
  } catch (e) { showError(e); }
  await refreshAll();
  startStream();
}

// ---- live updates ----------------------------------------------------------------------------------------------

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  setConn(false);
}

function setConn(on) {
  const el = document.getElementById("conn");
  el.textContent = on ? "live" : "offline";
  el.className = "conn " + (on ? "on" : "off");
}

async function startStream() {
  stopStream();
  const ctl = new AbortController();
  state.stream = ctl;
  while (state.stream === ctl) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (token()) headers.Authorization = "Bearer " + token();
      const resp = await fetch("/v1/dashboard/events", { headers, signal: ctl.signal });
      if (resp.status === 401) return showLogin("The token was refused.");
      if (!resp.ok || !resp.body) throw new Error("event stream: " + resp.status);
      setConn(true);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = "message", data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) onEvent(name, data.join("\n"));
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    setConn(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onEvent(name, data) {
  if (name === "sample") {
    const ev = JSON.parse(data);
    addSample(ev.component, ev.sample);
  } else if (name === "goal") {
    const ev = JSON.parse(data);
    refreshGoals(ev.goal_id).catch(showError);
  } else if (name === "refresh") {
    state.refreshes += 1;
    refreshLists().catch(showError);
    if (state.refreshes % 5 === 0) refreshPlots().catch(showError);
  }
}

async function refreshAll() {
  await Promise.all([refreshLists(), refreshGoals(), refreshPlots()]).catch(showError);
}

async function refreshLists() {
  await Promise.all([refreshEpisodes(), refreshApprovals(), refreshTasks()]);
  await refreshAgents();
  showError(null);
}

// ---- agents ----------------------------------------------------------------------------------------------------

async function refreshAgents() {
  const agents = await api("/v1/agents");
  const tbody = document.querySelector("#agents tbody");
  fill(tbody, agents.map((a) => {
    const last = state.episodes.filter((e) => e.component === a.component)
      .sort((x, y) => String(y.started_at).localeCompare(String(x.started_at)))[0];
    const safety = a.safety || "—";
    return h("tr", { "data-component": a.component },
      h("td", { class: "component" }, a.component),
      h("td", { class: "planner" }, a.planner),
      h("td", { class: "safety" }, safety),
      h("td", { class: "live " + (a.live ? "good" : "bad") }, a.live ? "live" : "silent"),
      h("td", { class: "health" }, a.healthy === true ? "healthy" : a.healthy === false ? "unhealthy" : "—"),
      h("td", {}, time(a.last_seen_ms)),
      h("td", { class: "last-episode" }, last
        ? [badge(last.outcome || "running"), " ", last.trigger, " ", time(last.started_at)] : "—"));
  }));
}

// ---- approvals -------------------------------------------------------------------------------------------------

async function refreshApprovals() {
  const box = document.getElementById("approvals");
  if (!state.features.approvals) return;
  try {
    state.approvals = await api("/v1/approvals");
  } catch (e) {
    if (e.status === 404 || e.status === 405) {
      state.features.approvals = false;
      fill(box, h("p", { class: "muted" }, "This manager does not serve approvals."));
      return;
    }
    throw e;
  }
  const pending = state.approvals.filter((a) => a.state === "pending");
  const decided = state.approvals.filter((a) => a.state !== "pending").slice(-10).reverse();
  fill(box,
    pending.length ? null : h("p", { class: "muted", id: "no-approvals" }, "Nothing waits for approval."),
    pending.map((a) => h("div", { class: "card approval", "data-id": a.id, "data-call": a.call },
      h("div", { class: "row" }, h("b", {}, a.component), badge(a.state), h("code", {}, a.call + "(" + json(a.args) + ")"),
        h("span", { class: "muted" }, "episode " + a.episode + ", asked " + time(a.requested_at) +
          ", expires " + time(a.expires_at)),
        h("button", { class: "approve", onclick: () => decide(a.id, "approve") }, "Approve"),
        h("button", { class: "deny", onclick: () => decide(a.id, "deny") }, "Deny")),
      h("details", {}, h("summary", {}, "program"), h("pre", { class: "program" }, a.program || "")))),
    decided.length ? h("h3", {}, "Decided") : null,
    decided.length ? h("table", { id: "decided" }, decided.map((a) => h("tr", { "data-id": a.id },
      h("td", {}, a.component), h("td", {}, h("code", {}, a.call + "(" + json(a.args) + ")")), h("td", {}, badge(a.state)),
      h("td", {}, a.decided_by || ""), h("td", {}, time(a.decided_at)), h("td", {}, a.reason || ""),
      h("td", {}, json(a.result))))) : null);
}

async function decide(id, verb) {
  const by = document.getElementById("operator").value.trim() || "dashboard";
  try {
    await api("/v1/approvals/" + encodeURIComponent(id) + "/" + verb, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ by, reason: (verb === "approve" ? "approved" : "denied") + " from the dashboard" }),
    });
    await refreshApprovals();
    showError(null);
  } catch (e) { showError(e); }
}

// ---- goals -----------------------------------------------------------------------------------------------------

async function refreshGoals(changed) {
  const goals = await api("/v1/goals?limit=20");
  const box = document.getElementById("goals");
  const shown = goals.slice(0, 10);
  await Promise.all(shown.map(async (g) => {
    const have = state.goalDetails.get(g.id);
    if (!have || g.id === changed || have.goal.updated_ms !== g.updated_ms) {
      state.goalDetails.set(g.id, await api("/v1/goals/" + encodeURIComponent(g.id)));
    }
  }));
  if (!shown.length) return fill(box, h("p", { class: "muted" }, "No goal yet."));
  fill(box, shown.map((g) => {
    const d = state.goalDetails.get(g.id) || { goal: g, subtasks: [], events: [] };
    return h("div", { class: "card goal", "data-id": g.id, "data-state": d.goal.state },
      h("div", { class: "row" }, h("b", {}, g.id), badge(d.goal.state), h("span", {}, "round " + d.goal.round),
        h("span", {}, d.goal.spec.text || ""), h("span", { class: "muted" }, d.goal.reason || "")),
      d.subtasks.length ? h("table", { class: "subtasks" },
        h("tr", {}, h("th", {}, "subtask"), h("th", {}, "component"), h("th", {}, "state"), h("th", {}, "attempts"),
          h("th", {}, "answer")),
        d.subtasks.map((s) => h("tr", { "data-id": s.id }, h("td", {}, s.id), h("td", {}, s.component),
          h("td", {}, badge(s.state)), h("td", {}, s.attempts ?? ""),
          h("td", {}, s.report ? s.report.message : "")))) : null,
      h("ul", { class: "events" }, d.events.map((e) => h("li", { class: "k-" + e.kind },
        time(e.at_ms), " ", h("b", {}, e.state), " ", e.message))));
  }));
}

// ---- episodes --------------------------------------------------------------------------------------------------

async function refreshEpisodes() {
  const box = document.getElementById("episodes");
  if (!state.features.episodes) return;
  try {
    state.episodes = await api("/v1/episodes?limit=20");
  } catch (e) {
    if (e.status === 404 || e.status === 405) {
      state.features.episodes = false;
      fill(box, h("p", { class: "muted" }, "This manager does not serve episodes; see the tasks' steps below."));
      return;
    }
    throw e;
  }
  if (!state.episodes.length) return fill(box, h("p", { class: "muted" }, "No episode yet."));
  const list = state.episodes.slice().sort((x, y) => String(y.started_at).localeCompare(String(x.started_at)));
  fill(box, list.map((e) => h("details", { class: "card episode", "data-id": e.id, "data-component": e.component, open: list.indexOf(e) < 3 },
    h("summary", {}, h("span", { class: "row" }, h("b", {}, e.component), badge(e.outcome || "running"),
      h("span", {}, "trigger " + e.trigger), h("span", {}, time(e.started_at) + " – " + time(e.ended_at)),
      h("span", {}, "detect " + ms(e.time_to_detect_ms)), h("span", {}, "mitigate " + ms(e.time_to_mitigate_ms)))),
    (e.steps || []).map((s, i) => h("div", { class: "step" },
      h("h3", {}, "step " + (i + 1) + " ", badge(s.verdict || "")),
      h("pre", { class: "program" }, s.program || ""),
      (s.calls || []).length ? h("table", { class: "calls" },
        h("tr", {}, h("th", {}, "call"), h("th", {}, "arguments"), h("th", {}, "outcome"), h("th", {}, "result")),
        s.calls.map((c) => h("tr", {}, h("td", {}, h("code", {}, c.name)), h("td", {}, h("code", {}, json(c.args))),
          h("td", {}, badge(c.outcome || "")), h("td", {}, h("code", {}, json(c.result)))))) : null,
      s.output ? h("pre", { class: "output" }, s.output) : null)),
    e.report ? h("p", { class: "report" }, h("b", {}, "report: "), json(e.report.message !== undefined ? e.report.message : e.report)) : null)));
}

// ---- tasks -----------------------------------------------------------------------------------------------------

async function refreshTasks() {
  const tasks = await api("/v1/tasks?limit=20");
  const box = document.getElementById("tasks");
  if (!tasks.length) return fill(box, h("p", { class: "muted" }, "No task sent through the manager yet."));
  fill(box, tasks.map((t, i) => h("details", { class: "card task", "data-id": t.id, open: i < 2 },
    h("summary", {}, h("span", { class: "row" }, h("b", {}, t.component), badge(t.state), h("span", {}, t.text),
      h("span", { class: "muted" }, time(t.created_ms)))),
    t.report ? [
      h("p", {}, badge(t.report.status), " ", t.report.message),
      (t.report.steps || []).map((s) => h("div", { class: "step", "data-outcome": s.outcome },
        h("h3", {}, "step " + s.index + " ", badge(s.outcome), " ", s.description, s.mutated ? " (changed the cluster)" : ""),
        s.program ? h("pre", { class: "program" }, s.program) : null,
        s.output ? h("pre", { class: "output" }, s.output) : null)),
    ] : h("p", { class: "muted" }, "waiting for the report"))));
}

// ---- SLO plots -------------------------------------------------------------------------------------------------

const MARK_COLOURS = { fault: "#d32f2f", detection: "#f57c00", action: "#1976d2", goal: "#7b1fa2" };

// Marks the page adds to the server's: an episode its sidecar started itself (an SLO violation, a peer's request)
// is a detection; an episode that made a mutating call is an action, unless the server marked it already (a task's
// mutating step); an approved call is an action.
function clientMarks(component, serverMarks) {
  const out = [];
  const known = (id) => (serverMarks || []).some((m) => m.text.includes(id));
  for (const e of state.episodes.filter((x) => x.component === component)) {
    const at = Date.parse(e.started_at);
    if (!isNaN(at) && e.trigger !== "task") {
      out.push({ at_ms: at, kind: "detection", text: "episode " + e.id + " (" + e.trigger + ")" });
    }
    const end = Date.parse(e.ended_at);
    const acted = (e.steps || []).some((s) => (s.calls || []).some((c) => state.mutating.has(c.name) && c.outcome === "ok"));
    if (acted && !isNaN(end) && !known(e.id)) {
      out.push({ at_ms: end, kind: "action", text: "episode " + e.id + " changed " + component });
    }
  }
  const acted = (a) => a.state === "approved" || a.state === "executed";
  for (const a of state.approvals.filter((x) => x.component === component && x.decided_at && acted(x))) {
    out.push({ at_ms: Date.parse(a.decided_at), kind: "action", text: a.call + " " + a.state + " by " + (a.decided_by || "?") });
  }
  return out.filter((m) => !isNaN(m.at_ms));
}

function marksPlugin(getMarks) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx, bbox } = u;
        ctx.save();
        ctx.lineWidth = 2 * devicePixelRatio;
        for (const m of getMarks()) {
          const x = u.valToPos(m.at_ms / 1000, "x", true);
          if (x < bbox.left || x > bbox.left + bbox.width) continue;
          ctx.strokeStyle = MARK_COLOURS[m.kind] || "#555";
          ctx.setLineDash(m.kind === "fault" ? [6, 4] : []);
          ctx.beginPath();
          ctx.moveTo(x, bbox.top);
          ctx.lineTo(x, bbox.top + bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  };
}

function ensureChart(component) {
  let c = state.charts.get(component);
  if (c) return c;
  const card = h("div", { class: "plot", id: "plot-" + component, "data-component": component, "data-samples": 0 },
    h("h3", {}, component));
  const marksList = h("ul", { class: "marks" });
  document.getElementById("plots").append(card);
  const data = [[], [], [], [], []];
  c = { data, marks: [], card, marksList, plot: null };
  const opts = {
    width: Math.min(900, Math.max(360, window.innerWidth - 80)), height: 240,
    scales: {
      x: { time: true },
      ms: { range: (u, min, max) => [0, Math.max(10, (max || 0) * 1.15)] },
      pct: { range: (u, min, max) => [0, Math.max(100, max || 0)] },
      n: { range: (u, min, max) => [0, Math.max(2, (max || 0) + 1)] },
    },
    series: [
      {},
      { label: "P99 ms", scale: "ms", stroke: "#d32f2f", width: 2, spanGaps: false },
      { label: "CPU %", scale: "pct", stroke: "#1976d2", width: 2 },
      { label: "memory %", scale: "pct", stroke: "#388e3c", width: 2 },
      { label: "ready replicas", scale: "n", stroke: "#7b1fa2", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
    ],
    axes: [
      {},
      { scale: "ms", label: "P99 ms", size: 50 },
      { scale: "pct", side: 1, label: "%", size: 40, grid: { show: false } },
      { scale: "n", side: 1, label: "replicas", size: 40, grid: { show: false } },
    ],
    plugins: [marksPlugin(() => c.marks.concat(clientMarks(component, c.marks)))],
  };
  c.plot = new uPlot(opts, data, card);
  card.append(marksList);
  state.charts.set(component, c);
  return c;
}

function pushSample(c, s) {
  const x = s.at_ms / 1000;
  const n = c.data[0].length;
  if (n && c.data[0][n - 1] >= x) return false;
  c.data[0].push(x);
  c.data[1].push(s.p99_ms ?? null);
  c.data[2].push(s.cpu_percent ?? null);
  c.data[3].push(s.memory_percent ?? null);
  c.data[4].push(s.ready_replicas ?? null);
  return true;
}

function redraw(c) {
  c.plot.setData(c.data);
  c.card.setAttribute("data-samples", c.data[0].length);
  const all = c.marks.concat(clientMarks(c.card.getAttribute("data-component"), c.marks)).sort((a, b) => a.at_ms - b.at_ms);
  c.card.setAttribute("data-marks", all.length);
  fill(c.marksList, all.slice(-50).map((m) => h("li", { class: "k-" + m.kind }, time(m.at_ms) + " " + m.kind + ": " + m.text)));
}

function addSample(component, s) {
  const c = ensureChart(component);
  if (pushSample(c, s)) redraw(c);
}

async function refreshPlots() {
  const idx = await api("/v1/series");
  for (const component of idx.components) {
    const series = await api("/v1/series?component=" + encodeURIComponent(component));
    const c = ensureChart(component);
    for (let i = 0; i < c.data.length; i++) c.data[i] = [];
    for (const s of series.samples) pushSample(c, s);
    c.marks = series.marks;
    redraw(c);
  }
}

// ---- wiring ----------------------------------------------------------------------------------------------------

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  start();
});
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("");
});
const operator = document.getElementById("operator");
operator.value = sessionStorage.getItem(OPERATOR_KEY) || "";
operator.addEventListener("change", () => sessionStorage.setItem(OPERATOR_KEY, operator.value.trim()));
start();
