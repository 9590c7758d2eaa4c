// The built-in dashboard: reads the service's JSON API and draws it, again every few seconds.
// uPlot (static/vendor/uplot) is loaded before this module, as the global `uPlot`.

const REFRESH_MS = 3000;
const CHART_HEIGHT = 220;
const METRICS = [
  ["accuracy", "Accuracy", "#1d4ed8"],
  ["precision", "Precision", "#15803d"],
  ["recall", "Recall", "#c2410c"],
  ["f1_score", "F1", "#7e22ce"],
];
const MORE = [
  ["specificity", "Specificity"],
  ["balanced_accuracy", "Balanced accuracy"],
  ["matthews", "Matthews correlation"],
  ["prevalence", "Prevalence (actual 1)"],
  ["positive_rate", "Predicted 1"],
  ["baseline_accuracy", "Majority-class accuracy"],
];
const SCORES = [
  ["roc_auc", "ROC AUC"],
  ["average_precision", "Average precision"],
  ["log_loss", "Log loss"],
  ["brier", "Brier score"],
  ["expected_calibration_error", "Calibration error"],
];
const STATUSES = ["stable", "warning", "drift"];

const $ = (id) => document.getElementById(id);
const selection = { model: "", version: "", window: "1h", time: "arrival" };
let generation = 0; // a newer refresh makes the answers of older ones stale
let charts = null;

// Formatting

const percent = (x) => `${(100 * x).toFixed(1)}%`;
const wholePercent = (x) => `${Math.round(100 * x)}%`;
const decimal = (x) => (x === null ? "–" : x.toFixed(3));
const count = (n) => n.toLocaleString("en-US");
const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");
const moment = (t) => new Date(t * 1000).toLocaleString("en-GB");
const interval = (e) => (e.low === undefined ? "" : `${percent(e.low)} – ${percent(e.high)}`);

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells.map((text, i) => {
    const cell = document.createElement(i ? "td" : "th");
    cell.textContent = text;
    return cell;
  }));
  return tr;
}

// Reading the API

// Under --protect-reads the API wants a token with the read scope: asked once, kept in the tab.
const TOKEN = "feedback-monitor-token";
let tokenDeclined = false;

function authorization() {
  const token = sessionStorage.getItem(TOKEN);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askToken() {
  if (tokenDeclined) return false;
  const token = window.prompt("This service protects its reads: a token with the read scope");
  tokenDeclined = !token;
  if (token) sessionStorage.setItem(TOKEN, token.trim());
  return Boolean(token);
}

async function getJSON(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const url = query ? `${path}?${query}` : path;
  const read = () => fetch(url, { cache: "no-store", headers: authorization() });
  let response = await read();
  if (response.status === 401 && askToken()) response = await read();
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return response.json();
}

async function load({ model, version, window, time }, summary) {
  const base = `api/v1/models/${encodeURIComponent(model)}`;
  const metrics = await getJSON(`${base}/metrics`, { version, window, time });
  const range = { start: metrics.start, end: metrics.end };
  const [series, drift] = await Promise.all([
    getJSON(`${base}/series`, { version, time, ...range }),
    getJSON(`${base}/drift`, { version }),
  ]);
  return { metrics, series, drift, summary };
}

async function refresh() {
  const ticket = ++generation;
  try {
    const { models } = await getJSON("api/v1/models");
    if (ticket !== generation) return;
    if (!models.length) {
      show(false, "Waiting for feedback");
      return;
    }
    const summary = choose(models);
    const answers = await load({ ...selection }, summary);
    if (ticket !== generation) return;
    show(true, `Updated at ${clock(Date.now() / 1000)}`);
    render(answers);
  } catch (error) {
    if (ticket === generation) status(`Cannot read the service (${error.message}); retrying`);
  }
}

async function poll() {
  if (!document.hidden) await refresh(); // a tab in the background asks nothing
  setTimeout(poll, REFRESH_MS);
}

// The picker: its state lives in the address (#model=..&version=..), so a view can be shared

function readAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const key of Object.keys(selection)) {
    if (params.has(key)) selection[key] = params.get(key);
  }
  for (const key of ["window", "time"]) {
    const options = [...$(key).options].map((o) => o.value);
    if (!options.includes(selection[key])) selection[key] = $(key).value;
    $(key).value = selection[key];
  }
}

function choose(models) {
  const names = [...new Set(models.map((m) => m.model))];
  if (!names.includes(selection.model)) selection.model = names[0];
  const ofModel = models.filter((m) => m.model === selection.model);
  const versions = ofModel.map((m) => m.version);
  if (!versions.includes(selection.version)) selection.version = versions.at(-1);
  setOptions($("model"), names, (name) => name, selection.model);
  setOptions($("version"), versions, (v) => v || "(none)", selection.version);
  history.replaceState(null, "", `#${new URLSearchParams(selection)}`);
  return ofModel.find((m) => m.version === selection.version);
}

function setOptions(select, values, label, chosen) {
  const current = [...select.options].map((o) => o.value);
  if (current.join("\n") !== values.join("\n")) {
    select.replaceChildren(...values.map((v) => new Option(label(v), v)));
  }
  select.value = chosen;
}

function listen() {
  for (const key of Object.keys(selection)) {
    $(key).addEventListener("change", () => {
      selection[key] = $(key).value;
      if (key === "model") selection.version = null; // its latest
      refresh();
    });
  }
  window.addEventListener("hashchange", () => {
    readAddress();
    refresh();
  });
  window.addEventListener("resize", () => charts?.resize());
  document.addEventListener("visibilitychange", () => document.hidden || refresh());
}

// Drawing

function status(text) {
  $("status").textContent = text;
}

function show(some, text) {
  $("empty").hidden = some;
  $("dashboard").hidden = !some;
  status(text);
}

function render({ metrics, series, drift, summary }) {
  renderTiles(metrics);
  renderConfusion(metrics);
  renderMore(metrics);
  renderLabels(summary);
  renderDrift(drift);
  charts ??= new Charts();
  charts.update(series, drift.events);
}

function renderTiles(answer) {
  $("tile-n").querySelector(".value").textContent = count(answer.n);
  for (const [name] of METRICS) {
    const estimate = answer.metrics[name];
    const tile = $(`tile-${name}`);
    tile.querySelector(".value").textContent = answer.n ? percent(estimate.value) : "–";
    tile.querySelector(".interval").textContent = answer.n ? interval(estimate) : "no feedback";
  }
}

function renderConfusion({ counts, n }) {
  for (const [cell, value] of Object.entries(counts)) {
    const td = $(`cell-${cell}`);
    td.querySelector("output").textContent = count(value);
    td.style.setProperty("--share", n ? value / n : 0);
  }
}

function renderMore({ metrics, scores }) {
  const rows = MORE.map(([name, label]) => {
    const e = metrics[name];
    const value = name === "matthews" ? decimal(e.value) : percent(e.value);
    return row(label, value, interval(e));
  });
  for (const [name, label] of scores ? SCORES : []) rows.push(row(label, decimal(scores[name]), ""));
  $("more-metrics").tBodies[0].replaceChildren(...rows);
}

function renderLabels({ counts, metrics, predictions: p }) {
  const total = counts.tp + counts.tn + counts.fp + counts.fn;
  $("labels").tBodies[0].replaceChildren(
    row("Predictions pending a label", count(p.pending)),
    row("Predictions labelled", count(p.labelled)),
    row("Predictions expired unlabelled", count(p.expired)),
    row("Label coverage", percent(p.label_coverage)),
    row("Feedback counted", count(total)),
    row("Accuracy", total ? percent(metrics.accuracy) : "–"),
  );
}

function renderDrift({ detectors, events }) {
  $("detectors").replaceChildren(...detectors.map((d) => {
    const li = document.createElement("li");
    li.className = STATUSES[d.status];
    li.textContent = `${d.detector}: ${STATUSES[d.status]} · ${count(d.detections)} found`;
    return li;
  }));
  const rows = events.map((e) => row(
    moment(e.time),
    e.detector,
    e.statistic.toPrecision(4),
    `${percent(e.accuracy_before.value)} of ${count(e.n_before)}`,
    `${percent(e.accuracy_after.value)} of ${count(e.n_after)}`,
  ));
  if (!rows.length) {
    rows.push(row("No drift found"));
    rows[0].cells[0].colSpan = 5;
  }
  $("drift-events").tBodies[0].replaceChildren(...rows);
}

// The charts: the x axis is the window; steps without feedback are gaps

class Charts {
  constructor() {
    this.range = [0, 1];
    this.events = [];
    $("legend").replaceChildren(...METRICS.map(([, label, color]) => {
      const li = document.createElement("li");
      li.textContent = label;
      li.style.setProperty("--color", color);
      return li;
    }));
    this.metrics = this.plot($("metrics-chart"), metricSeries(), {
      y: { range: [0, 1] },
    }, { bands: metricBands(), axes: [{}, { values: (u, ticks) => ticks.map(wholePercent) }] });
    this.volume = this.plot($("volume-chart"), [{
      label: "Feedback", stroke: "#475569", fill: "#94a3b880",
      paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false },
    }], { y: { range: (u, min, max) => [0, Math.max(1, max)] } }, {});
  }

  plot(element, series, scales, options) {
    const opts = {
      width: element.clientWidth,
      height: CHART_HEIGHT,
      legend: { show: false },
      scales: { x: { time: true, range: () => this.range }, ...scales },
      series: [{}, ...series],
      hooks: { draw: [(u) => this.mark(u)] },
      ...options,
    };
    return new uPlot(opts, [[], ...series.map(() => [])], element);
  }

  update(series, events) {
    const x = [];
    for (let t = series.start; t < series.end; t += series.step) x.push(t);
    const points = new Map(series.points.map((p) => [p.start, p]));
    const at = (value) => x.map((t) => (points.has(t) ? value(points.get(t)) : null));
    this.range = [series.start, series.end];
    this.events = events.filter((e) => e.time >= series.start && e.time <= series.end);
    const estimates = METRICS.flatMap(([name]) => ["value", "low", "high"].map(
      (key) => at((p) => p.metrics[name][key]),
    ));
    this.metrics.setData([x, ...estimates]);
    this.volume.setData([x, at((p) => p.n)]);
  }

  // Drift events as red vertical lines over the plot, one element each (with a tooltip).
  mark(u) {
    u.over.querySelectorAll(".drift-marker").forEach((m) => m.remove());
    for (const event of this.events) {
      const marker = document.createElement("div");
      marker.className = "drift-marker";
      marker.style.left = `${u.valToPos(event.time, "x")}px`;
      marker.title = `${event.detector}: drift at ${moment(event.time)}; accuracy `
        + `${percent(event.accuracy_before.value)} before, ${percent(event.accuracy_after.value)} after`;
      u.over.append(marker);
    }
  }

  resize() {
    for (const u of [this.metrics, this.volume]) {
      u.setSize({ width: u.root.parentElement.clientWidth, height: CHART_HEIGHT });
    }
  }
}

function metricSeries() {
  return METRICS.flatMap(([, label, color]) => [
    { label, stroke: color, width: 2 },
    { label: `${label} low`, stroke: "transparent", points: { show: false } },
    { label: `${label} high`, stroke: "transparent", points: { show: false } },
  ]);
}

function metricBands() {
  // Series 1 + 3i is metric i; its interval lies between series 2 + 3i (low) and 3 + 3i (high).
  return METRICS.map(([, , color], i) => ({ series: [3 + 3 * i, 2 + 3 * i], fill: `${color}22` }));
}

readAddress();
listen();
poll();
