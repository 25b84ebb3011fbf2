// Charts drawn in the page as SVG from the API's numbers (a report's history, a confusion
// matrix, scores): sharper than the worker's PNGs, readable at any size, and their text is
// Text nodes like everything else. Colours come from app.css classes (no inline style).

import { h, s } from "./dom.js";

// Horizontal score bars: [{label, value}] with values in [0, 1] (or scaled to the largest).
export function bars(items, { scale = null, cls = "" } = {}) {
  const row = 22, labelW = 190, barW = 220, width = labelW + barW + 70;
  const max = scale ?? Math.max(1e-9, ...items.map((i) => Math.abs(i.value)));
  const svg = s("svg", { class: `bars ${cls}`, viewBox: `0 0 ${width} ${row * items.length + 4}`, width, height: row * items.length + 4, role: "img" });
  items.forEach((item, k) => {
    const y = k * row + 2;
    const w = Math.max(0, Math.min(1, Math.abs(item.value) / max)) * barW;
    const g = s("g", { class: "bar", dataset: { label: item.label, score: item.value } });
    g.append(s("title", {}, `${item.label}: ${item.value}`),
      s("text", { x: labelW - 6, y: y + 15, "text-anchor": "end", class: "bar-label" }, clip(item.label, 24)),
      s("rect", { x: labelW, y: y + 3, width: barW, height: row - 8, class: "bar-track" }),
      s("rect", { x: labelW, y: y + 3, width: w.toFixed(1), height: row - 8, class: item.best ? "bar-fill best" : "bar-fill" }),
      s("text", { x: labelW + barW + 6, y: y + 15, class: "bar-value" }, item.value.toFixed(4)),
    );
    svg.append(g);
  });
  return svg;
}

function clip(text, n) {
  const t = String(text);
  return t.length > n ? `${t.slice(0, n - 1)}\u2026` : t;
}

// Lines over a shared x axis: [{name, points: [[x, y]...]}]; `mark`: an x to draw a rule at.
export function lines(series, { title = "", xLabel = "", yLabel = "", mark = null, width = 460, height = 240 } = {}) {
  const pad = { l: 48, r: 12, t: 22, b: 34 };
  const all = series.flatMap((ser) => ser.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  svg.append(s("text", { x: pad.l, y: 14, class: "chart-title" }, title));
  if (!all.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "muted-svg" }, "no data yet"));
    return svg;
  }
  let [x0, x1] = extent(all.map((p) => p[0]));
  let [y0, y1] = extent(all.map((p) => p[1]));
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  svg.append(axes(X, Y, x0, x1, y0, y1, width, height, pad, xLabel, yLabel));
  if (mark != null) svg.append(s("line", { x1: X(mark), x2: X(mark), y1: pad.t, y2: height - pad.b, class: "chart-mark" }));
  const legend = s("g", { class: "legend" });
  series.forEach((ser, k) => {
    const pts = ser.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    if (!pts.length) return;
    svg.append(s("polyline", { points: pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" "), class: `line c${k % 6}` }));
    if (pts.length < 30) pts.forEach((p) => svg.append(s("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.5, class: `dot c${k % 6}` })));
    legend.append(s("text", { x: width - pad.r, y: pad.t + 12 * (k + 1), "text-anchor": "end", class: `legend-text c${k % 6}` }, ser.name));
  });
  svg.append(legend);
  return svg;
}

function extent(values) {
  return [Math.min(...values), Math.max(...values)];
}

function axes(X, Y, x0, x1, y0, y1, width, height, pad, xLabel, yLabel) {
  const g = s("g", { class: "axes" });
  g.append(s("line", { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }));
  g.append(s("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: height - pad.b }));
  for (let k = 0; k <= 4; k += 1) {
    const y = y0 + ((y1 - y0) * k) / 4;
    g.append(s("text", { x: pad.l - 4, y: Y(y) + 4, "text-anchor": "end", class: "tick" }, tick(y)));
    const x = x0 + ((x1 - x0) * k) / 4;
    g.append(s("text", { x: X(x), y: height - pad.b + 14, "text-anchor": "middle", class: "tick" }, tick(x)));
  }
  g.append(s("text", { x: (pad.l + width - pad.r) / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" }, xLabel));
  g.append(s("text", { x: 10, y: pad.t - 8, class: "axis-label" }, yLabel));
  return g;
}

function tick(v) {
  const a = Math.abs(v);
  return a >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(a < 1 ? 3 : 2);
}

// A confusion matrix {labels, counts: [true][predicted]}: cells shaded by their row's share.
export function confusion(matrix, { title = "confusion matrix" } = {}) {
  const labels = matrix.labels || [];
  const counts = matrix.counts || [];
  const cell = Math.max(26, Math.min(56, Math.floor(360 / Math.max(1, labels.length))));
  const left = 120, top = 40;
  const width = left + cell * labels.length + 10, height = top + cell * labels.length + 40;
  const svg = s("svg", { class: "chart confusion", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  svg.append(s("text", { x: 4, y: 14, class: "chart-title" }, title));
  labels.forEach((label, i) => {
    svg.append(s("text", { x: left - 6, y: top + i * cell + cell / 2 + 4, "text-anchor": "end", class: "tick" }, clip(label, 16)));
    svg.append(s("text", { x: left + i * cell + cell / 2, y: top + cell * labels.length + 14, "text-anchor": "middle", class: "tick" }, clip(label, 8)));
    const total = (counts[i] || []).reduce((a, b) => a + b, 0) || 1;
    labels.forEach((_, j) => {
      const n = (counts[i] || [])[j] || 0;
      const shade = Math.min(5, Math.floor((n / total) * 6));
      svg.append(s("rect", { x: left + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1, class: `cm cm${shade}${i === j ? " diag" : ""}` }));
      svg.append(s("text", { x: left + j * cell + cell / 2, y: top + i * cell + cell / 2 + 4, "text-anchor": "middle", class: shade >= 3 ? "cm-text dark" : "cm-text" }, String(n)));
    });
  });
  svg.append(s("text", { x: left, y: height - 6, class: "axis-label" }, "predicted \u2192 (rows: true class)"));
  return svg;
}

// The plots of a training report (training/report.py build_report).
export function reportPlots(report) {
  const out = h("div", { class: "plots" });
  const history = report.history || [];
  const steps = report.steps || [];
  const lossSeries = [{ name: "train loss (steps)", points: steps.map((p) => [p.epoch, p.loss]) },
    { name: "train loss (epoch)", points: history.map((e) => [e.epoch, e.train_loss]) },
    { name: "validation loss", points: history.map((e) => [e.epoch, e.validation_loss]) }];
  out.append(lines(lossSeries, { title: "loss", xLabel: "epoch", mark: report.best_epoch }));
  const metrics = [...new Set(history.flatMap((e) => Object.keys(e.validation || {})))];
  out.append(lines(metrics.map((m) => ({ name: m, points: history.map((e) => [e.epoch, (e.validation || {})[m]]) })),
    { title: "validation scores", xLabel: "epoch", mark: report.best_epoch }));
  for (const split of ["test", "validation"]) {
    const details = (report.per_class || {})[split];
    if (details && details.confusion_matrix) {
      out.append(confusion(details.confusion_matrix, { title: `${split} confusion matrix` }));
      break;
    }
  }
  for (const split of ["test", "validation"]) {
    const details = (report.per_class || {})[split];
    const rows = details && details.per_class;
    if (rows && rows.length && "threshold" in rows[0]) {
      out.append(h("h4", {}, `${split}: F1 per label`));
      out.append(bars(rows.map((r) => ({ label: r.label, value: r.f1 })), { scale: 1 }));
      break;
    }
  }
  return out;
}
