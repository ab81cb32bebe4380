// Parallel coordinates on a canvas: one vertical axis per config key whose values vary across the
// runs (numeric, log-scaled when positive and spanning 100x or more, or categorical), and a last
// axis for a chosen summary metric; one line per run, coloured by its metric value. Dragging
// along an axis brushes a range: runs outside every brushed range fade. A click on an axis clears
// its brush.

import type { RunRow } from "../api";
import { registerProbe } from "../debug";
import { h } from "../dom";
import { flatten, lookup } from "../format";
import { fmtTick } from "../charts/panel";

export type AxisKind = "number" | "log" | "category";

export interface Axis {
  key: string; // config.<dotted> or summary.<dotted>
  kind: AxisKind;
  min: number;
  max: number;
  categories: string[]; // category axes: the values, bottom to top
}

const MAX_AXES = 12;
const HEIGHT = 300;
const PAD = { top: 34, bottom: 26, left: 56, right: 56 };

type Scalar = number | string | boolean | null;

const scalar = (value: unknown): value is Scalar => value === null || ["number", "string", "boolean"].includes(typeof value);
const label = (value: Scalar) => (typeof value === "string" ? value : JSON.stringify(value));

/** Numeric summary keys of the runs (what the metric axis can show). */
export function metricKeys(rows: RunRow[]): string[] {
  const keys = new Set<string>();
  for (const row of rows.slice(0, 500))
    for (const [key, value] of flatten(row.summary)) if (typeof value === "number" && !key.startsWith("_")) keys.add(key);
  return [...keys].sort();
}

/** The metric whose values differ most between the runs (range over magnitude), so the metric axis
 * says something by default: a summary the same for every run (`epoch`) comes last. Ties go to the
 * key more runs have, then by name. */
export function mostSpreadMetric(rows: RunRow[], metrics: string[]): string | null {
  let best: { key: string; spread: number; count: number } | null = null;
  for (const key of metrics) {
    const values = rows.map((row) => lookup(row.summary, key)).filter((v): v is number => typeof v === "number" && isFinite(v));
    let spread = 0;
    if (values.length > 1) {
      const min = Math.min(...values);
      const max = Math.max(...values);
      const scale = Math.max(Math.abs(min), Math.abs(max));
      spread = scale > 0 ? (max - min) / scale : 0;
    }
    const better = !best || spread > best.spread + 1e-12 || (Math.abs(spread - best.spread) <= 1e-12 && values.length > best.count);
    if (better) best = { key, spread, count: values.length };
  }
  return best?.key ?? null;
}

function valueOf(row: RunRow, axisKey: string): unknown {
  const [section, ...rest] = axisKey.split(".");
  return lookup(section === "summary" ? row.summary : row.config, rest.join("."));
}

export function makeAxis(key: string, values: unknown[]): Axis | null {
  const present = values.filter((v): v is Scalar => v !== undefined && scalar(v));
  if (!present.length) return null;
  const numbers = present.filter((v): v is number => typeof v === "number" && isFinite(v));
  if (numbers.length === present.length) {
    const min = Math.min(...numbers);
    const max = Math.max(...numbers);
    return { key, kind: min > 0 && max / min >= 100 ? "log" : "number", min, max, categories: [] };
  }
  const categories = [...new Set(present.map(label))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  return { key, kind: "category", min: 0, max: categories.length - 1, categories };
}

/** Where a value sits on an axis: 0 at the bottom, 1 at the top; null when missing. */
export function position(axis: Axis, value: unknown): number | null {
  if (value === undefined || !scalar(value)) return null;
  if (axis.kind === "category") {
    const index = axis.categories.indexOf(label(value));
    if (index < 0) return null;
    return axis.categories.length === 1 ? 0.5 : index / (axis.categories.length - 1);
  }
  if (typeof value !== "number" || !isFinite(value)) return null;
  if (axis.max === axis.min) return 0.5;
  if (axis.kind === "log") return value > 0 ? Math.log(value / axis.min) / Math.log(axis.max / axis.min) : null;
  return (value - axis.min) / (axis.max - axis.min);
}

/** Config axes: keys with scalar values that are not the same for every run. */
export function configAxes(rows: RunRow[]): Axis[] {
  const seen = new Map<string, Set<string>>();
  for (const row of rows)
    for (const [key, value] of flatten(row.config)) {
      if (!scalar(value)) continue;
      if (!seen.has(key)) seen.set(key, new Set());
      seen.get(key)!.add(JSON.stringify(value));
    }
  const varying = [...seen].filter(([, values]) => values.size > 1).map(([key]) => `config.${key}`).sort();
  return varying
    .slice(0, MAX_AXES - 1)
    .map((key) => makeAxis(key, rows.map((row) => valueOf(row, key))))
    .filter((axis): axis is Axis => axis !== null);
}

/** Blue (low) through green and amber to red (high): every stop dark enough to see on white. */
export function heat(t: number): string {
  const stops = [
    [44, 123, 182],
    [0, 158, 115],
    [230, 159, 0],
    [213, 94, 0],
    [180, 20, 30],
  ];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export class ParallelCoordinates {
  readonly el: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly select: HTMLSelectElement;
  private readonly note: HTMLElement;
  private rows: RunRow[] = [];
  private axes: Axis[] = [];
  private lines: { run: string; t: (number | null)[] }[] = [];
  private brushes = new Map<string, [number, number]>(); // axis key -> [low, high] positions
  private dragging: { axis: number; from: number; to: number } | null = null;
  private readonly unregister: () => void;
  private readonly resize: ResizeObserver;

  constructor(
    private metric: string | null,
    private readonly onMetric: (metric: string) => void,
  ) {
    this.select = h("select", { name: "pc-metric", title: "Summary metric on the last axis" });
    this.select.addEventListener("change", () => {
      this.metric = this.select.value;
      this.onMetric(this.metric);
      this.update();
    });
    this.note = h("span.muted");
    this.canvas = h("canvas.parcoords-canvas");
    this.el = h(
      "div.parcoords",
      {},
      h("div.toolbar", {}, h("label", {}, "Metric ", this.select), h("span.heat-legend", { text: "low → high" }), this.note),
      this.canvas,
    );
    this.canvas.addEventListener("mousedown", (event) => this.down(event));
    window.addEventListener("mousemove", this.move);
    window.addEventListener("mouseup", this.up);
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.el);
    this.unregister = registerProbe("parcoords", () => this.probe());
  }

  destroy(): void {
    window.removeEventListener("mousemove", this.move);
    window.removeEventListener("mouseup", this.up);
    this.resize.disconnect();
    this.unregister();
  }

  setRows(rows: RunRow[]): void {
    this.rows = rows;
    const metrics = metricKeys(rows);
    if (!this.metric || !metrics.includes(this.metric)) this.metric = mostSpreadMetric(rows.slice(0, 500), metrics);
    this.select.replaceChildren(...metrics.map((key) => h("option", { value: key, text: key })));
    if (this.metric) this.select.value = this.metric;
    this.update();
  }

  private update(): void {
    this.axes = configAxes(this.rows);
    if (this.metric) {
      const axis = makeAxis(`summary.${this.metric}`, this.rows.map((row) => valueOf(row, `summary.${this.metric}`)));
      if (axis) this.axes.push(axis);
    }
    const keys = new Set(this.axes.map((a) => a.key));
    for (const key of [...this.brushes.keys()]) if (!keys.has(key)) this.brushes.delete(key);
    this.lines = this.rows.map((row) => ({ run: row.run_id, t: this.axes.map((axis) => position(axis, valueOf(row, axis.key))) }));
    this.note.textContent = `${this.rows.length} runs, ${this.axes.length} axes`;
    this.draw();
  }

  /** Runs inside every brushed range. */
  private highlighted(): Set<string> {
    const inside = new Set<string>();
    for (const line of this.lines) {
      const ok = this.axes.every((axis, i) => {
        const brush = this.brushes.get(axis.key);
        const t = line.t[i];
        return !brush || (t !== null && t >= brush[0] - 1e-9 && t <= brush[1] + 1e-9);
      });
      if (ok) inside.add(line.run);
    }
    return inside;
  }

  private axisX(i: number): number {
    const width = this.canvas.clientWidth - PAD.left - PAD.right;
    return PAD.left + (this.axes.length > 1 ? (i * width) / (this.axes.length - 1) : width / 2);
  }

  private y(t: number): number {
    return PAD.top + (1 - t) * (HEIGHT - PAD.top - PAD.bottom);
  }

  private t(y: number): number {
    return Math.min(1, Math.max(0, 1 - (y - PAD.top) / (HEIGHT - PAD.top - PAD.bottom)));
  }

  private draw(): void {
    const width = Math.max(300, this.el.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${HEIGHT}px`;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(HEIGHT * ratio);
    const ctx = this.canvas.getContext("2d")!;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, HEIGHT);
    if (this.axes.length < 2) {
      ctx.fillStyle = "#6b7280";
      ctx.font = "13px system-ui, sans-serif";
      ctx.fillText("Parallel coordinates need config values that differ between runs and a summary metric.", 12, 40);
      return;
    }
    const inside = this.highlighted();
    const metricIndex = this.axes.length - 1;
    const hasMetric = this.metric !== null && this.axes[metricIndex].key === `summary.${this.metric}`;
    const drawLine = (line: { t: (number | null)[] }, color: string, width: number) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.beginPath();
      let pen = false;
      line.t.forEach((t, i) => {
        if (t === null) {
          pen = false;
          return;
        }
        const [x, y] = [this.axisX(i), this.y(t)];
        if (pen) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        pen = true;
      });
      ctx.stroke();
    };
    for (const line of this.lines) if (!inside.has(line.run)) drawLine(line, "#d7dbe2", 1);
    for (const line of this.lines) {
      if (!inside.has(line.run)) continue;
      const t = hasMetric ? line.t[metricIndex] : null;
      drawLine(line, t === null ? "#8b93a1" : heat(t), 1.4);
    }
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    this.axes.forEach((axis, i) => {
      const x = this.axisX(i);
      ctx.strokeStyle = "#555";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x, this.y(1));
      ctx.lineTo(x, this.y(0));
      ctx.stroke();
      ctx.fillStyle = "#1d2330";
      const name = axis.key.replace(/^(config|summary)\./, "");
      ctx.fillText(name.length > 22 ? name.slice(0, 21) + "…" : name, x, 14);
      ctx.fillStyle = "#6b7280";
      const ticks: [number, string][] =
        axis.kind === "category"
          ? axis.categories.map((c, k) => [axis.categories.length === 1 ? 0.5 : k / (axis.categories.length - 1), c])
          : axis.min === axis.max
            ? [[0.5, fmtTick(axis.min)]]
            : [[0, fmtTick(axis.min)], [1, fmtTick(axis.max)]];
      ctx.textAlign = i === this.axes.length - 1 ? "right" : "left";
      for (const [t, text] of ticks.slice(0, 12)) ctx.fillText(text.length > 14 ? text.slice(0, 13) + "…" : text, x + (i === this.axes.length - 1 ? -5 : 5), this.y(t) + 4);
      ctx.textAlign = "center";
      const brush = this.dragging?.axis === i ? [Math.min(this.dragging.from, this.dragging.to), Math.max(this.dragging.from, this.dragging.to)] : this.brushes.get(axis.key);
      if (brush) {
        ctx.fillStyle = "#2563eb33";
        ctx.strokeStyle = "#2563eb";
        ctx.fillRect(x - 7, this.y(brush[1]), 14, this.y(brush[0]) - this.y(brush[1]));
        ctx.strokeRect(x - 7, this.y(brush[1]), 14, this.y(brush[0]) - this.y(brush[1]));
      }
    });
  }

  private local(event: MouseEvent): { x: number; y: number } {
    const rect = this.canvas.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  private down(event: MouseEvent): void {
    const { x, y } = this.local(event);
    const axis = this.axes.findIndex((_, i) => Math.abs(this.axisX(i) - x) <= 12);
    if (axis < 0) return;
    event.preventDefault();
    this.dragging = { axis, from: this.t(y), to: this.t(y) };
  }

  private readonly move = (event: MouseEvent): void => {
    if (!this.dragging) return;
    this.dragging.to = this.t(this.local(event).y);
    this.draw();
  };

  private readonly up = (): void => {
    if (!this.dragging) return;
    const { axis, from, to } = this.dragging;
    this.dragging = null;
    const key = this.axes[axis].key;
    if (Math.abs(to - from) * (HEIGHT - PAD.top - PAD.bottom) < 3) this.brushes.delete(key);
    else this.brushes.set(key, [Math.min(from, to), Math.max(from, to)]);
    this.draw();
  };

  private probe() {
    return {
      metric: this.metric,
      axes: this.axes.map((axis) => ({ ...axis, categories: [...axis.categories] })),
      lines: this.lines.map((line) => ({ run: line.run, t: line.t })),
      highlighted: [...this.highlighted()].sort(),
      brushes: Object.fromEntries(this.brushes),
      pagePoint: (axis: number, t: number) => {
        const rect = this.canvas.getBoundingClientRect();
        return { x: rect.left + this.axisX(axis), y: rect.top + this.y(t) };
      },
    };
  }
}
