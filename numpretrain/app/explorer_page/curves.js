// 5. Training curves from the run's metrics.jsonl, asked again every few seconds while the run trains.
"use strict";

const CURVES_POLL_MS = 2000;
const COLOURS = ["#2563eb", "#d9480f", "#2f9e44", "#9c36b5", "#e8590c", "#0c8599"];
const metricRecords = [];

// Which keys share a chart: losses, accuracies, the learning rate, throughput, the gradient norm.
const CHART_GROUPS = [
  ["loss (log scale)", (key) => /loss$/.test(key)],     // log: the first steps would flatten the rest
  ["accuracy", (key) => /acc/.test(key)],
  ["learning rate", (key) => key === "lr"],
  ["tokens / s", (key) => key === "tokens_per_sec"],
  ["gradient norm (before clipping)", (key) => key === "grad_norm"],
];

function renderCurves() {
  const box = document.getElementById("curves");
  const keys = [...new Set(metricRecords.flatMap((r) => Object.keys(r)))]
    .filter((k) => k !== "step" && k !== "elapsed");
  const charts = CHART_GROUPS.map(([title, wanted]) => {
    const series = keys.filter(wanted).map((key, n) => ({
      name: key, colour: COLOURS[n % COLOURS.length],
      points: metricRecords.filter((r) => typeof r[key] === "number" && typeof r.step === "number")
        .map((r) => [r.step, r[key]]),
    })).filter((s) => s.points.length);
    return series.length ? lineChart(title, series, { log: title.startsWith("loss") }) : null;
  }).filter(Boolean);
  const steps = metricRecords.filter((r) => typeof r.step === "number").map((r) => r.step);
  const last = steps.length ? Math.max(...steps) : "";
  const summary = !metricRecords.length ? "No metrics.jsonl in this run (yet)."
    : `${metricRecords.length} records of metrics.jsonl, up to step ${last}` +
      (X.data ? "." : "; refreshed every few seconds while the run trains.");
  replace(box, el("p", { id: "curves-summary", dataset: { records: metricRecords.length, last } }, summary),
          el("div", { class: "charts" }, charts));
}

async function pollCurves() {
  try {
    const answer = await api(`/api/metrics?since=${metricRecords.length}`);
    if (answer.restart) metricRecords.length = 0;      // a resumed run rewrote its log
    if (answer.restart || answer.records.length) {
      metricRecords.push(...answer.records);
      renderCurves();
    }
  } catch (error) {
    // the server went away: keep what is drawn, try again later
  }
  setTimeout(pollCurves, CURVES_POLL_MS);
}

function startCurves() {
  if (X.data) {
    metricRecords.push(...X.data.metrics.records);
    renderCurves();
  } else {
    renderCurves();
    pollCurves();
  }
}
