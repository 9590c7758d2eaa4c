// The built-in dashboard: reads the service's JSON API and draws it, again every few seconds.
// uPlot (static/vendor/uplot) is loaded before this module, as the global `uPlot`.

const REFRESH_MS = 3000;
const RATE_LIMITED_TURNS = 5; // waits for a rate-limited read's turn before it fails
const TIMEOUT_MS = 10_000; // a read that long unanswered (a hung service) fails, and is retried
const CHART_HEIGHT = 240;
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif';
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
// version null: the model's latest
const selection = { model: "", version: null, window: "1h", time: "arrival" };
let generation = 0; // a newer refresh makes the answers of older ones stale
let charts = null;

// Formatting

const DASH = "–"; // a metric without a denominator, or no number at all
const percent = (x) => `${(100 * x).toFixed(1)}%`;
const wholePercent = (x) => `${Math.round(100 * x)}%`;
const decimal = (x) => (x === null ? DASH : x.toFixed(3));
const count = (n) => n.toLocaleString("en-US");
const interval = (e) => (e.low === undefined ? "" : `${percent(e.low)} – ${percent(e.high)}`);
const natural = new Intl.Collator("en", { numeric: true }).compare; // v9 before v10

// Times: local, as YYYY-MM-DD HH:MM:SS, and the zone named by its offset (UTC+01:00).
const pad = (n) => String(n).padStart(2, "0");
const day = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
const hhmm = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;
const hhmmss = (d) => `${hhmm(d)}:${pad(d.getSeconds())}`;

function zone(t) {
  const east = -new Date(t * 1000).getTimezoneOffset();
  const minutes = Math.abs(east);
  return `UTC${east < 0 ? "-" : "+"}${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`;
}

const clock = (t) => `${hhmmss(new Date(t * 1000))} ${zone(t)}`;
const moment = (t) => `${day(new Date(t * 1000))} ${clock(t)}`;

// A window's length in seconds: 15m, 1h, 6h, 1d, 7d.
const seconds = (text) => Number(text.slice(0, -1)) * { m: 60, h: 3600, d: 86400 }[text.at(-1)];

// The metrics whose denominator is zero, which the API gives as 0.0 (with the interval 0 to 1):
// the page shows them as a dash, as the report does (Counts.undefined).
function undefinedMetrics({ tp, tn, fp, fn }) {
  const n = tp + tn + fp + fn;
  const predicted = tp + fp;
  const actual = tp + fn;
  const denominators = {
    accuracy: n,
    precision: predicted,
    recall: actual,
    f1_score: 2 * tp + fp + fn,
    specificity: tn + fp,
    balanced_accuracy: n,
    matthews: predicted * actual * (n - predicted) * (n - actual),
    prevalence: n,
    positive_rate: n,
    baseline_accuracy: n,
  };
  return new Set(Object.keys(denominators).filter((name) => !denominators[name]));
}

// An accuracy of `n` outcomes (of the hour around a drift).
const accuracyOf = (e, n) => `${n ? percent(e.value) : DASH} of ${count(n)}`;

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

// A token refused (401: unknown) or without the read scope (403) is forgotten, also for the
// next load of the page, and another is asked for.
function askToken(status) {
  const refused = sessionStorage.getItem(TOKEN) !== null;
  sessionStorage.removeItem(TOKEN);
  if (tokenDeclined) return false;
  const why = status === 403 && refused
    ? "The token lacks the read scope this service's reads need: a token with the read scope"
    : "This service protects its reads: a token with the read scope";
  const token = window.prompt(why)?.trim();
  tokenDeclined = !token;
  if (token) sessionStorage.setItem(TOKEN, token);
  return Boolean(token);
}

// The wait a 429 asks for (Retry-After, in seconds), in ms: at least 1 s, at most 10.
function retryAfter(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return 1000 * Math.min(10, Math.max(1, Number.isFinite(seconds) ? seconds : 1));
}

async function getJSON(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const url = query ? `${path}?${query}` : path;
  // The timeout covers the body too: a service that hangs fails the read, not the page.
  const read = () => fetch(url, {
    cache: "no-store", headers: authorization(), signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  try {
    let response = await read();
    while ((response.status === 401 || response.status === 403) && askToken(response.status)) {
      response = await read();
    }
    // A rate limit below a refresh's four reads a second: each waits its turn, as asked.
    for (let turn = 0; response.status === 429 && turn < RATE_LIMITED_TURNS; turn += 1) {
      await new Promise((done) => setTimeout(done, retryAfter(response)));
      response = await read();
    }
    if (!response.ok) throw new Error(`${path} answered ${response.status}`);
    return await response.json();
  } catch (error) {
    if (error.name !== "TimeoutError") throw error;
    throw new Error(`${path} gave no answer in ${TIMEOUT_MS / 1000} s`);
  }
}

async function load({ model, version, window, time }, summary) {
  const base = `api/v1/models/${encodeURIComponent(model)}`;
  const metrics = await getJSON(`${base}/metrics`, { version, window, time });
  // The series over the window's span, asked as a range of the window's length (centred in the
  // span, whose edges are snapped outwards to whole buckets): the server's default step is
  // chosen from the length asked (a minute for an hour), not from the longer span.
  const span = metrics.end - metrics.start;
  const slack = Math.max(0, span - seconds(window)) / 2;
  const range = { start: metrics.start + slack, end: metrics.end - slack };
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
      show(false, "waiting", "Waiting for feedback");
      return;
    }
    const summary = choose(models);
    const answers = await load({ ...selection }, summary);
    if (ticket !== generation) return;
    show(true, "live", `Updated at ${clock(Date.now() / 1000)}`);
    render(answers);
  } catch (error) {
    if (ticket === generation) {
      status("error", `Cannot read the service (${error.message}); retrying`);
    }
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
  // #model=ranker alone is ranker's latest version, as picking ranker is.
  if (!params.has("version")) selection.version = null;
  for (const key of ["window", "time"]) {
    const options = [...$(key).options].map((o) => o.value);
    if (!options.includes(selection[key])) selection[key] = $(key).value;
    $(key).value = selection[key];
  }
}

// The latest version is the last in natural order (v10 after v9, "" first): the API tells
// nothing of when a version was last active.
function choose(models) {
  const names = [...new Set(models.map((m) => m.model))];
  if (!names.includes(selection.model)) {
    selection.model = names[0];
    selection.version = null;
  }
  const ofModel = models.filter((m) => m.model === selection.model);
  const versions = ofModel.map((m) => m.version).sort(natural);
  if (!versions.includes(selection.version)) selection.version = versions.at(-1);
  setOptions($("model"), names, (name) => name, selection.model);
  setOptions($("version"), versions, (v) => v || "(none)", selection.version);
  history.replaceState(null, "", `#${new URLSearchParams(selection)}`);
  return ofModel.find((m) => m.version === selection.version);
}

function setOptions(select, values, label, chosen) {
  const current = [...select.options].map((o) => o.value);
  // As JSON: joined, no options and one empty version ("") would read the same.
  if (JSON.stringify(current) !== JSON.stringify(values)) {
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

// The page's state: loading, live, waiting (for feedback) or error. #status shows it with the
// time of the last refresh; #announce, the one live region, is written only when the state
// changes (but for the first load), so that a screen reader is not read each refresh.
let state = "loading";

function status(next, text) {
  $("status").textContent = text;
  if (next === state) return;
  if (next === "error" || state !== "loading") {
    $("announce").textContent = state === "error" ? `Reading the service again. ${text}` : text;
  }
  state = next;
}

function show(some, next, text) {
  $("empty").hidden = some;
  $("dashboard").hidden = !some;
  status(next, text);
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
  const missing = undefinedMetrics(answer.counts);
  $("tile-n").querySelector(".value").textContent = count(answer.n);
  for (const [name] of METRICS) {
    const estimate = answer.metrics[name];
    const tile = $(`tile-${name}`);
    const some = !missing.has(name);
    const note = answer.n ? "" : "no feedback";
    tile.querySelector(".value").textContent = some ? percent(estimate.value) : DASH;
    tile.querySelector(".interval").textContent = some ? interval(estimate) : note;
  }
}

function renderConfusion({ counts, n }) {
  for (const [cell, value] of Object.entries(counts)) {
    const td = $(`cell-${cell}`);
    td.querySelector(".count").textContent = count(value);
    td.style.setProperty("--share", n ? value / n : 0);
  }
}

function renderMore({ metrics, scores, counts }) {
  const missing = undefinedMetrics(counts);
  const rows = MORE.map(([name, label]) => {
    const e = metrics[name];
    if (missing.has(name)) return row(label, DASH, "");
    const value = name === "matthews" ? decimal(e.value) : percent(e.value);
    return row(label, value, interval(e));
  });
  for (const [name, label] of scores ? SCORES : []) {
    const error = scores[`${name}_error`]; // ranking metrics, from scores kept in bins
    rows.push(row(label, decimal(scores[name]), error == null ? "" : `± ${decimal(error)} (binned)`));
  }
  $("more-metrics").tBodies[0].replaceChildren(...rows);
}

function renderLabels({ counts, metrics, predictions: p }) {
  const total = counts.tp + counts.tn + counts.fp + counts.fn;
  $("labels").tBodies[0].replaceChildren(
    row("Predictions pending a label", count(p.pending)),
    row("Predictions labelled", count(p.labelled)),
    row("Predictions expired unlabelled", count(p.expired)),
    row("Label coverage", p.stored ? percent(p.label_coverage) : DASH),
    row("Feedback counted", count(total)),
    row("Accuracy", total ? percent(metrics.accuracy) : DASH),
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
    accuracyOf(e.accuracy_before, e.n_before),
    accuracyOf(e.accuracy_after, e.n_after),
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
    }, { bands: metricBands(), axes: axes((u, ticks) => ticks.map(wholePercent)) });
    this.volume = this.plot($("volume-chart"), [{
      label: "Feedback", stroke: "#475569", fill: "#94a3b880",
      paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false },
    }], { y: { range: (u, min, max) => [0, Math.max(1, max)] } }, { axes: axes() });
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
    const missing = new Map(series.points.map((p) => [p.start, undefinedMetrics(p.counts)]));
    const estimates = METRICS.flatMap(([name]) => ["value", "low", "high"].map(
      (key) => at((p) => (missing.get(p.start).has(name) ? null : p.metrics[name][key])),
    ));
    const label = `local time, ${zone(series.end)}`;
    for (const u of [this.metrics, this.volume]) u.axes[0].label = label;
    this.metrics.setData([x, ...estimates]);
    this.volume.setData([x, at((p) => p.n)]);
    this.describe(series);
  }

  // The charts' text alternative (each is an image to assistive technologies): what they show.
  describe({ start, end, step, points }) {
    const span = `per ${every(step)}, from ${moment(start)} to ${moment(end)}`;
    const last = points.at(-1);
    let latest = "no feedback";
    if (last) {
      const missing = undefinedMetrics(last.counts);
      const values = METRICS.map(([name, label]) => `${label} ${
        missing.has(name) ? DASH : percent(last.metrics[name].value)}`);
      latest = `latest, at ${moment(last.start)}: ${values.join(", ")}`;
    }
    const metrics = `Accuracy, precision, recall and F1 ${span}; ${latest}`;
    $("metrics-chart").setAttribute("aria-label", metrics);
    const total = points.reduce((sum, p) => sum + p.n, 0);
    const most = Math.max(0, ...points.map((p) => p.n));
    const drifts = this.events.length;
    $("volume-chart").setAttribute("aria-label", `Feedback ${span}: ${count(total)} in all, `
      + `at most ${count(most)} in a step; ${count(drifts)} drift${drifts === 1 ? "" : "s"} found`);
  }

  // Drift events as red vertical lines over the plot, one element each (with a tooltip).
  mark(u) {
    u.over.querySelectorAll(".drift-marker").forEach((m) => m.remove());
    for (const event of this.events) {
      const marker = document.createElement("div");
      marker.className = "drift-marker";
      marker.style.left = `${u.valToPos(event.time, "x")}px`;
      marker.title = `${event.detector}: drift at ${moment(event.time)}; accuracy `
        + `${accuracyOf(event.accuracy_before, event.n_before)} before, `
        + `${accuracyOf(event.accuracy_after, event.n_after)} after`;
      u.over.append(marker);
    }
  }

  resize() {
    for (const u of [this.metrics, this.volume]) {
      u.setSize({ width: u.root.parentElement.clientWidth, height: CHART_HEIGHT });
    }
  }
}

// A step as words: minute, 2 minutes, hour, day.
function every(step) {
  const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  const [unit, size] = units.find(([, s]) => step % s === 0);
  return step === size ? unit : `${count(step / size)} ${unit}s`;
}

// The time axis, local: HH:MM (HH:MM:SS for steps of seconds, a date for steps of days), with
// the date under the first label of each day; the y axis as wide as its longest label (10,000
// feedback in a step is wider than uPlot's fixed 50 px).
function axes(values) {
  return [
    { font: AXIS_FONT, values: timeLabels, size: 56, labelFont: AXIS_FONT, labelSize: 18,
      label: "local time" },
    { font: AXIS_FONT, size: axisWidth, ...(values ? { values } : {}) },
  ];
}

function timeLabels(u, ticks, axis, space, step) {
  const dates = ticks.map((t) => day(new Date(t * 1000)));
  if (step >= 86400) return dates;
  // The first label's date is left out when the next day's comes within two labels: they would
  // overlap.
  const next = dates.findIndex((date) => date !== dates[0]);
  return ticks.map((t, i) => {
    const d = new Date(t * 1000);
    const time = step % 60 ? hhmmss(d) : hhmm(d);
    const first = i === 0 && (next === -1 || next > 2);
    return first || (i > 0 && dates[i] !== dates[i - 1]) ? `${time}\n${dates[i]}` : time;
  });
}

const measure = document.createElement("canvas").getContext("2d");
const TICK_AND_GAP = 10 + 5; // uPlot's default tick size and gap to the labels, px

function axisWidth(u, values) {
  measure.font = AXIS_FONT;
  const widest = Math.max(0, ...(values ?? []).map((v) => measure.measureText(v).width));
  return Math.max(40, Math.ceil(widest) + TICK_AND_GAP + 4);
}

// uPlot draws a series' points only where they lie far enough apart: at a narrow width a step
// with feedback between two without would be drawn as nothing (a line needs two points).
function lonePoints(u, seriesIdx, show) {
  if (show) return null;
  const values = u.data[seriesIdx];
  const lone = [];
  values.forEach((v, i) => {
    if (v !== null && values[i - 1] == null && values[i + 1] == null) lone.push(i);
  });
  return lone.length ? lone : null;
}

function metricSeries() {
  return METRICS.flatMap(([, label, color]) => [
    { label, stroke: color, width: 2, points: { filter: lonePoints } },
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
