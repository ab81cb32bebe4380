// The chart a table was logged with (W&B's wandb.plot.*; docs/wandb-compat.md#charts), drawn as
// SVG above the table panel's grid from the table's own rows (the first MAX_ROWS of the version
// shown): lines (line, line_series, pr_curve, roc_curve; one per `series` value), points
// (scatter), bars (bar; histogram, binned here) and a confusion matrix (counts as shades).
// Every mark carries its data in data-* attributes, so what is drawn can be checked in the DOM.

import { api, type TableRows, type TableVersionQuery } from "../api";
import { paletteColor } from "../colors";
import { h } from "../dom";

type Chart = NonNullable<TableRows["chart"]>;

const SVG = "http://www.w3.org/2000/svg";
const MAX_ROWS = 1000; // the server's largest page; W&B's charts draw at most 10,000 points
const WIDTH = 560;
const HEIGHT = 260;
const PAD = { left: 48, right: 12, top: 24, bottom: 36 };
const HISTOGRAM_BINS = 20;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, text?: string): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

const num = (value: unknown): number => (typeof value === "number" ? value : Number(value));
const short = (value: number): string => (Number.isInteger(value) ? String(value) : value.toPrecision(3));

/** A linear map of [lo, hi] onto [from, to] (a flat range maps to the middle). */
function scale(lo: number, hi: number, from: number, to: number): (v: number) => number {
  if (!(hi > lo)) return () => (from + to) / 2;
  return (v) => from + ((v - lo) / (hi - lo)) * (to - from);
}

/** The chart element for `chart` over `project/runId`'s table `key` (its `version`), or null when
 * the chart's kind is not one drawn here (a custom Vega spec: the grid shows its table). */
export async function tableChart(project: string, runId: string, key: string, version: TableVersionQuery, chart: Chart): Promise<HTMLElement | null> {
  const page = await api.table(project, runId, key, { offset: 0, limit: MAX_ROWS, ...version });
  const column = (name: string) => page.columns.findIndex((c) => c.name === name);
  const rows = page.rows;
  const root = svg("svg", { class: "tc-chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, "data-kind": chart.kind, role: "img" });
  const drawn = draw(chart, rows, column, root);
  if (!drawn) return null;
  const note = page.total > rows.length ? h("span.muted", { text: ` (the first ${rows.length.toLocaleString("en")} of ${page.total.toLocaleString("en")} rows)` }) : null;
  return h("figure.tc", { "data-kind": chart.kind, "data-chart-key": chart.chart_key },
    h("figcaption", {}, chart.title || chart.chart_key, note), root);
}

function draw(chart: Chart, rows: unknown[][], column: (name: string) => number, root: SVGSVGElement): boolean {
  const [x, y, series, value] = [column(chart.x), column(chart.y), column(chart.series), column(chart.value)];
  switch (chart.kind) {
    case "line":
    case "line_series":
    case "pr_curve":
    case "roc_curve":
    case "scatter":
      if (x < 0 || y < 0) return false;
      xy(root, chart, rows, x, y, series);
      return true;
    case "bar":
      if (x < 0 || y < 0) return false;
      bars(root, chart, rows.map((row) => [String(row[x]), num(row[y])]));
      return true;
    case "histogram":
      if (x < 0) return false;
      bars(root, chart, histogram(rows.map((row) => num(row[x])).filter(Number.isFinite)));
      return true;
    case "confusion_matrix":
      if (x < 0 || y < 0 || value < 0) return false;
      matrix(root, rows, x, y, value);
      return true;
    default:
      return false;
  }
}

function axes(root: SVGSVGElement, chart: Chart, xr: [number, number] | null, yr: [number, number]): void {
  const [left, right, top, bottom] = [PAD.left, WIDTH - PAD.right, PAD.top, HEIGHT - PAD.bottom];
  root.append(svg("line", { class: "tc-axis", x1: left, y1: bottom, x2: right, y2: bottom }));
  root.append(svg("line", { class: "tc-axis", x1: left, y1: top, x2: left, y2: bottom }));
  root.append(svg("text", { class: "tc-tick", x: left - 4, y: bottom, "text-anchor": "end" }, short(yr[0])));
  root.append(svg("text", { class: "tc-tick", x: left - 4, y: top + 8, "text-anchor": "end" }, short(yr[1])));
  if (xr) {
    root.append(svg("text", { class: "tc-tick", x: left, y: bottom + 14, "text-anchor": "start" }, short(xr[0])));
    root.append(svg("text", { class: "tc-tick", x: right, y: bottom + 14, "text-anchor": "end" }, short(xr[1])));
  }
  const xTitle = chart.x_title || chart.x;
  const yTitle = chart.y_title || chart.y;
  root.append(svg("text", { class: "tc-title", x: (left + right) / 2, y: HEIGHT - 4, "text-anchor": "middle" }, xTitle));
  if (yTitle) root.append(svg("text", { class: "tc-title", x: 12, y: (top + bottom) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(top + bottom) / 2})` }, yTitle));
}

/** Lines (or points, for a scatter), one per value of the series column, in the table's order
 * sorted by x (stable: ties keep the order logged, as an ROC curve's vertical steps need). */
function xy(root: SVGSVGElement, chart: Chart, rows: unknown[][], x: number, y: number, series: number): void {
  const groups = new Map<string, [number, number][]>();
  for (const row of rows) {
    const [px, py] = [num(row[x]), num(row[y])];
    if (!Number.isFinite(px) || !Number.isFinite(py)) continue;
    const name = series >= 0 ? String(row[series]) : chart.y;
    let points = groups.get(name);
    if (!points) groups.set(name, (points = []));
    points.push([px, py]);
  }
  const all = [...groups.values()].flat();
  const unit = chart.kind === "pr_curve" || chart.kind === "roc_curve"; // rates: always 0 to 1
  const xr = unit ? ([0, 1] as [number, number]) : extent(all.map((p) => p[0]));
  const yr = unit ? ([0, 1] as [number, number]) : extent(all.map((p) => p[1]));
  axes(root, chart, xr, yr);
  const sx = scale(xr[0], xr[1], PAD.left, WIDTH - PAD.right);
  const sy = scale(yr[0], yr[1], HEIGHT - PAD.bottom, PAD.top);
  let index = 0;
  for (const [name, points] of groups) {
    const color = paletteColor(index);
    if (chart.kind === "scatter") {
      for (const [px, py] of points) root.append(svg("circle", { class: "tc-point", cx: sx(px), cy: sy(py), r: 3, fill: color, "data-series": name, "data-x": px, "data-y": py }));
    } else {
      const sorted = points.map((p, i) => [p, i] as const).sort((a, b) => a[0][0] - b[0][0] || a[1] - b[1]).map(([p]) => p);
      const d = sorted.map(([px, py], i) => `${i ? "L" : "M"}${sx(px).toFixed(1)},${sy(py).toFixed(1)}`).join("");
      root.append(svg("path", { class: "tc-line", d, stroke: color, "data-series": name, "data-points": JSON.stringify(sorted) }));
    }
    if (groups.size > 1) {
      root.append(svg("text", { class: "tc-legend", x: WIDTH - PAD.right, y: PAD.top + 12 * index, "text-anchor": "end", fill: color }, name));
    }
    index++;
  }
}

function extent(values: number[]): [number, number] {
  return values.length ? [Math.min(...values), Math.max(...values)] : [0, 1];
}

function histogram(values: number[]): [string, number][] {
  if (!values.length) return [];
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  const width = hi > lo ? (hi - lo) / HISTOGRAM_BINS : 1;
  const counts = new Array<number>(HISTOGRAM_BINS).fill(0);
  for (const v of values) counts[Math.min(HISTOGRAM_BINS - 1, Math.floor((v - lo) / width))]++;
  return counts.map((count, i) => [short(lo + i * width), count]);
}

/** A bar per label (a histogram's bins are labelled by their lower edge). */
function bars(root: SVGSVGElement, chart: Chart, data: [string, number][]): void {
  const values = data.map(([, v]) => v).filter(Number.isFinite);
  const yr: [number, number] = [Math.min(0, ...values), Math.max(0, ...values)];
  axes(root, { ...chart, y_title: chart.kind === "histogram" ? "count" : chart.y_title }, null, yr);
  const sy = scale(yr[0], yr[1], HEIGHT - PAD.bottom, PAD.top);
  const slot = (WIDTH - PAD.left - PAD.right) / Math.max(1, data.length);
  data.forEach(([label, v], i) => {
    if (!Number.isFinite(v)) return;
    const [top, base] = [Math.min(sy(v), sy(0)), Math.max(sy(v), sy(0))];
    root.append(svg("rect", { class: "tc-bar", x: PAD.left + i * slot + slot * 0.1, y: top, width: slot * 0.8, height: Math.max(0.5, base - top), fill: paletteColor(0), "data-label": label, "data-value": v }));
    if (data.length <= 24) root.append(svg("text", { class: "tc-tick", x: PAD.left + (i + 0.5) * slot, y: HEIGHT - PAD.bottom + 14, "text-anchor": "middle" }, label));
  });
}

/** Actual (rows) by predicted (columns), each cell shaded by its share of the largest count. */
function matrix(root: SVGSVGElement, rows: unknown[][], predicted: number, actual: number, value: number): void {
  const actuals = [...new Set(rows.map((row) => String(row[actual])))];
  const predicteds = [...new Set(rows.map((row) => String(row[predicted])))];
  const most = Math.max(1, ...rows.map((row) => num(row[value])).filter(Number.isFinite));
  const [left, top] = [PAD.left + 40, PAD.top];
  const cell = Math.min((WIDTH - left - PAD.right) / Math.max(1, predicteds.length), (HEIGHT - top - PAD.bottom) / Math.max(1, actuals.length));
  for (const row of rows) {
    const [a, p, count] = [String(row[actual]), String(row[predicted]), num(row[value])];
    const [cx, cy] = [left + predicteds.indexOf(p) * cell, top + actuals.indexOf(a) * cell];
    const shade = Number.isFinite(count) ? count / most : 0;
    root.append(svg("rect", { class: "tc-cell", x: cx, y: cy, width: cell - 1, height: cell - 1, fill: paletteColor(0), "fill-opacity": 0.08 + 0.92 * shade, "data-actual": a, "data-predicted": p, "data-count": count }));
    root.append(svg("text", { class: "tc-count", x: cx + cell / 2, y: cy + cell / 2 + 4, "text-anchor": "middle", fill: shade > 0.5 ? "#fff" : "#111" }, short(count)));
  }
  actuals.forEach((a, i) => root.append(svg("text", { class: "tc-tick", x: left - 4, y: top + (i + 0.5) * cell + 4, "text-anchor": "end" }, a)));
  predicteds.forEach((p, i) => root.append(svg("text", { class: "tc-tick", x: left + (i + 0.5) * cell, y: top + actuals.length * cell + 14, "text-anchor": "middle" }, p)));
  root.append(svg("text", { class: "tc-title", x: left + (predicteds.length * cell) / 2, y: HEIGHT - 4, "text-anchor": "middle" }, "Predicted"));
  root.append(svg("text", { class: "tc-title", x: 12, y: top + (actuals.length * cell) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${top + (actuals.length * cell) / 2})` }, "Actual"));
}
