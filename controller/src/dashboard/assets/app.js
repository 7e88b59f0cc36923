// RingRift dashboard: reads the controller's /api/* every two seconds and draws the page the
// path names. No library: elements are made with h() (text is never parsed as HTML), charts
// are SVG drawn here.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const num = (x, digits = 0) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const tag = (text, cls) => h("span", { class: "tag " + (cls || text) }, text);
const link = (href, text) => h("a", { href }, text);
const enc = encodeURIComponent;

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const sec = Math.round(seconds);
  if (sec < 60) return sec + " s";
  if (sec < 3600) return Math.floor(sec / 60) + " min " + (sec % 60) + " s";
  return Math.floor(sec / 3600) + " h " + Math.floor((sec % 3600) / 60) + " min";
}

function rating(r) {
  if (!r || r.elo === null || r.elo === undefined) return "–";
  const interval = r.low !== null && r.low !== undefined ? ` [${num(r.low)}, ${num(r.high)}]` : "";
  return num(r.elo) + interval;
}

function bar(done, total) {
  const pct = total > 0 ? Math.min(100, (100 * done) / total) : 0;
  const fill = h("span", {});
  fill.style.width = pct.toFixed(1) + "%";
  return h("span", { class: "bar" }, fill);
}

async function getJSON(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) {
    window.location.assign("/login");
    throw new Error("not logged in");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || r.status + " " + r.statusText);
  return body;
}

// ---- pages ----

function progressCell(p) {
  if (!p) return "–";
  const rate = p.ratePerSecond ? ` · ${num(p.ratePerSecond, 2)} ${p.unit}/s · ETA ${duration(p.etaSeconds)}` : "";
  return h("span", {}, bar(p.done, p.total), `${p.done}/${p.total} ${p.unit}${rate}`);
}

function shareCell(share, weight) {
  if (!share) return `weight ${weight ?? 1}`;
  const cores = (m) => num((m || 0) / 1000, 1);
  return `${num(share.usedGPUs, 2)} of ${num(share.entitledGPUs, 2)} GPUs · ` +
    `${cores(share.usedCPUMillis)} of ${cores(share.entitledCPUMillis)} cores · weight ${weight ?? 1}` +
    (share.waiting ? ` · ${share.waiting} waiting` : "");
}

async function fleetPage() {
  const o = await getJSON("/api/overview");
  const tasks = Object.entries(o.tasks).map(([k, v]) => `${k} ${v}`).join(" · ") || "none";
  const rows = o.loops.map((l) =>
    h("tr", { "data-testid": "loop-row", "data-loop": `${l.namespace}/${l.name}` },
      h("td", {}, link(`/loops/${enc(l.namespace)}/${enc(l.name)}`, `${l.namespace}/${l.name}`)),
      h("td", {}, `${l.board} · ${l.players}p`),
      h("td", {}, tag(l.phase), l.degraded ? h("div", { class: "error" }, l.degraded) : null),
      h("td", { class: "num" }, `${l.generation}${l.maxGenerations ? " / " + l.maxGenerations : ""}`),
      h("td", {}, l.stage),
      h("td", {}, progressCell(l.progress)),
      h("td", {}, l.bestModel || "–", h("div", { class: "muted" }, rating(l.best))),
      h("td", {}, shareCell(l.share, l.weight))));
  return [
    h("h1", {}, "Fleet"),
    h("div", { class: "cards" },
      card("Agents ready", `${o.agents.ready} / ${o.agents.total}`),
      card("GPUs busy", `${num(o.gpus.busy, 2)} / ${o.gpus.total}`),
      card("Loops", o.loops.length),
      card("Models", o.models),
      card("Tasks", tasks)),
    h("h2", {}, "Training loops"),
    o.loops.length === 0 ? h("p", { class: "muted" }, "No TrainingLoop yet.") :
      h("table", { "data-testid": "loops" },
        h("thead", {}, h("tr", {}, ["Loop", "Game", "Phase", "Generation", "Stage", "Progress", "Best model (Elo, 95%)", "Share"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows)),
  ];
}

function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "muted" }, label), h("div", { class: "value" }, value));
}

// The Elo chart: each generation's candidate (filled: promoted, hollow: rejected) and the best
// model after it (line), each with its 95% interval.
function eloChart(points) {
  const W = 820, H = 320, L = 56, R = 16, T = 16, B = 40;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-testid": "elo-chart", role: "img" });
  const values = [];
  for (const p of points) {
    for (const r of [p.candidateRating, p.bestRating]) {
      if (!r) continue;
      for (const v of [r.elo, r.low, r.high]) if (typeof v === "number") values.push(v);
    }
  }
  if (points.length === 0 || values.length === 0) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No rated generation yet"));
    return svg;
  }
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 20) { lo -= 10; hi += 10; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const gens = points.map((p) => p.generation);
  const g0 = Math.min(...gens), g1 = Math.max(...gens);
  const x = (g) => L + (g1 === g0 ? (W - L - R) / 2 : ((g - g0) / (g1 - g0)) * (W - L - R));
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, num(v)));
  }
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(s("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  for (const g of gens) svg.append(s("text", { x: x(g), y: H - B + 16, "text-anchor": "middle" }, g));
  svg.append(s("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "generation"));
  const best = points.filter((p) => p.bestRating && typeof p.bestRating.elo === "number");
  if (best.length > 0) {
    svg.append(s("polyline", { class: "best", points: best.map((p) => `${x(p.generation)},${y(p.bestRating.elo)}`).join(" ") }));
  }
  for (const p of points) {
    const c = p.candidateRating;
    const b = p.bestRating;
    if (b && typeof b.elo === "number") {
      if (typeof b.low === "number") svg.append(s("line", { class: "interval best", x1: x(p.generation) + 4, x2: x(p.generation) + 4, y1: y(b.low), y2: y(b.high) }));
      svg.append(s("circle", { class: "bestpoint", cx: x(p.generation) + 4, cy: y(b.elo), r: 3 }, s("title", {}, `best after generation ${p.generation}: ${p.best} ${rating(b)}`)));
    }
    if (c && typeof c.elo === "number") {
      if (typeof c.low === "number") svg.append(s("line", { class: "interval candidate", x1: x(p.generation) - 4, x2: x(p.generation) - 4, y1: y(c.low), y2: y(c.high) }));
      svg.append(s("circle", {
        class: "point candidate" + (p.decision === "Promote" ? "" : " rejected"),
        "data-generation": p.generation, cx: x(p.generation) - 4, cy: y(c.elo), r: 5,
      }, s("title", {}, `generation ${p.generation}: ${p.candidate} ${rating(c)} (${p.decision})`)));
    }
  }
  return svg;
}

async function loopPage(ns, name) {
  const d = await getJSON(`/api/loops/${enc(ns)}/${enc(name)}`);
  const l = d.summary;
  const history = [...d.history].reverse().map((r) =>
    h("tr", { "data-testid": "history-row" },
      h("td", { class: "num" }, r.generation),
      h("td", {}, r.candidate || "–"),
      h("td", {}, tag(r.decision), r.reason ? h("div", { class: "muted" }, r.reason) : null),
      h("td", { class: "num" }, r.winRate === undefined ? "–" : num(r.winRate, 3)),
      h("td", { class: "num" }, num(r.elo, 1)),
      h("td", { class: "num" }, r.games),
      h("td", { class: "num" }, bytes(r.bytesMoved)),
      h("td", {}, jobLinks(ns, r.jobs)),
      h("td", {}, r.completionTime || "–")));
  const gauntlet = d.lastGauntlet && d.lastGauntlet.status;
  return [
    h("h1", {}, `${l.namespace}/${l.name}`),
    h("div", { class: "cards" },
      card("Phase", l.phase),
      card("Generation", `${l.generation}${l.maxGenerations ? " / " + l.maxGenerations : ""}`),
      card("Stage", l.stage),
      card("Best model", `${l.bestModel || d.initialModel || "–"}`),
      card("Best Elo (95%)", rating(l.best)),
      card("Share", shareCell(l.share, l.weight))),
    l.degraded ? h("p", { class: "error" }, l.degraded) : null,
    h("p", {}, "Progress: ", progressCell(l.progress)),
    h("p", {}, "Running jobs: ", jobLinks(ns, d.activeJobs)),
    h("h2", {}, "Elo over generations"),
    h("div", { class: "legend" }, h("span", { class: "c" }, "● candidate (hollow: rejected)"), h("span", { class: "b" }, "— best model"), h("span", { class: "muted" }, "bars: 95% interval")),
    eloChart(d.points),
    gauntlet ? h("div", {},
      h("h2", {}, `Promotion decision: ${d.lastGauntlet.name}`),
      h("p", {}, tag(gauntlet.decision || "Pending"), " ", gauntlet.decisionReason || ""),
      h("table", {},
        h("thead", {}, h("tr", {}, ["Opponent", "W", "L", "D", "Win rate", "Elo diff (95%)"].map((t) => h("th", {}, t)))),
        h("tbody", {}, (gauntlet.results || []).map((r) => h("tr", {},
          h("td", {}, r.name), h("td", { class: "num" }, r.wins), h("td", { class: "num" }, r.losses), h("td", { class: "num" }, r.draws),
          h("td", { class: "num" }, num(r.winRate, 3)),
          h("td", { class: "num" }, `${num(r.eloDiff)} [${num(r.eloLow)}, ${num(r.eloHigh)}]`))))),
      (gauntlet.gates || []).length > 1 ? h("table", { "data-testid": "gates" },
        h("thead", {}, h("tr", {}, ["Gate", "Opponent", "Verdict", "Why"].map((t) => h("th", {}, t)))),
        h("tbody", {}, gauntlet.gates.map((g) => h("tr", {},
          h("td", {}, g.name), h("td", {}, g.opponent), h("td", {}, tag(g.verdict, g.verdict === "Passed" ? "Promote" : g.verdict === "Failed" ? "Reject" : "Pending")),
          h("td", {}, g.reason))))) : null) : null,
    (d.rollbacks || []).length ? h("div", {},
      h("h2", {}, "Rollbacks"),
      h("table", { "data-testid": "rollbacks" },
        h("thead", {}, h("tr", {}, ["Gen", "From", "To", "Trigger", "Why", "When"].map((t) => h("th", {}, t)))),
        h("tbody", {}, [...d.rollbacks].reverse().map((r) => h("tr", {},
          h("td", { class: "num" }, r.generation), h("td", {}, r.from || "–"), h("td", {}, r.to),
          h("td", {}, r.trigger), h("td", {}, r.message), h("td", {}, r.time || "–")))))) : null,
    h("h2", {}, "History"),
    h("table", { "data-testid": "history" },
      h("thead", {}, h("tr", {}, ["Gen", "Candidate", "Decision", "Win rate", "Elo", "Games", "Moved", "Jobs", "Finished"].map((t) => h("th", {}, t)))),
      h("tbody", {}, history)),
  ];
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function jobLinks(ns, jobs) {
  const items = [];
  for (const kind of ["selfplay", "training", "gauntlet"]) {
    if (jobs && jobs[kind]) items.push(link(`/jobs/${enc(ns)}/${enc(jobs[kind])}`, jobs[kind]), " ");
  }
  return items.length ? items : "–";
}

async function jobPage(ns, name) {
  const d = await getJSON(`/api/jobs/${enc(ns)}/${enc(name)}/tasks`);
  return [h("h1", {}, `Tasks of ${ns}/${name}`), taskTable(d.items)];
}

function taskTable(items) {
  if (!items.length) return h("p", { class: "muted" }, "No tasks.");
  return h("table", {},
    h("thead", {}, h("tr", {}, ["Task", "Role", "Agent", "GPUs", "Phase", "Progress", "Ran for"].map((t) => h("th", {}, t)))),
    h("tbody", {}, items.map((t) => h("tr", { "data-testid": "task-row", "data-role": t.role },
      h("td", {}, link(`/tasks/${enc(t.namespace)}/${enc(t.name)}`, t.name)),
      h("td", {}, t.role), h("td", {}, t.agent || "–"), h("td", {}, (t.gpus || []).length),
      h("td", {}, tag(t.phase)),
      h("td", {}, t.progress ? h("span", {}, bar(t.progress.done, t.progress.total), `${t.progress.done}/${t.progress.total} ${t.progress.unit || ""}`) : (t.progressText || "–")),
      h("td", {}, duration(t.runningSeconds))))));
}

function modelNode(m) {
  const item = h("li", { class: "model" + (m.promoted ? " promoted" : "") + (m.best ? " best" : ""), "data-testid": "lineage-model", "data-model": m.name },
    h("span", { class: "name" }, m.name),
    h("span", { class: "muted" }, ` · gen ${m.generation} · Elo ${rating(m)}${m.loop ? " · loop " + m.loop : ""} `),
    m.promoted ? tag("promoted", "Promote") : null, " ",
    m.best ? tag("best now", "Running") : null);
  if (m.children.length) item.append(h("ul", {}, m.children.map(modelNode)));
  return item;
}

async function lineagePage() {
  const d = await getJSON("/api/lineage");
  return [h("h1", {}, "Model lineage"),
    d.roots.length ? h("ul", { class: "tree", "data-testid": "lineage" }, d.roots.map(modelNode)) : h("p", { class: "muted" }, "No models yet.")];
}

async function matchupsPage() {
  const d = await getJSON("/api/matchups");
  const out = [h("h1", {}, "Matchups"), h("p", { class: "muted" }, "Wins / losses / draws of the row's player against the column's, over every gauntlet game.")];
  if (!d.pools.length) out.push(h("p", { class: "muted" }, "No gauntlet has been played yet."));
  for (const pool of d.pools) {
    const cell = {};
    for (const r of pool.results) cell[r.row + "\u0000" + r.column] = r;
    out.push(h("h2", {}, `${pool.namespace} · ${pool.board} · ${pool.seats} players`),
      h("table", { class: "matrix", "data-testid": "matchups" },
        h("thead", {}, h("tr", {}, h("th", {}, ""), pool.players.map((p) => h("th", {}, p)))),
        h("tbody", {}, pool.players.map((a) => h("tr", {}, h("th", {}, a), pool.players.map((b) => {
          if (a === b) return h("td", { class: "self" }, "");
          const r = cell[a + "\u0000" + b];
          return h("td", {}, r ? `${r.wins}/${r.losses}/${r.draws}` : "");
        }))))));
  }
  return out;
}

async function agentsPage() {
  const d = await getJSON("/api/agents");
  const rows = [];
  for (const a of d.items) {
    const conditions = (a.conditions || []).filter((c) => c.status === "True" && c.type !== "Ready" && c.type !== "Reachable").map((c) => tag(c.type, "Warning"));
    rows.push(h("tr", { "data-testid": "agent-row", "data-agent": a.name },
      h("td", {}, a.name, a.simulated ? h("div", { class: "muted" }, "simulated") : null),
      h("td", {}, tag(a.ready ? "Ready" : "NotReady", a.ready ? "ready" : "notready"), " ", conditions, a.unschedulable ? tag("Unschedulable", "Pending") : null),
      h("td", {}, a.zone || "–"),
      h("td", {}, `${num(a.capacity.cpuMillis / 1000, 1)} cores · ${num(a.capacity.memoryMib / 1024, 1)} GiB · ${num(a.capacity.diskMib / 1024, 0)} GiB disk`),
      h("td", {}, a.gpus.length ? h("table", {}, a.gpus.map((g) => h("tr", { "data-testid": "gpu-row" },
        h("td", {}, `#${g.index} ${g.product}`),
        h("td", {}, tag(g.health || "Healthy", g.health || "Healthy")),
        h("td", {}, g.utilizationPct === null || g.utilizationPct === undefined ? "util –" : h("span", {}, bar(g.utilizationPct, 100), `${g.utilizationPct}%`)),
        h("td", {}, `${g.memoryUsedMib ?? "–"} / ${g.memoryMib} MiB`)))) : h("span", { class: "muted" }, "no GPU"),
        a.live && a.live.error ? h("div", { class: "muted" }, a.live.error) : null),
      h("td", {}, a.tasks.length ? a.tasks.map((t) => h("div", {}, link(`/tasks/${enc(t.namespace)}/${enc(t.name)}`, t.name), " ", tag(t.phase))) : h("span", { class: "muted" }, "idle"))));
  }
  return [h("h1", {}, "Agents"),
    h("table", { "data-testid": "agents" },
      h("thead", {}, h("tr", {}, ["Agent", "Health", "Zone", "Capacity", "GPUs", "Tasks"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows))];
}

let follow = null; // the log being followed: {key, controller}

async function taskPage(ns, name) {
  const d = await getJSON(`/api/tasks/${enc(ns)}/${enc(name)}`);
  const t = d.line;
  const st = d.status || {};
  const pre = h("pre", { class: "log", "data-testid": "log" });
  const live = t.phase === "Pending" || t.phase === "Fetching" || t.phase === "Running";
  const page = [
    h("h1", {}, `Task ${ns}/${name}`),
    h("div", { class: "cards" },
      card("Phase", t.phase), card("Role", t.role), card("Agent", t.agent || "–"),
      card("Attempt", d.spec.attempt), card(t.finished ? "Ran for" : "Running for", duration(t.runningSeconds))),
    h("p", {}, "Job: ", link(`/jobs/${enc(ns)}/${enc(t.job.name)}`, `${t.job.kind} ${t.job.name}`), " · unit ", d.spec.workUnit),
    t.progress ? h("p", {}, "Progress: ", bar(t.progress.done, t.progress.total), `${t.progress.done}/${t.progress.total} ${t.progress.unit || ""}`) : null,
    st.reason ? h("p", { class: st.phase === "Failed" ? "error" : "" }, `${st.reason}: ${st.message || ""}`) : null,
    h("h2", {}, live ? "Log (following)" : "Log"),
  ];
  if (t.role === "copy") {
    // A copy task runs no process: it has no log.
    page.push(h("p", { class: "muted" }, "A copy task runs no process: it pulls a copy of an output and has no log."));
    return { nodes: page, keep: true };
  }
  const key = `${ns}/${name}`;
  if (follow && follow.key === key) {
    page.push(follow.pre);
    return { nodes: page, keep: true };
  }
  if (follow) follow.controller.abort();
  const controller = new AbortController();
  follow = { key, controller, pre };
  streamLog(`/api/tasks/${enc(ns)}/${enc(name)}/log?tail=200&follow=${live}`, pre, controller.signal);
  page.push(pre);
  return { nodes: page, keep: true };
}

async function streamLog(path, pre, signal) {
  try {
    const r = await fetch(path, { credentials: "same-origin", signal });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      pre.textContent = body.message || `${r.status} ${r.statusText}`;
      return;
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        if (pre.textContent === "") pre.after(h("p", { class: "muted" }, "The log is empty."));
        break;
      }
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(decoder.decode(value, { stream: true }));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  } catch (e) {
    if (e.name !== "AbortError") pre.append(`\n[log ended: ${e.message}]`);
  }
}

async function eventsPage() {
  const d = await getJSON("/api/events");
  return [h("h1", {}, "Recent events"),
    d.items.length ? h("table", { "data-testid": "events" },
      h("thead", {}, h("tr", {}, ["When", "Type", "Object", "Reason", "Message", "Count"].map((t) => h("th", {}, t)))),
      h("tbody", {}, d.items.map((e) => h("tr", {},
        h("td", {}, e.lastTimestamp || "–"), h("td", {}, tag(e.type || "Normal", e.type)),
        h("td", {}, `${e.kind} ${e.namespace ? e.namespace + "/" : ""}${e.object}`),
        h("td", {}, e.reason), h("td", {}, e.message), h("td", { class: "num" }, e.count ?? 1)))))
      : h("p", { class: "muted" }, "No events.")];
}

// ---- routing and refresh ----

function route() {
  const parts = window.location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case undefined: return fleetPage;
    case "loops": return () => loopPage(parts[1], parts[2]);
    case "jobs": return () => jobPage(parts[1], parts[2]);
    case "tasks": return () => taskPage(parts[1], parts[2]);
    case "lineage": return lineagePage;
    case "matchups": return matchupsPage;
    case "agents": return agentsPage;
    case "events": return eventsPage;
    default: return async () => [h("h1", {}, "Not found"), h("p", {}, link("/", "Back to the fleet"))];
  }
}

async function refresh() {
  const main = document.getElementById("main");
  const page = route();
  try {
    let result = await page();
    if (!Array.isArray(result)) result = result.nodes;
    main.replaceChildren(...result.filter((n) => n !== null));
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    main.removeAttribute("data-error");
  } catch (e) {
    document.getElementById("updated").textContent = "update failed: " + e.message;
    main.setAttribute("data-error", e.message);
  }
}

function start() {
  refresh();
  window.setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
