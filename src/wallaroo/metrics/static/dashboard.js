// The worker dashboard: polls /api/stats, keeps the chart series, draws the graph and panels.
// window.wallaroo.charts maps "pipeline:<name>:throughput|latency" and
// "stage:<id>:throughput|latency" to LineChart objects; window.wallaroo.stats is the last
// document. Names from the application are only ever set as text, never parsed as HTML.
"use strict";

const COLORS = { in: "#4fb3ff", out: "#42c98a", p50: "#42c98a", p95: "#f2b84b", p99: "#ef6a6a", p999: "#c77dff" };
const LATENCY = [["p50", "p50"], ["p95", "p95"], ["p99", "p99"], ["p999", "p99.9"]];
const state = { charts: {}, stats: null, polls: 0, errors: 0, built: "" };
window.wallaroo = state;

function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "rect", "path", "text", "title", "marker", "defs"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function num(v) {
  return v === null || v === undefined ? "-" : Number(v).toLocaleString("en-US", { maximumFractionDigits: 0 });
}

function chartPair(prefix, title) {
  const canvases = [el("canvas", { class: "chart" }), el("canvas", { class: "chart" })];
  state.charts[`${prefix}:throughput`] = new LineChart(canvases[0], {
    title: `${title} msg/s`,
    format: formatRate,
    series: [{ key: "in", label: "in", color: COLORS.in }, { key: "out", label: "out", color: COLORS.out }],
  });
  state.charts[`${prefix}:latency`] = new LineChart(canvases[1], {
    title: "latency",
    format: formatNs,
    log: true,
    series: LATENCY.map(([key, label]) => ({ key, label, color: COLORS[key] })),
  });
  return el("div", { class: "charts" }, ...canvases);
}

// Cards and charts are built once per shape of the application (pipelines and stages).
function build(doc) {
  const shape = JSON.stringify([doc.pipelines.map((p) => p.name), doc.stages.map((s) => s.id)]);
  if (shape === state.built) return;
  state.built = shape;
  state.charts = {};
  const pipelines = document.getElementById("pipelines");
  pipelines.replaceChildren();
  for (const p of doc.pipelines) {
    const card = el("div", { class: "card" }, el("h2", { text: p.name }));
    card.append(el("div", { class: "counters", id: `pipeline-counters-${p.name}` }));
    card.append(chartPair(`pipeline:${p.name}`, "throughput"));
    pipelines.append(card);
  }
  const stages = document.getElementById("stages");
  stages.replaceChildren();
  for (const s of doc.stages) {
    const title = el("h2", { text: s.steps.join(" \u2192 ") || "pass" });
    title.append(" ", el("small", { text: `${s.pipeline}${s.keyed ? " \u00b7 keyed" : ""}` }));
    const card = el("div", { class: "card" }, title);
    card.append(el("div", { class: "counters", id: `stage-counters-${s.id}` }));
    card.append(chartPair(`stage:${s.id}`, "throughput"));
    stages.append(card);
  }
}

function addPoint(point) {
  for (const [name, values] of Object.entries(point.pipelines)) {
    for (const kind of ["throughput", "latency"]) state.charts[`pipeline:${name}:${kind}`]?.push(point.t, values);
  }
  for (const [id, values] of Object.entries(point.stages)) {
    for (const kind of ["throughput", "latency"]) state.charts[`stage:${id}:${kind}`]?.push(point.t, values);
  }
}

function tiles(doc) {
  const inRate = doc.pipelines.reduce((a, p) => a + p.rate_in, 0);
  const outRate = doc.pipelines.reduce((a, p) => a + p.rate_out, 0);
  const p99 = Math.max(0, ...doc.pipelines.map((p) => (p.window && p.window.p99) || 0));
  const open = doc.sources.reduce((a, s) => a + s.connections, 0);
  const items = [
    ["messages in / s", formatRate(inRate)],
    ["messages out / s", formatRate(outRate)],
    ["p99 source to sink", p99 ? formatNs(p99) : "-"],
    ["dead letters", num(doc.dead_letters.total), doc.dead_letters.total > 0],
    ["source connections", num(open)],
    ["backpressure", doc.gate.open ? "none" : doc.gate.blockers.join(", "), !doc.gate.open],
  ];
  if (doc.checkpoints) items.push(["checkpoints", `${num(doc.checkpoints.taken)} \u00b7 ${formatNs(doc.checkpoints.last_duration_s * 1e9)}`]);
  document.getElementById("tiles").replaceChildren(
    ...items.map(([label, value, bad]) =>
      el("div", { class: bad ? "tile bad" : "tile" }, el("div", { class: "label", text: label }), el("div", { class: "value", text: value })),
    ),
  );
}

function table(id, head, rows) {
  const numeric = head.map((h) => h.endsWith("#"));
  const header = el("tr", {}, ...head.map((h, i) => el("th", { class: numeric[i] ? "num" : "", text: h.replace(/#$/, "") })));
  const body = rows.map((r) => el("tr", {}, ...r.map((c, i) => (c instanceof Node ? el("td", {}, c) : el("td", { class: numeric[i] ? "num" : "", text: String(c) })))));
  document.getElementById(id).replaceChildren(header, ...body);
}

function yes(flag, good = "up", bad = "down") {
  return el("span", { class: flag ? "ok" : "no", text: flag ? good : bad });
}

function panels(doc) {
  table("sources", ["source", "kind", "address", "conn#", "messages#", "msg/s#", "credits#", "errors#"],
    doc.sources.map((s) => [s.name, s.kind, s.address, s.connections, num(s.messages), formatRate(s.rate), s.credits === null ? "-" : num(s.credits), s.errors]));
  table("sinks", ["sink", "address", "link", "messages#", "msg/s#", "buffered#", "connects#"],
    doc.sinks.map((s) => [s.name, s.address, yes(s.connected), num(s.messages), formatRate(s.rate), num(s.buffered_bytes), s.connects]));
  const dead = doc.dead_letters;
  const badge = document.getElementById("dead-total");
  badge.textContent = num(dead.total);
  badge.className = dead.total > 0 ? "badge bad" : "badge";
  document.getElementById("dead-path").textContent = dead.path ? `written to ${dead.path}` : "kept in memory";
  table("dead", ["stage", "count#"], dead.by_stage.map((d) => [d.stage, num(d.count)]));
  const rows = doc.states.map((s) => [`state ${s.name}`, `${num(s.keys)} keys in ${s.key_groups_used} key groups`]);
  for (const w of doc.windows) rows.push([`window ${w.name}`, `${num(w.open)} open, ${num(w.fired)} fired, ${num(w.late)} late`]);
  const cp = doc.checkpoints;
  if (cp) {
    rows.push(["checkpoints", `${num(cp.taken)} taken, ${cp.aborted} aborted, last committed ${cp.last_committed}`]);
    const recent = cp.recent_durations_s.map((s) => formatNs(s * 1e9)).slice(-6).join(", ");
    rows.push(["checkpoint durations", recent || "-"]);
  } else rows.push(["checkpoints", "off (no --run-with-resilience)"]);
  table("state", ["what", "value"], rows);
}

function counters(doc) {
  for (const p of doc.pipelines) {
    const node = document.getElementById(`pipeline-counters-${p.name}`);
    if (node) node.textContent = `in ${num(p.messages_in)} \u00b7 out ${num(p.messages_out)} \u00b7 dead ${num(p.dead_letters)} \u00b7 sources ${p.sources.join(", ")} \u00b7 sinks ${p.sinks.join(", ") || "none"}`;
  }
  for (const s of doc.stages) {
    const node = document.getElementById(`stage-counters-${s.id}`);
    const p99 = s.window && s.window.p99;
    if (node) node.textContent = `in ${num(s.messages_in)} \u00b7 out ${num(s.messages_out)} \u00b7 dead ${num(s.dead_letters)} \u00b7 p99 ${formatNs(p99)}`;
  }
}

// Columns by longest path from the sources; each node shows its rate.
function graph(doc) {
  const { nodes, edges } = doc.graph;
  const depth = Object.fromEntries(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) for (const [a, b] of edges) depth[b] = Math.max(depth[b], depth[a] + 1);
  const columns = [];
  for (const n of nodes) (columns[depth[n.id]] ||= []).push(n);
  const W = 210, H = 48, GX = 70, GY = 18;
  const at = {};
  columns.forEach((col, c) => col.forEach((n, r) => (at[n.id] = { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const rate = rates(doc);
  const svg = document.getElementById("graph");
  const width = 20 + columns.length * (W + GX) - GX;
  const height = 20 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const arrow = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#4b5b70" }));
  const parts = [el("defs", {}, arrow)];
  for (const [a, b] of edges) {
    const p = at[a], q = at[b];
    const x1 = p.x + W, y1 = p.y + H / 2, x2 = q.x, y2 = q.y + H / 2, mid = (x1 + x2) / 2;
    parts.push(el("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 2},${y2}`, "marker-end": "url(#arrow)" }));
  }
  for (const n of nodes) {
    const { x, y } = at[n.id];
    const kind = n.kind === "stage" && n.keyed ? "stage keyed" : n.kind;
    const label = n.label.length > 30 ? `${n.label.slice(0, 29)}\u2026` : n.label;
    parts.push(el("g", { class: `node ${kind}`, "data-id": n.id },
      el("title", { text: `${n.kind}: ${n.label}` }),
      el("rect", { x, y, width: W, height: H }),
      el("text", { x: x + 10, y: y + 19, text: label }),
      el("text", { class: "rate", x: x + 10, y: y + 37, text: n.id in rate ? `${n.kind} \u00b7 ${formatRate(rate[n.id])} msg/s` : n.kind })));
  }
  svg.replaceChildren(...parts);
}

function rates(doc) {
  const out = {};
  const sources = Object.fromEntries(doc.sources.map((s) => [s.name, s.rate]));
  for (const n of doc.graph.nodes) {
    if (n.kind === "source" && n.label in sources) out[n.id] = sources[n.label];
    else if (n.kind === "sink" && doc.sinks[n.ref]) out[n.id] = doc.sinks[n.ref].rate;
  }
  for (const s of doc.stages) out[`segment:${s.id}`] = s.rate_in;
  return out;
}

function render(doc) {
  state.stats = doc;
  document.getElementById("application").textContent = doc.application;
  document.getElementById("worker").textContent = doc.worker;
  build(doc);
  addPoint(doc.point);
  tiles(doc);
  counters(doc);
  graph(doc);
  panels(doc);
  for (const chart of Object.values(state.charts)) chart.draw();
}

function status(live, text) {
  document.getElementById("status-dot").className = live ? "dot live" : "dot stale";
  document.getElementById("status").textContent = text;
}

async function poll() {
  try {
    const response = await fetch("/api/stats", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    state.polls += 1;
    status(true, `live \u00b7 updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
  } catch (err) {
    state.errors += 1;
    status(false, `no answer from the worker (${err.message})`);
  }
  const every = state.stats ? state.stats.interval_s * 1000 : 1000;
  setTimeout(poll, Math.max(250, every));
}

async function start() {
  try {
    const [history, stats] = await Promise.all(["/api/history", "/api/stats"].map((u) => fetch(u).then((r) => r.json())));
    build(stats);
    for (const point of history) addPoint(point);
  } catch (err) {
    status(false, `no answer from the worker (${err.message})`);
  }
  poll();
}

window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.draw()));
start();
