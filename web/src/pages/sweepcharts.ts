// The sweep page's views, drawn as SVG (pages/sweep.ts): the best value after each trial, parallel
// coordinates of the searched parameters against the metric (one polyline per trial, coloured by
// its value; categorical parameters on axes of their values in the spec's order), parameter
// importance bars, and each agent's trials over time (a lane per agent). Each function returns
// its element and what it drew, for the page's probe (debug.ts).

import type { SweepDetail, SweepImportance, SweepTrial } from "../api";
import { fmtTick } from "../charts/panel";
import { heat } from "../compare/parcoords";
import { h } from "../dom";
import { fmtDuration, fmtTime, fmtValue } from "../format";

const NS = "http://www.w3.org/2000/svg";
type Child = Node | string | null | undefined | false;

/** An SVG element: svg("circle.point", {cx: 1}, ...children). */
export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K | `${K}.${string}`,
  attrs: Record<string, string | number | null | undefined> = {},
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const [name, ...classes] = tag.split(".");
  const el = document.createElementNS(NS, name) as SVGElementTagNameMap[K];
  if (classes.length) el.setAttribute("class", classes.join(" "));
  for (const [key, value] of Object.entries(attrs)) if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(child);
  return el;
}

const title = (text: string) => svg("title", {}, text);
const round = (v: number) => Math.round(v * 10) / 10;

/** Log scale for values that are all positive and span 100x or more. */
function wantsLog(values: number[]): boolean {
  if (!values.length) return false;
  const min = Math.min(...values);
  return min > 0 && Math.max(...values) / min >= 100;
}

/** A value's place on [min, max] (linear or log) as 0..1. */
function unit(value: number, min: number, max: number, log: boolean): number {
  if (max === min) return 0.5;
  if (log) return Math.log(value / min) / Math.log(max / min);
  return (value - min) / (max - min);
}

const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

// ---------------------------------------------------------------------------------- best so far

export interface BestDrawn {
  trials: number[];
  values: number[];
  best: number[];
}

/** Every complete trial's value as a point at its trial number, and the best value so far as a step line. */
export function bestSoFarChart(sweep: SweepDetail, width: number): { el: SVGSVGElement; drawn: BestDrawn } {
  const H = 230;
  const pad = { left: 58, right: 14, top: 12, bottom: 30 };
  const points = sweep.best_so_far;
  const drawn: BestDrawn = { trials: points.map((p) => p.trial), values: points.map((p) => p.value), best: points.map((p) => p.best) };
  const el = svg("svg.best-so-far", { width, height: H, viewBox: `0 0 ${width} ${H}`, role: "img" });
  if (!points.length) {
    el.append(svg("text.empty-note", { x: 12, y: 40 }, "No complete trial yet."));
    return { el, drawn };
  }
  const log = wantsLog(drawn.values);
  const [ymin, ymax] = [Math.min(...drawn.values), Math.max(...drawn.values)];
  const [xmin, xmax] = [Math.min(...drawn.trials), Math.max(...drawn.trials)];
  const x = (trial: number) => pad.left + (xmax === xmin ? 0.5 : (trial - xmin) / (xmax - xmin)) * (width - pad.left - pad.right);
  const y = (value: number) => pad.top + (1 - unit(value, ymin, ymax, log)) * (H - pad.top - pad.bottom);
  const axes = svg(
    "g.frame",
    {},
    svg("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: H - pad.bottom, stroke: "#888" }),
    svg("line", { x1: pad.left, y1: H - pad.bottom, x2: width - pad.right, y2: H - pad.bottom, stroke: "#888" }),
    ...[...new Set([ymin, ymax, log ? Math.sqrt(ymin * ymax) : (ymin + ymax) / 2])].map((v) =>
      svg("text.tick", { x: pad.left - 6, y: round(y(v)) + 4, "text-anchor": "end" }, fmtTick(v)),
    ),
    ...[...new Set([xmin, Math.round((xmin + xmax) / 2), xmax])].map((t) =>
      svg("text.tick", { x: round(x(t)), y: H - pad.bottom + 16, "text-anchor": "middle" }, String(t)),
    ),
    svg("text.axis-name", { x: width - pad.right, y: H - 4, "text-anchor": "end" }, "trial"),
  );
  const step: string[] = [];
  points.forEach((p, i) => {
    if (i > 0) step.push(`${round(x(p.trial))},${round(y(points[i - 1].best))}`);
    step.push(`${round(x(p.trial))},${round(y(p.best))}`);
  });
  el.append(
    axes,
    ...points.map((p) =>
      svg("circle.trial-point", { cx: round(x(p.trial)), cy: round(y(p.value)), r: 3, "data-trial": p.trial },
        title(`trial ${p.trial}: ${fmtValue(p.value)} (best so far ${fmtValue(p.best)})`)),
    ),
    svg("polyline.best", { points: step.join(" "), fill: "none", "data-best": JSON.stringify(drawn.best) }),
  );
  return { el, drawn };
}

// ---------------------------------------------------------------------------------- parallel coordinates

export interface PcAxis {
  key: string; // the parameter's dotted name, or "" for the metric
  label: string;
  kind: "number" | "log" | "category";
  min: number;
  max: number;
  categories: string[];
  ticks: number[]; // numeric axes: the values labelled (a numeric categorical's choices, else min and max)
}

export interface PcLine {
  trial: number;
  state: string;
  t: (number | null)[]; // 0 (bottom) .. 1 (top) per axis; null: no value there
  color: string;
}

const categoryLabel = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value));

function paramAxis(name: string, values: unknown[], choices: unknown[] | undefined, log: boolean): PcAxis {
  const numbers = values.filter(finite);
  const numeric = choices ? choices.every(finite) : values.every((v) => v === undefined || finite(v));
  if (!numeric) {
    const categories = [...new Set([...(choices ?? []).map(categoryLabel), ...values.filter((v) => v !== undefined).map(categoryLabel)])];
    return { key: name, label: name, kind: "category", min: 0, max: Math.max(0, categories.length - 1), categories, ticks: [] };
  }
  const range = [...numbers, ...((choices ?? []) as number[])];
  const min = range.length ? Math.min(...range) : 0;
  const max = range.length ? Math.max(...range) : 0;
  const isLog = min > 0 && (log || wantsLog(range));
  const ticks = choices && choices.length <= 12 ? [...new Set(choices as number[])] : [...new Set([min, max])];
  return { key: name, label: name, kind: isLog ? "log" : "number", min, max, categories: [], ticks };
}

function place(axis: PcAxis, value: unknown): number | null {
  if (value === undefined || value === null) return null;
  if (axis.kind === "category") {
    const index = axis.categories.indexOf(categoryLabel(value));
    if (index < 0) return null;
    return axis.categories.length === 1 ? 0.5 : index / (axis.categories.length - 1);
  }
  if (!finite(value) || (axis.kind === "log" && value <= 0)) return null;
  return unit(value, axis.min, axis.max, axis.kind === "log");
}

/** The axes: one per searched parameter, then the metric. */
export function sweepAxes(sweep: SweepDetail): PcAxis[] {
  const axes = sweep.parameters.map((param) =>
    paramAxis(param.name, sweep.trials.map((t) => t.params[param.name]), param.values ?? undefined, param.log),
  );
  const values = sweep.trials.filter((t) => t.state === "complete").map((t) => t.value).filter(finite);
  const metric = paramAxis("", values, undefined, false);
  axes.push({ ...metric, label: sweep.metric?.name ?? "value" });
  return axes;
}

export function parcoordsChart(sweep: SweepDetail, width: number): { el: SVGSVGElement; axes: PcAxis[]; lines: PcLine[] } {
  const H = 330;
  const pad = { left: 70, right: 70, top: 36, bottom: 26 };
  const axes = sweepAxes(sweep);
  const metricIndex = axes.length - 1;
  const el = svg("svg.sweep-parcoords", { width, height: H, viewBox: `0 0 ${width} ${H}`, role: "img" });
  const ax = (i: number) => pad.left + (axes.length > 1 ? (i * (width - pad.left - pad.right)) / (axes.length - 1) : (width - pad.left - pad.right) / 2);
  const ay = (t: number) => pad.top + (1 - t) * (H - pad.top - pad.bottom);
  const lines: PcLine[] = sweep.trials.map((trial) => {
    const t = axes.map((axis, i) => (i === metricIndex ? (trial.state === "complete" ? place(axis, trial.value) : null) : place(axis, trial.params[axis.key])));
    const m = t[metricIndex];
    return { trial: trial.number, state: trial.state, t, color: m === null ? "#b8bec8" : heat(m) };
  });
  // unscored trials underneath; scored ones drawn worst first, so the best are on top
  const maximize = sweep.metric?.goal === "maximize";
  const order = [...lines.keys()].sort((a, b) => {
    const [ma, mb] = [lines[a].t[metricIndex], lines[b].t[metricIndex]];
    if (ma === null || mb === null) return (ma === null ? 0 : 1) - (mb === null ? 0 : 1);
    return maximize ? ma - mb : mb - ma;
  });
  const byNumber = new Map(sweep.trials.map((trial) => [trial.number, trial]));
  const polylines = order.map((index) => {
    const line = lines[index];
    const trial = byNumber.get(line.trial)!;
    const points = line.t.flatMap((t, i) => (t === null ? [] : [`${round(ax(i))},${round(ay(t))}`]));
    const scored = line.t[metricIndex] !== null;
    const described = Object.entries(trial.params).map(([k, v]) => `${k}=${fmtValue(v)}`).join(", ");
    return svg(
      "polyline.trial",
      {
        points: points.join(" "), fill: "none", stroke: line.color, "stroke-width": scored ? 1.6 : 1.2,
        "stroke-dasharray": scored ? null : "4 3", "data-trial": line.trial, "data-state": line.state,
      },
      title(`trial ${line.trial} (${line.state}): ${described}${scored ? ` → ${fmtValue(trial.value)}` : ""}`),
    );
  });
  const axisEls = axes.map((axis, i) => {
    const x = ax(i);
    const last = i === axes.length - 1;
    const ticks: [number, string][] =
      axis.kind === "category"
        ? axis.categories.map((c, k) => [axis.categories.length === 1 ? 0.5 : k / (axis.categories.length - 1), c])
        : axis.ticks.map((v) => [axis.min === axis.max ? 0.5 : unit(v, axis.min, axis.max, axis.kind === "log"), fmtTick(v)]);
    const name = axis.label.length > 22 ? axis.label.slice(0, 21) + "…" : axis.label;
    return svg(
      "g.axis",
      { "data-key": axis.key, "data-kind": axis.kind, "data-metric": last ? "true" : null },
      svg("line", { x1: round(x), y1: ay(1), x2: round(x), y2: ay(0), stroke: "#555" }),
      svg("text.axis-label", { x: round(x), y: 16, "text-anchor": "middle" }, name, title(axis.label)),
      ...ticks.slice(0, 24).map(([t, text]) =>
        svg("text.tick", { x: round(x + (last ? -5 : 5)), y: round(ay(t)) + 4, "text-anchor": last ? "end" : "start" },
          text.length > 14 ? text.slice(0, 13) + "…" : text),
      ),
    );
  });
  el.append(svg("g.lines", {}, ...polylines), ...axisEls);
  return { el, axes, lines };
}

// ---------------------------------------------------------------------------------- importance

export function importanceBars(found: SweepImportance | null): HTMLElement {
  if (!found) return h("p.muted", { text: "Computing…" });
  if (!found.importances.length) return h("p.muted.importance-note", { text: found.note ?? "No importance yet." });
  const top = Math.max(...found.importances.map((entry) => entry.importance), 1e-12);
  return h(
    "div.importance",
    {},
    ...found.importances.map((entry) =>
      h(
        "div.importance-row",
        { "data-name": entry.name, "data-importance": entry.importance, title: `${entry.name}: ${(entry.importance * 100).toFixed(1)} %` },
        h("span.importance-name", { text: entry.name }),
        h("span.importance-bar", {}, h("span", { style: `width:${((entry.importance / top) * 100).toFixed(1)}%` })),
        h("span.importance-value", { text: `${(entry.importance * 100).toFixed(1)} %` }),
      ),
    ),
    h("p.muted", { text: `${found.evaluator} over ${found.trials} complete trials` }),
  );
}

// ---------------------------------------------------------------------------------- timeline

export const STATE_COLORS: Record<string, string> = {
  complete: "#16a34a", failed: "#dc2626", lapsed: "#a21caf", pruned: "#d97706", running: "#2563eb", waiting: "#9ca3af",
};

export interface Lane {
  agent: string;
  trials: number[];
}

const NO_AGENT = "(no agent)";

/** A lane per agent (in the order they started), each trial a bar from its start to its end (now while running). */
export function timelineChart(sweep: SweepDetail, width: number, now: number): { el: SVGSVGElement; lanes: Lane[] } {
  const LANE = 22;
  const GAP = 6;
  const pad = { left: 160, right: 14, top: 6, bottom: 24 };
  const started = sweep.trials.filter((t) => t.start !== null);
  const names = [...sweep.agents];
  for (const trial of started) if (!names.includes(trial.agent ?? NO_AGENT)) names.push(trial.agent ?? NO_AGENT);
  const lanes: Lane[] = names.map((agent) => ({ agent, trials: started.filter((t) => (t.agent ?? NO_AGENT) === agent).map((t) => t.number) }))
    .filter((lane) => lane.trials.length);
  const H = pad.top + pad.bottom + lanes.length * (LANE + GAP);
  const el = svg("svg.timeline", { width, height: Math.max(H, 60), viewBox: `0 0 ${width} ${Math.max(H, 60)}`, role: "img" });
  if (!lanes.length) {
    el.append(svg("text.empty-note", { x: 12, y: 30 }, "No trial has started yet."));
    return { el, lanes };
  }
  const end = (t: SweepTrial) => t.end ?? (t.state === "running" ? now : t.start!);
  const t0 = Math.min(...started.map((t) => t.start!));
  const t1 = Math.max(t0 + 1e-3, ...started.map(end));
  const x = (time: number) => pad.left + ((time - t0) / (t1 - t0)) * (width - pad.left - pad.right);
  const byNumber = new Map(sweep.trials.map((trial) => [trial.number, trial]));
  const laneEls = lanes.map((lane, index) => {
    const y = pad.top + index * (LANE + GAP);
    const label = lane.agent.length > 24 ? "…" + lane.agent.slice(-23) : lane.agent;
    return svg(
      "g.lane",
      { "data-agent": lane.agent },
      svg("rect.lane-bg", { x: pad.left, y, width: width - pad.left - pad.right, height: LANE }),
      svg("text.lane-label", { x: pad.left - 8, y: y + LANE / 2 + 4, "text-anchor": "end" }, label, title(lane.agent)),
      ...lane.trials.map((number) => {
        const trial = byNumber.get(number)!;
        const [a, b] = [x(trial.start!), x(end(trial))];
        return svg(
          "rect.trial-bar",
          { x: round(a), y: y + 2, width: round(Math.max(2, b - a)), height: LANE - 4, rx: 2, fill: STATE_COLORS[trial.state] ?? "#6b7280",
            "data-trial": number, "data-state": trial.state },
          title(`trial ${number} (${trial.state}), ${fmtTime(trial.start, true)}, ${fmtDuration(end(trial) - trial.start!)}` +
            (trial.value !== null ? ` → ${fmtValue(trial.value)}` : "") + (trial.error ? `\n${trial.error}` : "")),
        );
      }),
    );
  });
  const axisY = pad.top + lanes.length * (LANE + GAP);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => t0 + f * (t1 - t0));
  el.append(
    ...laneEls,
    ...ticks.map((time, i) =>
      svg("text.tick", { x: round(x(time)), y: axisY + 14, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
        i === 0 ? fmtTime(t0, true) : `+${fmtDuration(time - t0)}`),
    ),
  );
  return { el, lanes };
}
