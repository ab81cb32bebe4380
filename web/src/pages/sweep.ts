// A sweep (/projects/<p>/sweeps/<id>): its method, metric, state and best trial; the best value so
// far, parameter importance, parallel coordinates of parameters → metric, the trials per agent
// over time, and the trials table (click a header to sort; the sort is in the query string as
// `sort`). Polled every 2 s while the sweep may still change.

import { api, ApiError, type SweepDetail, type SweepImportance, type SweepTrial } from "../api";
import { POLL_MS } from "../charts/workspace";
import { registerProbe } from "../debug";
import { debounce, h } from "../dom";
import { fmtDuration, fmtTime, fmtValue } from "../format";
import { projectHref, readQuery, runHref, setQuery } from "../router";
import { bestSoFarChart, importanceBars, parcoordsChart, timelineChart, type BestDrawn, type Lane, type PcAxis, type PcLine } from "./sweepcharts";

const MAX_ROWS = 1000; // table rows drawn (after sorting); the charts show every trial

type Column = { id: string; label: string; value: (t: SweepTrial) => unknown; cell: (t: SweepTrial) => Node | string };

function stateBadge(state: string, error?: string | null): HTMLElement {
  return h("span.state", { "data-state": state, text: state, title: error ?? null });
}

/** A trial's state, and a mark on a trial suggested at random where the GP would have been asked
 *  (its modules, torch and SciPy, were still importing: `random_while_gp_imports`). */
function stateCell(t: SweepTrial): Node {
  if (!t.random_while_gp_imports) return stateBadge(t.state, t.error);
  const title = "Suggested at random: the GP's modules (torch, SciPy) were still importing";
  return h("span", {}, stateBadge(t.state, t.error), " ", h("span.muted.gp-importing", { text: "random", title }));
}

/** Sort values: numbers and strings compare as such; missing values last either way. */
function compare(a: unknown, b: unknown): number {
  const missing = (v: unknown) => v === null || v === undefined;
  if (missing(a) || missing(b)) return (missing(a) ? 1 : 0) - (missing(b) ? 1 : 0);
  if (typeof a === "number" && typeof b === "number") return a - b;
  return fmtValue(a).localeCompare(fmtValue(b), undefined, { numeric: true });
}

export async function sweepPage(root: HTMLElement, project: string, sweepId: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading sweep…" }));
  let sweep: SweepDetail = (await api.sweep(project, sweepId)).sweep;
  let importance: SweepImportance | null = null;
  let importanceFor = -1; // complete trials the importance was asked for
  let sort = readQuery().get("sort") || "number";
  let stopped = false;
  let pollTimer: number | undefined;
  let drawn: { best: BestDrawn; axes: PcAxis[]; lines: PcLine[]; lanes: Lane[]; rows: number[] } = {
    best: { trials: [], values: [], best: [] }, axes: [], lines: [], lanes: [], rows: [],
  };

  const head = h("div.sweep-head");
  const bestCard = h("div.chart-box");
  const importanceCard = h("div");
  const parcoordsCard = h("div.chart-box");
  const timelineCard = h("div.chart-box");
  const tableBox = h("div.trials-box");
  const page = h(
    "section.sweep-page",
    {},
    head,
    h(
      "div.columns",
      {},
      h("section.card", {}, h("h2", { text: "Best so far" }), bestCard),
      h("section.card", {}, h("h2", { text: "Parameter importance" }), importanceCard),
    ),
    h("section.card.wide", {}, h("h2", {}, "Parallel coordinates ", h("span.heat-legend", { text: "metric: low → high" })), parcoordsCard),
    h("section.card.wide", {}, h("h2", { text: "Trials per agent" }), timelineCard),
    h("section.card.wide", {}, h("h2", { text: "Trials" }), tableBox),
  );
  root.replaceChildren(page);

  function drawHead(): void {
    const objectives = sweep.metrics.length ? sweep.metrics : sweep.metric ? [sweep.metric] : [];
    const metric = objectives.length ? objectives.map((m) => `${m.name} (${m.goal})`).join(", ") : "no metric";
    const counts = Object.entries(sweep.counts).sort(([a], [b]) => a.localeCompare(b)).map(([state, n]) => `${n} ${state}`).join(", ");
    const runsFilter = `tags contains "sweep:${sweep.id}"`;
    head.replaceChildren(
      h("div.pane-head", {}, h("h1", { text: `Sweep ${sweep.id}` }), stateBadge(sweep.state), h("span.count", { text: `${sweep.trial_count} trials` })),
      h(
        "dl.overview.sweep-overview",
        {},
        h("dt", { text: "Method" }), h("dd", { "data-field": "method", text: sweep.method }),
        h("dt", { text: "Metric" }), h("dd", { "data-field": "metric", text: metric }),
        h("dt", { text: "Trials" }), h("dd", { "data-field": "counts", text: counts || "none yet" }),
        h("dt", { text: "Best" }),
        h(
          "dd",
          { "data-field": "best" },
          sweep.best
            ? h("span", {}, `${fmtValue(sweep.best.value)} (trial ${sweep.best.trial}`,
                sweep.best.run_id ? h("span", {}, ", run ", h("a", { href: runHref(project, sweep.best.run_id), "data-link": true, text: sweep.best.run_id })) : "", ")")
            : "none yet",
        ),
        h("dt", { text: "Cap" }), h("dd", { text: sweep.grid_size !== null ? `grid of ${sweep.grid_size}` : sweep.run_cap !== null ? `${sweep.run_cap} runs` : "none" }),
        h("dt", { text: "Created" }), h("dd", { text: fmtTime(sweep.created) }),
        h("dt", { text: "Runs" }),
        h("dd", {}, h("a.sweep-runs", { href: `${projectHref(project)}?filter=${encodeURIComponent(runsFilter)}`, "data-link": true, text: "in the runs table" })),
      ),
    );
  }

  /** One column per objective: a multi-objective sweep's trials show each of their values. */
  function valueColumns(): Column[] {
    if (sweep.metrics.length < 2) return [{ id: "value", label: sweep.metric?.name ?? "value", value: (t) => t.value, cell: (t) => fmtValue(t.value) }];
    return sweep.metrics.map((m, i): Column => {
      const value = (t: SweepTrial) => (t.state === "complete" ? t.values?.[i] ?? null : null);
      return { id: `value:${i}`, label: `${m.name} (${m.goal === "maximize" ? "max" : "min"})`, value, cell: (t) => fmtValue(value(t)) };
    });
  }

  function columns(): Column[] {
    const runCell = (t: SweepTrial): Node | string =>
      !t.run_id ? "" : t.run_state ? h("a", { href: runHref(project, t.run_id), "data-link": true, text: t.run_id }) : h("span.muted", { text: t.run_id, title: "no run recorded" });
    const duration = (t: SweepTrial) => (t.start === null ? null : (t.end ?? Date.now() / 1000) - t.start);
    return [
      { id: "number", label: "#", value: (t) => t.number, cell: (t) => String(t.number) },
      { id: "state", label: "state", value: (t) => t.state, cell: stateCell },
      ...valueColumns(),
      ...sweep.parameters.map((p): Column => ({ id: `param:${p.name}`, label: p.name, value: (t) => t.params[p.name], cell: (t) => fmtValue(t.params[p.name]) })),
      { id: "run", label: "run", value: (t) => t.run_id, cell: runCell },
      { id: "agent", label: "agent", value: (t) => t.agent, cell: (t) => t.agent ?? "" },
      { id: "start", label: "started", value: (t) => t.start, cell: (t) => fmtTime(t.start, true) },
      { id: "duration", label: "duration", value: duration, cell: (t) => fmtDuration(duration(t)) },
    ];
  }

  function drawTable(): void {
    const cols = columns();
    const descending = sort.startsWith("-");
    const column = cols.find((c) => c.id === sort.replace(/^-/, "")) ?? cols[0];
    const sorted = [...sweep.trials].sort((a, b) => {
      const [va, vb] = [column.value(a), column.value(b)];
      const missing = (v: unknown) => v === null || v === undefined;
      if (missing(va) || missing(vb)) return compare(va, vb); // missing last in both directions
      return (descending ? -1 : 1) * compare(va, vb) || a.number - b.number;
    });
    const shown = sorted.slice(0, MAX_ROWS);
    drawn.rows = shown.map((t) => t.number);
    const headers = cols.map((c) => {
      const active = c.id === column.id;
      const th = h("th.sortable", { "data-col": c.id, text: c.label + (active ? (descending ? " ▼" : " ▲") : ""), title: "Sort" });
      th.addEventListener("click", () => {
        sort = active && !descending ? `-${c.id}` : c.id;
        setQuery({ sort: sort === "number" ? null : sort });
        drawTable();
      });
      return th;
    });
    tableBox.replaceChildren(
      h(
        "table.trials",
        {},
        h("thead", {}, h("tr", {}, ...headers)),
        h("tbody", {}, ...shown.map((t) => h("tr", { "data-trial": t.number, "data-state": t.state }, ...cols.map((c) => h("td", { "data-col": c.id }, c.cell(t)))))),
      ),
      sorted.length > shown.length ? h("p.muted", { text: `The first ${shown.length} of ${sorted.length} trials in this order.` }) : "",
      sweep.trial_count > sweep.trials.length ? h("p.muted", { text: `The newest ${sweep.trials.length} of ${sweep.trial_count} trials.` }) : "",
    );
  }

  function drawCharts(): void {
    const width = (box: HTMLElement) => Math.max(320, Math.floor(box.clientWidth || page.clientWidth - 40));
    const best = bestSoFarChart(sweep, width(bestCard));
    bestCard.replaceChildren(best.el);
    const pc = parcoordsChart(sweep, width(parcoordsCard));
    parcoordsCard.replaceChildren(pc.el);
    const timeline = timelineChart(sweep, width(timelineCard), Date.now() / 1000);
    timelineCard.replaceChildren(timeline.el);
    drawn = { ...drawn, best: best.drawn, axes: pc.axes, lines: pc.lines, lanes: timeline.lanes };
  }

  async function loadImportance(): Promise<void> {
    const complete = sweep.counts.complete ?? 0;
    if (complete === importanceFor) return;
    importanceFor = complete;
    if (importance === null) importanceCard.replaceChildren(importanceBars(null));
    try {
      importance = await api.sweepImportance(project, sweepId);
    } catch (error) {
      importanceCard.replaceChildren(h("p.error", { text: error instanceof ApiError ? error.message : String(error) }));
      return;
    }
    if (!stopped) importanceCard.replaceChildren(importanceBars(importance));
  }

  function draw(): void {
    drawHead();
    drawCharts();
    drawTable();
    void loadImportance();
  }

  const changing = () => sweep.state === "running" || sweep.state === "paused" || (sweep.counts.running ?? 0) > 0;

  async function poll(): Promise<void> {
    if (stopped) return;
    try {
      const next = (await api.sweep(project, sweepId)).sweep;
      const before = JSON.stringify([sweep.state, sweep.counts, sweep.trial_count, sweep.trials.map((t) => [t.state, t.run_state])]);
      const after = JSON.stringify([next.state, next.counts, next.trial_count, next.trials.map((t) => [t.state, t.run_state])]);
      sweep = next;
      if (before !== after) draw();
      else if ((sweep.counts.running ?? 0) > 0) drawCharts(); // running bars grow
    } catch {
      /* the next poll tries again */
    }
    if (!stopped && changing()) pollTimer = window.setTimeout(() => void poll(), POLL_MS);
  }

  const resize = new ResizeObserver(debounce(() => drawCharts(), 100));
  resize.observe(page);
  const unregister = registerProbe("sweep", () => ({
    id: sweep.id,
    trials: sweep.trials.length,
    best: drawn.best,
    axes: drawn.axes,
    lines: drawn.lines,
    lanes: drawn.lanes,
    rows: drawn.rows,
    importance,
  }));
  draw();
  if (changing()) pollTimer = window.setTimeout(() => void poll(), POLL_MS);
  return () => {
    stopped = true;
    clearTimeout(pollTimer);
    resize.disconnect();
    unregister();
  };
}
