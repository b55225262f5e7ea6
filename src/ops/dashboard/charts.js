// The dashboard's charts (see index.html): inline SVG built here from `/api/charts`, no library.
// Labels and tooltips are set as text. Colours come from dashboard.css (classes per state).
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const CHART_W = 900;
const CHART_H = 180;
const PAD = { left: 40, right: 10, top: 10, bottom: 24 };
const OUTCOMES = ["succeeded", "needs_auth", "failed", "dead", "cancelled", "skipped", "running", "queued"];

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function frame(label) {
  const svg = svgEl("svg", { viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: "img", class: "svg-chart" });
  svg.append(svgEl("title", {}, label));
  return svg;
}

/** The y axis: 0, the middle and the top, with grid lines. */
function yAxis(svg, max) {
  const plotH = CHART_H - PAD.top - PAD.bottom;
  // Whole numbers only: a middle line only when it is one.
  for (const fraction of max % 2 === 0 ? [0, 0.5, 1] : [0, 1]) {
    const y = PAD.top + plotH * (1 - fraction);
    svg.append(svgEl("line", { x1: PAD.left, x2: CHART_W - PAD.right, y1: y, y2: y, class: "grid" }));
    const value = Math.round(max * fraction);
    svg.append(svgEl("text", { x: PAD.left - 4, y: y + 4, class: "axis", "text-anchor": "end" }, value));
  }
}

function legend(container, names) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const name of names) {
    const item = document.createElement("span");
    item.className = "key s-" + name;
    item.textContent = name;
    box.append(item);
  }
  container.append(box);
}

/** Stacked bars: one per hour, a segment per state. */
function hourlyChart(container, hourly, labelEvery, label) {
  const n = Object.values(hourly.series)[0]?.length || 0;
  const states = OUTCOMES.filter((s) => (hourly.series[s] || []).some((v) => v > 0));
  const totals = Array.from({ length: n }, (_, i) => states.reduce((sum, s) => sum + hourly.series[s][i], 0));
  const max = Math.max(2, ...totals);
  const svg = frame(label);
  yAxis(svg, max);
  const plotW = CHART_W - PAD.left - PAD.right;
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const barW = plotW / Math.max(1, n);
  for (let i = 0; i < n; i++) {
    const start = new Date(hourly.start_ms + i * hourly.bucket_ms);
    let y = PAD.top + plotH;
    for (const state of states) {
      const count = hourly.series[state][i];
      if (!count) continue;
      const h = (count / max) * plotH;
      y -= h;
      const rect = svgEl("rect", { x: PAD.left + i * barW + 0.5, y, width: Math.max(1, barW - 1), height: h,
        class: "s-" + state });
      rect.append(svgEl("title", {}, `${start.toISOString()}: ${count} ${state}`));
      svg.append(rect);
    }
    if (i % labelEvery === 0) {
      const text = labelEvery >= 24 ? start.toISOString().slice(5, 10) : start.toISOString().slice(11, 16);
      svg.append(svgEl("text", { x: PAD.left + i * barW, y: CHART_H - 6, class: "axis" }, text));
    }
  }
  container.replaceChildren(svg);
  legend(container, states.length ? states : ["no runs"]);
}

/** Lines of queue depth and in-flight runs over the sampled hour. */
function depthChart(container, samples) {
  const svg = frame("Queue depth and runs in flight");
  const series = ["pending", "scheduled", "running"];
  const max = Math.max(1, ...samples.flatMap((s) => series.map((name) => s[name])));
  yAxis(svg, max);
  const plotW = CHART_W - PAD.left - PAD.right;
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const end = samples.length ? samples[samples.length - 1].at_ms : Date.now();
  const x = (ms) => PAD.left + plotW * (1 - (end - ms) / 3600000);
  const y = (v) => PAD.top + plotH * (1 - v / max);
  for (const name of series) {
    const points = samples.map((s) => `${x(s.at_ms).toFixed(1)},${y(s[name]).toFixed(1)}`).join(" ");
    const line = svgEl("polyline", { points, class: "line s-" + name });
    line.append(svgEl("title", {}, name));
    svg.append(line);
    for (const s of samples) {
      const dot = svgEl("circle", { cx: x(s.at_ms), cy: y(s[name]), r: 2.5, class: "s-" + name });
      dot.append(svgEl("title", {}, `${new Date(s.at_ms).toISOString()}: ${s[name]} ${name}`));
      svg.append(dot);
    }
  }
  for (const minutes of [60, 45, 30, 15, 0]) {
    svg.append(svgEl("text", { x: x(end - minutes * 60000) - 10, y: CHART_H - 6, class: "axis" },
      minutes ? `-${minutes} min` : "now"));
  }
  container.replaceChildren(svg);
  legend(container, samples.length ? series : ["no samples yet"]);
}

/** Per schedule: grouped bars of users, succeeded and needs_auth per recent tick. */
function ticksChart(container, ticks) {
  const parts = [];
  const names = ["users", "succeeded", "needs_auth"];
  for (const [schedule, list] of Object.entries(ticks)) {
    const title = document.createElement("h3");
    title.textContent = schedule;
    const svg = frame(`Recent ticks of ${schedule}`);
    const max = Math.max(1, ...list.flatMap((t) => names.map((name) => t[name])));
    yAxis(svg, max);
    const plotW = CHART_W - PAD.left - PAD.right;
    const plotH = CHART_H - PAD.top - PAD.bottom;
    const groupW = plotW / Math.max(8, list.length);
    list.forEach((tick, i) => {
      names.forEach((name, j) => {
        const h = (tick[name] / max) * plotH;
        const rect = svgEl("rect", { x: PAD.left + i * groupW + j * (groupW / 4) + 2, y: PAD.top + plotH - h,
          width: groupW / 4, height: h, class: "s-" + (name === "users" ? "queued" : name) });
        rect.append(svgEl("title", {}, `${tick.at}: ${tick[name]} ${name}`));
        svg.append(rect);
      });
      svg.append(svgEl("text", { x: PAD.left + i * groupW, y: CHART_H - 6, class: "axis" }, tick.at.slice(5, 16)));
    });
    parts.push(title, svg);
  }
  if (parts.length === 0) {
    const none = document.createElement("p");
    none.className = "muted";
    none.textContent = "No schedule has ticked since this server started.";
    parts.push(none);
  }
  container.replaceChildren(...parts);
  // Users are drawn in the `queued` colour.
  if (Object.keys(ticks).length) legend(container, ["queued", "succeeded", "needs_auth"]);
}

/** Draws every chart from the `/api/charts` answer. */
function drawCharts(data) {
  hourlyChart(document.getElementById("chart-24h"), data.hours_24, 3, "Runs per hour, last 24 hours");
  hourlyChart(document.getElementById("chart-7d"), data.days_7, 24, "Runs per hour, last 7 days");
  depthChart(document.getElementById("chart-depth"), data.depth);
  ticksChart(document.getElementById("chart-ticks"), data.ticks);
}
