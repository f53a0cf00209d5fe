// A small time-series line chart on a canvas, written for this dashboard (no library).
//
//   const chart = new LineChart(canvas, {series: [{key: "in", label: "in", color: "#4fb3ff"}],
//                                        format: formatRate, log: false});
//   chart.push(timeMs, {in: 1234});   // null or a missing key leaves a gap
//   chart.draw();
//
// chart.series[i].points holds the data as [timeMs, value] pairs, oldest first; the dashboard's
// tests read it from there.
"use strict";

const GRID = "#263140";
const MUTED = "#8796a8";

class LineChart {
  constructor(canvas, options) {
    this.canvas = canvas;
    this.format = options.format || String;
    this.log = Boolean(options.log);
    this.keep = options.keep || 300000; // ms of data kept; the x axis grows to it from 60 s
    this.minSpan = options.minSpan || 60000;
    this.title = options.title || "";
    this.series = options.series.map((s) => ({ ...s, points: [] }));
  }

  push(t, values) {
    for (const s of this.series) {
      const v = values[s.key];
      const last = s.points[s.points.length - 1];
      if (last && last[0] >= t) continue;
      s.points.push([t, v === undefined || v === null ? null : Number(v)]);
      while (s.points.length && s.points[0][0] < t - this.keep) s.points.shift();
    }
  }

  latest(key) {
    const s = this.series.find((x) => x.key === key);
    return s && s.points.length ? s.points[s.points.length - 1][1] : null;
  }

  // The y range: 0..max for linear charts, whole powers of ten for log charts.
  range() {
    const values = this.series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null);
    if (!this.log) {
      const max = Math.max(1, ...values);
      return [0, niceCeil(max)];
    }
    const positive = values.filter((v) => v > 0);
    if (!positive.length) return [1e3, 1e6];
    const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...positive))));
    const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...positive) * 1.01)));
    return [lo, Math.max(hi, lo * 10)];
  }

  ticks(lo, hi) {
    if (!this.log) return [0, 1, 2, 3, 4].map((i) => lo + ((hi - lo) * i) / 4);
    const out = [];
    for (let v = lo; v <= hi * 1.0001; v *= 10) out.push(v);
    return out;
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    if (!width || !height) return;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const legendLines = this.legend(ctx, 8, width - 8);
    const pad = { left: 58, right: 10, top: 10 + 16 * legendLines, bottom: 20 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const ends = this.series.flatMap((s) => s.points.map((p) => p[0]));
    const now = Math.max(0, ...ends);
    const span = Math.min(this.keep, Math.max(this.minSpan, now - Math.min(now, ...ends)));
    const t0 = now - span;
    const [lo, hi] = this.range();
    const yOf = this.log
      ? (v) => pad.top + plotH * (1 - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)))
      : (v) => pad.top + plotH * (1 - (v - lo) / (hi - lo));
    const xOf = (t) => pad.left + (plotW * (t - t0)) / span;

    ctx.font = "11px DejaVu Sans, sans-serif";
    ctx.fillStyle = MUTED;
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of this.ticks(lo, hi)) {
      const y = Math.round(yOf(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, y);
      ctx.lineTo(width - pad.right, y);
      ctx.stroke();
      ctx.fillText(this.format(v), pad.left - 6, y);
    }
    ctx.textBaseline = "top";
    for (let i = 0; i <= 3; i++) {
      const t = t0 + (span * i) / 3;
      ctx.textAlign = i === 0 ? "left" : i === 3 ? "right" : "center";
      ctx.fillText(new Date(t).toLocaleTimeString([], { hour12: false }), xOf(t), height - pad.bottom + 5);
    }
    for (const s of this.series) this.line(ctx, s, xOf, yOf, lo, t0);
  }

  // The series as a line, with gaps where a value is missing; a lone point is a dot.
  line(ctx, s, xOf, yOf, lo, t0) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 1.8;
    const runs = [[]];
    for (const [t, v] of s.points) {
      if (v === null || t < t0 || (this.log && v <= 0)) runs.push([]);
      else runs[runs.length - 1].push([xOf(t), yOf(Math.max(v, lo))]);
    }
    for (const run of runs) {
      if (run.length === 1) {
        ctx.beginPath();
        ctx.arc(run[0][0], run[0][1], 2.5, 0, 2 * Math.PI);
        ctx.fill();
      } else if (run.length > 1) {
        ctx.beginPath();
        run.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.stroke();
      }
    }
  }

  // Title and one entry per series (with its latest value), wrapped; returns the line count.
  legend(ctx, left, right) {
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.font = "bold 12px DejaVu Sans, sans-serif";
    ctx.fillStyle = "#d8e0e8";
    ctx.fillText(this.title, left, 2);
    let x = left + ctx.measureText(this.title).width + 14;
    let line = 0;
    ctx.font = "11px DejaVu Sans, sans-serif";
    for (const s of this.series) {
      const v = this.latest(s.key);
      const text = `${s.label} ${v === null ? "-" : this.format(v)}`;
      const w = ctx.measureText(text).width + 14;
      if (x + w > right && x > left) {
        line += 1;
        x = left;
      }
      const y = 2 + line * 16;
      ctx.fillStyle = s.color;
      ctx.fillRect(x, y + 4, 10, 3);
      ctx.fillStyle = MUTED;
      ctx.fillText(text, x + 14, y);
      x += w + 12;
    }
    return line + 1;
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function formatRate(v) {
  if (v === null || v === undefined) return "-";
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 0 : 1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e4 ? 0 : 1)}k`;
  return v >= 10 || v === 0 ? `${Math.round(v)}` : v.toFixed(1);
}

function formatNs(v) {
  if (v === null || v === undefined) return "-";
  const units = [[1e9, "s"], [1e6, "ms"], [1e3, "\u00b5s"]];
  for (const [size, unit] of units) {
    if (v >= size) {
      const x = v / size;
      return `${x >= 100 ? Math.round(x) : x.toPrecision(2)}${unit}`;
    }
  }
  return `${Math.round(v)}ns`;
}

window.LineChart = LineChart;
window.formatRate = formatRate;
window.formatNs = formatNs;
