// A report drawn: its text blocks as sanitised Markdown and each `tracklet-panel` block as a live
// chart (the workspace's ChartPanel: bands, smoothing, log scale, hover values, drag to zoom).
// Where a panel's data comes from is the caller's: the reports API (the report page), the run and
// history routes (the editor's preview), or the snapshot inside an exported file. A panel that
// can't draw shows a card saying why (the block's error, the query's error, or "no access"),
// never a blank space, and never stops the others.

import { paletteColor, runColor } from "../colors";
import { ChartPanel, plotColumns, type RunInfo } from "../charts/panel";
import { fromApi, type RunSeries } from "../charts/data";
import { PANEL_SIZES } from "../charts/workspace";
import { mark, registerProbe } from "../debug";
import { h } from "../dom";
import type { Block, PanelBlock, PanelData, PanelLine, PanelSpec, PanelsRequest, RunSetSpec } from "./api";
import { renderMarkdown } from "./markdown";

/** What to ask for: a window of x (a zoom; null ends: the whole run) and about one bucket per pixel of the chart. */
export type PanelWindow = { start: number | null; end: number | null; buckets: number } | null;
/** A panel's data; `window` is only a hint (a snapshot has what it has: the chart zooms into it). */
export type PanelLoader = (block: PanelBlock, window: PanelWindow) => Promise<PanelData>;
/** Many panels' data in one streamed request (the report page: `reportsApi.panels`); `onPanel` per panel as it comes. */
export type PanelsLoader = (request: PanelsRequest, onPanel: (line: PanelLine) => void) => Promise<void>;
/** How often a report's live panels ask whether their runs logged more. */
export const REPORT_POLL_MS = 5000;

/** Grid columns (of 6) a panel takes by its size: three small, two medium or one large per row. */
const SPAN = { s: 2, m: 3, l: 6 } as const;
/** Buckets per series at most (a 4K screen's full-width panel). */
const MAX_BUCKETS = 4000;
/** Panels asked for at once. */
const CONCURRENCY = 6;
/** Separates a run id from a key in a series' id when a panel charts several keys. */
const KEY_SEP = "\u241f";

export type PanelState = "loading" | "drawn" | "error" | "denied";

export function panelTitle(block: PanelBlock): string {
  const spec = block.spec;
  if (spec?.title) return spec.title;
  if (spec?.keys?.length) return spec.keys.join(", ");
  return `Panel ${block.index + 1}`;
}

export function runSetOf(block: PanelBlock): RunSetSpec {
  return block.runs ?? block.spec?.runs ?? {};
}

/** One panel block: a chart, or a card saying why there is none. */
export class ReportPanelView {
  readonly el: HTMLElement;
  state: PanelState = "loading";
  reason = "";
  /** The answer's stamp (the server's digest of its runs and how far they logged); null: not from a stream. */
  stamp: string | null = null;
  /** Times new data was drawn into the chart after its first draw (live run sets). */
  refreshes = 0;
  data: PanelData | null = null;
  chart: ChartPanel | null = null;
  zoom: [number, number] | null = null;
  private full: RunSeries[] = [];
  /** The loading card's width as last measured (a chart in its place is as wide): the chart's first draw takes it. */
  cardWidth: number | null = null;
  loader: PanelLoader | null = null;
  private names = new Map<string, string>();
  private colors = new Map<string, string>();
  private groups = new Map<string, { id: string; label: string; color: string; order: number }>();

  constructor(
    readonly block: PanelBlock,
    readonly chartId: string,
  ) {
    const size = block.spec?.size && block.spec.size in SPAN ? block.spec.size : "m";
    this.el = h("div.report-panel", { "data-index": block.index, "data-state": "loading", "data-size": size });
    this.el.style.gridColumn = `span ${SPAN[size]}`;
    this.el.append(this.card("loading", panelTitle(block), "loading…"));
  }

  /** Draw what the loader answered (or the error it threw). */
  show(data: PanelData | null, failure: string | null): void {
    this.data = data;
    const title = panelTitle(this.block);
    if (failure !== null) return this.fail("error", title, failure);
    if (!data) return this.fail("error", title, "no data");
    if (data.access === "denied") {
      const project = runSetOf(this.block).project;
      return this.fail("denied", title, `No access: you may not read the runs of this panel${project ? ` (project ${project})` : ""}.`);
    }
    if (data.error) return this.fail("error", title, data.error);
    const spec = this.block.spec as PanelSpec;
    const keys = spec.keys ?? [];
    const multi = keys.length > 1;
    this.names = new Map(data.runs.map((run) => [run.id, run.name || run.id]));
    const series = this.seriesOf(data, keys, multi);
    this.full = series;
    // A run's colour is its own (the workspace's: a hash of its id, the same in every panel and page), its group's when
    // the run set is grouped, or, in a panel of several keys, one per (run, key) by position (distinct for 20 series).
    const grouped = Boolean(runSetOf(this.block).group) && data.runs.some((run) => "group" in run);
    this.colors = new Map(series.map((s, i) => [s.run, multi ? paletteColor(i) : runColor(s.run)]));
    this.groups = new Map();
    if (grouped) {
      const labels = [...new Set(data.runs.map((run) => JSON.stringify(run.group ?? null)))];
      for (const run of data.runs) {
        const label = JSON.stringify(run.group ?? null);
        const order = labels.indexOf(label);
        this.groups.set(run.id, { id: label, label: run.group === null || run.group === undefined ? "(none)" : String(run.group), color: paletteColor(order), order });
      }
    }
    if (!series.length) return this.fail("error", title, data.runs.length ? `no points of ${keys.join(", ")} in these runs` : "the run set matches no runs");
    if (this.chart && this.state === "drawn" && !this.zoom) {
      // Live data: the same chart, drawn again (hover, size and options stay).
      this.chart.loads++;
      this.chart.setRuns(series);
      this.refreshes++;
      return;
    }
    const size = spec.size && spec.size in PANEL_SIZES ? spec.size : "m";
    this.chart?.destroy();
    this.chart = new ChartPanel(this.chartId, title, {
      xMode: spec.x || "step",
      smoothing: spec.smoothing ?? 0,
      log: Boolean(spec.log_y),
      zoom: null,
      height: PANEL_SIZES[size].height,
      width: this.cardWidth ?? undefined,
      runInfo: (id) => this.runInfo(id),
      onZoom: (range) => void this.zoomTo(range, keys, multi),
    });
    this.chart.loads++;
    this.el.replaceChildren(this.chart.el);
    this.chart.setRuns(series);
    this.setState("drawn");
  }

  /** The data's series in the run set's order (then key order); with several keys, one per (run, key). */
  private seriesOf(data: PanelData, keys: string[], multi: boolean): RunSeries[] {
    const order = new Map(data.runs.map((run, i) => [run.id, i]));
    return (data.history?.series ?? [])
      .slice()
      .sort((a, b) => (order.get(a.run) ?? 1e9) - (order.get(b.run) ?? 1e9) || keys.indexOf(a.key) - keys.indexOf(b.key))
      .map((s) => {
        const run = fromApi(s);
        return multi ? { ...run, run: `${s.run}${KEY_SEP}${s.key}` } : run;
      });
  }

  /** Zoom into an x range: drawn at once from what the chart has, then asked for at full
   * resolution (live reports); double-click goes back to the whole run. */
  private async zoomTo(range: [number, number] | null, keys: string[], multi: boolean): Promise<void> {
    this.zoom = range;
    const chart = this.chart;
    if (!chart) return;
    chart.setOptions({ zoom: range });
    if (!range) {
      chart.setRuns(this.full);
      return;
    }
    if (!this.loader) return;
    try {
      const data = await this.loader(this.block, { start: range[0], end: range[1], buckets: chart.buckets() });
      if (this.zoom !== range || this.chart !== chart || data.access !== "ok" || data.error) return;
      chart.loads++;
      chart.setRuns(this.seriesOf(data, keys, multi));
    } catch {
      /* keep what is drawn */
    }
  }

  private runInfo(id: string): RunInfo {
    const [run, key] = id.split(KEY_SEP);
    const name = this.names.get(run) ?? run;
    const group = this.groups.get(run);
    if (group) return { name: key ? `${name} · ${key}` : name, color: group.color, group };
    return { name: key ? `${name} · ${key}` : name, color: this.colors.get(id) ?? paletteColor(0) };
  }

  private fail(state: PanelState, title: string, reason: string): void {
    this.reason = reason;
    this.chart?.destroy();
    this.chart = null;
    this.el.replaceChildren(this.card(state, title, reason));
    this.setState(state);
  }

  private setState(state: PanelState): void {
    this.state = state;
    this.el.dataset.state = state;
  }

  private card(state: PanelState, title: string, reason: string): HTMLElement {
    return h(
      `section.report-card.card-${state}`,
      {},
      h("header", {}, h("h3", { text: title, title })),
      h("p.reason", { text: reason }),
    );
  }

  destroy(): void {
    this.chart?.destroy();
    this.el.remove();
  }
}

/** A report's blocks, in order: consecutive panels share a grid. */
export class ReportDocument {
  readonly el: HTMLElement;
  readonly panels: ReportPanelView[] = [];
  private stopped = false;
  private paintedAt: number | null = null;
  private readonly startedAt = performance.now();
  private readonly unregister: () => void;
  private pollTimer: number | undefined;
  constructor(
    blocks: Block[],
    private readonly loader: PanelLoader,
    readonly prefix = "report",
    private readonly batch: PanelsLoader | null = null,
  ) {
    this.el = h("article.report-body");
    let grid: HTMLElement | null = null;
    for (const block of blocks) {
      if (block.kind === "text") {
        grid = null;
        this.el.append(renderMarkdown(block.markdown));
        continue;
      }
      if (!grid) {
        grid = h("div.report-grid");
        this.el.append(grid);
      }
      const view = new ReportPanelView(block, `${prefix}:${block.index}`);
      view.loader = loader;
      this.panels.push(view);
      grid.append(view.el);
    }
    this.unregister = registerProbe(prefix, () => this.probe());
  }

  /** One bucket per device pixel column of the panel's plot area (`plotColumns`): each bucket's
   * min and max are drawn as that column's band, so the chart shows every point's extremes (a
   * one-step spike included) with no more data than it can draw. */
  private static buckets(view: ReportPanelView): number {
    if (view.state === "loading") view.cardWidth = (view.el.firstElementChild as HTMLElement | null)?.clientWidth ?? null;
    return Math.min(MAX_BUCKETS, plotColumns(view.el.clientWidth));
  }

  /** Ask for every panel's data and draw each as it comes: in one streamed request when there is a
   * batch loader (the report page), else a few panels at a time. */
  async load(): Promise<void> {
    const queue = this.panels.filter((view) => {
      if (!view.block.error) return true;
      view.show(null, view.block.error);
      return false;
    });
    if (this.batch && queue.length) {
      try {
        await this.stream(queue);
      } catch {
        /* the panels not drawn yet are asked for one by one below */
      }
    }
    const rest = queue.filter((view) => view.state === "loading");
    // Every panel's width read before any is drawn: one layout, not one forced per panel drawn.
    const counts = new Map(rest.map((view) => [view, ReportDocument.buckets(view)]));
    const worker = async () => {
      for (let view = rest.shift(); view && !this.stopped; view = rest.shift()) {
        try {
          const data = await this.loader(view.block, { start: null, end: null, buckets: counts.get(view)! });
          if (!this.stopped) view.show(data, null);
        } catch (error) {
          if (!this.stopped) view.show(null, String((error as Error).message ?? error));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, rest.length) }, worker));
    if (!this.stopped) {
      this.paintedAt = performance.now();
      this.el.dataset.painted = "true";
      mark(`${this.prefix}-painted`);
    }
  }

  /** One streamed request for `views`; with `known`, panels whose runs haven't changed answer nothing new. */
  private async stream(views: ReportPanelView[], known?: Map<number, string>): Promise<void> {
    const byIndex = new Map(views.map((view) => [view.block.index, view]));
    await this.batch!({ panels: views.map((view) => ({ index: view.block.index, buckets: ReportDocument.buckets(view) })), known }, (line) => {
      const view = byIndex.get(line.index);
      if (!view || this.stopped || !line.data) return;
      view.stamp = line.stamp;
      view.show(line.data, null);
      mark(`${this.prefix}-first-panel`);
    });
  }

  /** Keep live run sets current: every `interval` ms (while the page is visible), ask whether the
   * runs of each live panel (not frozen, not zoomed) logged more, and redraw those that did. */
  live(interval = REPORT_POLL_MS): void {
    if (!this.batch) return;
    const tick = async () => {
      if (this.stopped) return;
      const views = this.panels.filter((view) => !runSetOf(view.block).frozen && !view.block.error && !view.zoom
        && (view.state === "drawn" || view.state === "error"));
      if (views.length && document.visibilityState !== "hidden") {
        const known = new Map<number, string>();
        for (const view of views) if (view.stamp) known.set(view.block.index, view.stamp);
        try {
          await this.stream(views, known);
        } catch {
          /* the next tick tries again */
        }
      }
      if (!this.stopped) this.pollTimer = window.setTimeout(() => void tick(), interval);
    };
    this.pollTimer = window.setTimeout(() => void tick(), interval);
  }

  destroy(): void {
    this.stopped = true;
    clearTimeout(this.pollTimer);
    this.unregister();
    for (const view of this.panels) view.destroy();
    this.el.remove();
  }

  private probe() {
    return {
      panels: this.panels.map((view) => ({ index: view.block.index, state: view.state, reason: view.reason, chart: view.chartId, refreshes: view.refreshes })),
      painted: this.paintedAt !== null,
      paintMs: this.paintedAt === null ? null : this.paintedAt - this.startedAt,
    };
  }
}
