// The charts, each a few lines: horizontal bars (HTML), a heatmap (Canvas), line charts (SVG).
"use strict";

// items: [{label, value, text, data}]; the bar's length is value / max. signed: bars grow both ways
// from the middle (red below zero). Each row's elements carry `data` as data-* attributes.
function barChart(items, { max, signed = false, smallLabels = false, cls = "" } = {}) {
  const top = max || Math.max(1e-12, ...items.map((d) => Math.abs(d.value || 0)));
  const rows = items.map((d) => {
    const fraction = Math.min(1, Math.abs(d.value || 0) / top);
    const fill = signed
      ? el("div", { class: "bar-fill" + (d.value < 0 ? " neg" : ""),
                    style: `left:${d.value < 0 ? 50 - 50 * fraction : 50}%;width:${50 * fraction}%` })
      : el("div", { class: "bar-fill", style: `width:${100 * fraction}%` });
    return [el("span", { class: "bar-label" + (smallLabels ? " small" : ""), dataset: d.data }, d.label),
            el("div", { class: "bar-track" + (signed ? " signed" : ""), dataset: d.data }, fill),
            el("span", { class: "bar-value", dataset: d.data }, d.text)];
  });
  return el("div", { class: "bars " + cls }, rows.flat());
}

const MASKED_COLOUR = [200, 200, 200];   // a key the query may not see (causal mask): grey, not white

// probability 0 -> white, 1 -> deep blue
function heatColour(p) {
  const t = Math.sqrt(Math.max(0, Math.min(1, p)));    // sqrt: small weights stay visible
  return [Math.round(255 - 218 * t), Math.round(255 - 156 * t), Math.round(255 - 20 * t)];
}

// Draw a (T, T) matrix on a canvas, `cell` pixels a cell, starting at (x0, y0).
function drawHeatmap(context, probs, allowed, cell, x0 = 0, y0 = 0) {
  const T = probs.length;
  const image = context.createImageData(T * cell, T * cell);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      const [r, g, b] = allowed[i][j] ? heatColour(probs[i][j]) : MASKED_COLOUR;
      for (let y = i * cell; y < (i + 1) * cell; y++) {
        for (let x = j * cell; x < (j + 1) * cell; x++) {
          const k = 4 * (y * T * cell + x);
          image.data[k] = r; image.data[k + 1] = g; image.data[k + 2] = b; image.data[k + 3] = 255;
        }
      }
    }
  }
  context.putImageData(image, x0, y0);
}

// series: [{name, points: [[step, value]...], colour}] -> an SVG line chart with axes and a legend.
function lineChart(title, series, { width = 540, height = 230, log = false } = {}) {
  // the legend: one entry per series after the title, wrapping onto more lines above the plot
  let [legendX, legendY] = [58 + 8 * title.length + 16, 14];
  const legend = series.map((s) => {
    const wide = 7 * s.name.length + 28;
    if (legendX + wide > width) [legendX, legendY] = [58, legendY + 15];
    const entry = svg("text", { x: legendX, y: legendY, fill: s.colour }, "\u2014 " + s.name);
    legendX += wide;
    return entry;
  });
  const margin = { left: 58, right: 12, top: legendY + 10, bottom: 34 };
  height += legendY - 14;
  const all = series.flatMap((s) => s.points);
  const chart = svg("svg", { class: "chart", width, height, "data-title": title });
  chart.append(svg("text", { x: margin.left, y: 14, "font-weight": "600" }, title), ...legend);
  if (!all.length) return chart;
  const ys = all.map((p) => (log ? Math.log10(Math.max(p[1], 1e-12)) : p[1]));
  const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const w = width - margin.left - margin.right, h = height - margin.top - margin.bottom;
  const sx = (x) => margin.left + (x1 === x0 ? w / 2 : (w * (x - x0)) / (x1 - x0));
  const sy = (y) => margin.top + h - (h * ((log ? Math.log10(Math.max(y, 1e-12)) : y) - y0)) / (y1 - y0);
  for (let k = 0; k <= 4; k++) {                        // horizontal grid lines with their values
    const v = y0 + ((y1 - y0) * k) / 4, y = margin.top + h - (h * k) / 4;
    chart.append(svg("line", { class: "grid", x1: margin.left, x2: margin.left + w, y1: y, y2: y }),
                 svg("text", { x: margin.left - 4, y: y + 4, "text-anchor": "end" }, short(log ? 10 ** v : v)));
  }
  const bottom = margin.top + h;
  chart.append(svg("line", { class: "axis", x1: margin.left, x2: margin.left + w, y1: bottom, y2: bottom }),
               svg("text", { x: margin.left + w / 2, y: height - 4, "text-anchor": "middle" }, "step"));
  const ticks = x1 > x0 + 4 ? [0, 1, 2, 3, 4] : [0, 4];
  for (const k of ticks) {                              // step labels; the last one is the run's last step
    const x = k === 4 ? x1 : Math.round(x0 + ((x1 - x0) * k) / 4);
    chart.append(svg("text", { class: k === 4 ? "last-step" : "", x: sx(x), y: height - 18,
                               "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle" }, String(x)));
  }
  series.forEach((s) => {
    if (!s.points.length) return;
    const points = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: s.colour, "stroke-width": 1.6,
                                   "data-series": s.name, "data-steps": s.points.map((p) => p[0]).join(",") }));
    if (s.points.length === 1) {
      const [x, y] = s.points[0];
      chart.append(svg("circle", { cx: sx(x), cy: sy(y), r: 2.5, fill: s.colour }));
    }
  });
  return chart;
}
