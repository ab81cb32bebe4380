// The charts workspace: a panel per metric key of the selected runs, grouped by prefix (train/,
// eval/, ...), with a shared x axis mode, smoothing and zoom. Each panel asks the server for all
// runs at once (GET /projects/<p>/history?runs=...), only while it is on screen; a zoom asks again
// for the zoomed window at full resolution; live runs are polled for what came after their last
// step, never re-downloading history.

import { api, type RunRow } from "../api";
import { runColor } from "../colors";
import { mark, noteRequest } from "../debug";
import { debounce, h } from "../dom";
import { append, fromApi, type RunSeries } from "./data";
import { ChartPanel, fillGridRows, TIME_MODES, type RunInfo, type XMode } from "./panel";

export const POLL_MS = 2000;

/** Panel sizes: the narrowest a panel gets in the grid, and its plot's height. */
export const PANEL_SIZES = {
  s: { label: "Small", minWidth: 300, height: 150 },
  m: { label: "Medium", minWidth: 380, height: 220 },
  l: { label: "Large", minWidth: 620, height: 360 },
} as const;
export type PanelSize = keyof typeof PANEL_SIZES;

export interface ViewState {
  xMode: XMode;
  smoothing: number;
  zoom: [number, number] | null;
  log: Set<string>;
  panelFilter: string;
  size: PanelSize;
  /** Panels resized by dragging their corner: plot height and grid columns spanned, by key. */
  panelSizes: Map<string, PanelOwnSize>;
}

export interface PanelOwnSize {
  height: number;
  span: number;
}

export function groupOf(key: string): string {
  const slash = key.indexOf("/");
  return slash > 0 ? key.slice(0, slash) : "charts";
}

export class ChartsWorkspace {
  readonly el: HTMLElement;
  private readonly groupsEl: HTMLElement;
  private readonly emptyEl: HTMLElement;
  private readonly panels = new Map<string, ChartPanel>();
  private readonly visible = new Set<string>();
  private readonly observer: IntersectionObserver;
  private runs: RunRow[] = [];
  private keys: string[] = [];
  private keysFor = "";
  private generation = 0; // bumps on every change that makes loaded data stale
  private liveTimer: number | undefined;
  private pending = new Map<string, AbortController>();
  private readonly xSelect: HTMLSelectElement;
  private runStyle: (runId: string) => Omit<RunInfo, "name"> = (runId) => ({ color: runColor(runId) });
  /** "Add to report" on a panel: the page decides what it does (reports/add.ts); none: no button. */
  addToReport: ((key: string, view: ViewState) => void) | null = null;

  constructor(
    private readonly project: string,
    private view: ViewState,
    private readonly onViewChange: (view: ViewState) => void,
  ) {
    this.xSelect = h("select", { name: "x", title: "x axis: step, time, or a metric's value at each step" });
    this.groupsEl = h("div.groups");
    this.emptyEl = h("p.empty", { text: "Select runs to chart them." });
    this.el = h("div.workspace", {}, this.toolbar(), this.emptyEl, this.groupsEl);
    this.applySize();
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const key = (entry.target as HTMLElement).dataset.key!;
        if (entry.isIntersecting) {
          this.visible.add(key);
          const panel = this.panels.get(key);
          if (panel && panel.stale) void this.load(panel);
        } else this.visible.delete(key);
      }
    }, { rootMargin: "200px" });
    let width = 0;
    new ResizeObserver(() => {
      if (this.groupsEl.clientWidth === width) return;
      width = this.groupsEl.clientWidth;
      this.fillRows();
    }).observe(this.groupsEl);
  }

  /** The selected runs, in legend order (the caller keeps each run's state current for live polling). */
  setRuns(runs: RunRow[]): void {
    const before = this.runs.map((r) => r.run_id).join(",");
    this.runs = runs;
    const now = runs.map((r) => r.run_id).join(",");
    this.emptyEl.hidden = runs.length > 0;
    if (now !== before) {
      this.generation++;
      void this.refreshKeys();
    }
    this.scheduleLive();
  }

  destroy(): void {
    clearTimeout(this.liveTimer);
    this.observer.disconnect();
    for (const panel of this.panels.values()) panel.destroy();
    for (const controller of this.pending.values()) controller.abort();
  }

  /** Colours (and groups) of runs: their own colour unless the page groups them. Redraws. */
  setRunStyle(style: (runId: string) => Omit<RunInfo, "name">): void {
    this.runStyle = style;
    for (const panel of this.panels.values()) panel.setOptions({});
  }

  /** The x choices: step, relative and wall time, then every metric key (its value at each step). */
  private fillXOptions(): void {
    const metrics = this.keys.includes(this.view.xMode) || TIME_MODES.includes(this.view.xMode) ? this.keys : [...this.keys, this.view.xMode];
    this.xSelect.replaceChildren(
      h("option", { value: "step", text: "Step" }),
      h("option", { value: "relative_time", text: "Relative time" }),
      h("option", { value: "time", text: "Wall time" }),
      ...(metrics.length ? [h("optgroup", { label: "Metric" }, ...metrics.map((key) => h("option", { value: key, text: key })))] : []),
    );
    this.xSelect.value = this.view.xMode;
  }

  private applySize(): void {
    const size = PANEL_SIZES[this.view.size];
    this.groupsEl.style.setProperty("--panel-min", `${size.minWidth}px`);
    for (const [key, panel] of this.panels) panel.setOptions(this.panelSize(key));
    this.fillRows();
  }

  /** A panel's plot height and span: its own (dragged) size, else the size selector's. */
  private panelSize(key: string): PanelOwnSize {
    return this.view.panelSizes.get(key) ?? { height: PANEL_SIZES[this.view.size].height, span: 1 };
  }

  private resized(key: string, size: PanelOwnSize | null): void {
    const panelSizes = new Map(this.view.panelSizes);
    if (size) panelSizes.set(key, size);
    else panelSizes.delete(key);
    this.view = { ...this.view, panelSizes };
    this.onViewChange(this.view);
    this.panels.get(key)?.setOptions(this.panelSize(key));
    this.fillRows();
  }

  private toolbar(): HTMLElement {
    const xSelect = this.xSelect;
    this.fillXOptions();
    xSelect.addEventListener("change", () => this.change({ xMode: xSelect.value, zoom: null }));
    const sizeSelect = h(
      "select",
      { name: "size", title: "Panel size" },
      ...Object.entries(PANEL_SIZES).map(([value, { label }]) => h("option", { value, text: label })),
    );
    sizeSelect.value = this.view.size;
    sizeSelect.addEventListener("change", () => {
      // The selector sizes every panel: it replaces the sizes panels were dragged to.
      this.view = { ...this.view, size: sizeSelect.value as PanelSize, panelSizes: new Map() };
      this.onViewChange(this.view);
      this.applySize();
    });
    const smooth = h("input", { type: "range", name: "smoothing", min: 0, max: 0.99, step: 0.01, value: this.view.smoothing });
    const smoothValue = h("span.smooth-value", { text: this.view.smoothing.toFixed(2) });
    smooth.addEventListener("input", () => {
      smoothValue.textContent = Number(smooth.value).toFixed(2);
      this.applySmoothing(Number(smooth.value));
    });
    const reset = h("button.reset-zoom", { text: "Reset zoom", hidden: !this.view.zoom });
    reset.addEventListener("click", () => this.change({ zoom: null }));
    this.resetButton = reset;
    const search = h("input.panel-search", { type: "search", placeholder: "Filter panels", value: this.view.panelFilter });
    search.addEventListener("input", debounce(() => this.change({ panelFilter: search.value }, false), 150));
    return h(
      "div.toolbar",
      {},
      h("label", {}, "x ", xSelect),
      h("label", {}, "Smoothing ", smooth, smoothValue),
      h("label", {}, "Size ", sizeSelect),
      search,
      reset,
    );
  }

  private resetButton: HTMLElement | null = null;

  private applySmoothing = debounce((smoothing: number) => this.change({ smoothing }, false), 60);

  /** Apply a view change; `reload`: the data must be asked for again (axis, zoom). */
  private change(changes: Partial<ViewState>, reload = true): void {
    this.view = { ...this.view, ...changes };
    this.onViewChange(this.view);
    if (this.resetButton) this.resetButton.hidden = !this.view.zoom;
    if (changes.panelFilter !== undefined) this.layout();
    if (reload) {
      // Ask first: the requests are under way while the panels redraw what they have.
      this.generation++;
      for (const panel of this.panels.values()) panel.stale = true;
      for (const key of this.visible) {
        const panel = this.panels.get(key);
        if (panel) void this.load(panel);
      }
    }
    for (const [key, panel] of this.panels) {
      panel.setOptions({
        xMode: this.view.xMode,
        smoothing: this.view.smoothing,
        zoom: this.view.zoom,
        log: this.view.log.has(key),
      });
    }
  }

  private async refreshKeys(): Promise<void> {
    const ids = this.runs.map((r) => r.run_id);
    const wanted = ids.join(",");
    if (!ids.length) {
      this.keys = [];
      this.keysFor = "";
      this.layout();
      return;
    }
    const { keys } = await api.keys(this.project, ids);
    if (this.runs.map((r) => r.run_id).join(",") !== wanted) return; // the selection moved on
    this.keys = keys;
    this.keysFor = wanted;
    this.fillXOptions();
    this.layout();
    for (const panel of this.panels.values()) panel.stale = true;
    for (const key of this.visible) {
      const panel = this.panels.get(key);
      if (panel) void this.load(panel);
    }
  }

  /** Panels for the keys (filtered by the panel search), grouped by prefix. */
  private layout(): void {
    const filter = this.view.panelFilter.trim().toLowerCase();
    const shown = this.keys.filter((k) => !filter || k.toLowerCase().includes(filter));
    for (const [key, panel] of this.panels) {
      if (!shown.includes(key)) {
        this.observer.unobserve(panel.el);
        this.visible.delete(key);
        panel.destroy();
        this.panels.delete(key);
      }
    }
    const groups = new Map<string, string[]>();
    for (const key of shown) {
      const group = groupOf(key);
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group)!.push(key);
    }
    const sections: HTMLElement[] = [];
    for (const [group, keys] of [...groups].sort(([a], [b]) => (a === "charts" ? 1 : b === "charts" ? -1 : a.localeCompare(b)))) {
      const grid = h("div.grid");
      for (const key of keys) {
        let panel = this.panels.get(key);
        if (!panel) {
          panel = new ChartPanel(key, key, {
            xMode: this.view.xMode,
            smoothing: this.view.smoothing,
            zoom: this.view.zoom,
            log: this.view.log.has(key),
            ...this.panelSize(key),
            onResize: (size) => this.resized(key, size),
            runInfo: (run) => this.runInfo(run),
            onZoom: (range) => this.change({ zoom: range }),
            onToggleLog: () => this.toggleLog(key),
            onAddToReport: this.addToReport ? () => this.addToReport?.(key, this.view) : undefined,
          });
          this.panels.set(key, panel);
          this.observer.observe(panel.el);
        }
        grid.append(panel.el);
      }
      sections.push(h("details.group", { open: true, "data-group": group }, h("summary", { text: `${group} (${keys.length})` }), grid));
    }
    this.groupsEl.replaceChildren(...sections);
    this.fillRows();
  }

  /** Widen each group's last panel over the empty columns at the end of its row, so no row ends in a gap. */
  private fillRows(): void {
    for (const grid of this.groupsEl.querySelectorAll<HTMLElement>(".grid")) {
      const panels = [...grid.children].map((el) => this.panels.get((el as HTMLElement).dataset.key ?? "")).filter((p): p is ChartPanel => !!p);
      fillGridRows(grid, panels, (panel) => this.panelSize(panel.id).span);
    }
  }

  private toggleLog(key: string): void {
    const log = new Set(this.view.log);
    if (log.has(key)) log.delete(key);
    else log.add(key);
    this.view = { ...this.view, log };
    this.onViewChange(this.view);
    this.panels.get(key)?.setOptions({ log: log.has(key) });
  }

  private runInfo(run: string): RunInfo {
    const row = this.runs.find((r) => r.run_id === run);
    return { name: row?.name || run, ...this.runStyle(run) };
  }

  /** The step window every run is asked for: the same one for all, so their buckets line up. */
  private window(): { start: number | null; end: number | null } {
    if (this.view.zoom) return { start: this.view.zoom[0], end: this.view.zoom[1] };
    if (this.view.xMode !== "step") return { start: null, end: null };
    const last = Math.max(0, ...this.runs.map((r) => r.last_step ?? 0));
    return { start: 0, end: last };
  }

  private async load(panel: ChartPanel): Promise<void> {
    const ids = this.runs.map((r) => r.run_id);
    if (!ids.length) return;
    const generation = this.generation;
    this.pending.get(panel.id)?.abort();
    const controller = new AbortController();
    this.pending.set(panel.id, controller);
    const query = { runs: ids, keys: [panel.id], x: this.view.xMode, ...this.window(), buckets: panel.buckets() };
    noteRequest(`history ${panel.id} start=${query.start ?? ""} end=${query.end ?? ""}`);
    panel.setStatus("loading…");
    try {
      const { series } = await api.history(this.project, query, controller.signal);
      if (generation !== this.generation) return;
      const byRun = new Map(series.map((s) => [s.run, fromApi(s)]));
      panel.loads++;
      panel.stale = false;
      panel.setRuns(ids.filter((id) => byRun.has(id)).map((id) => byRun.get(id)!));
      panel.setStatus(series.some((s) => !s.exact) ? "" : "");
      mark("first-chart");
    } catch (error) {
      if ((error as Error).name !== "AbortError") panel.setStatus(String((error as Error).message ?? error));
    } finally {
      if (this.pending.get(panel.id) === controller) this.pending.delete(panel.id);
    }
  }

  private scheduleLive(): void {
    clearTimeout(this.liveTimer);
    if (!this.runs.some((r) => r.state === "running")) return;
    this.liveTimer = window.setTimeout(() => void this.poll(), POLL_MS);
  }

  /** Ask only for what the live runs logged after the last step each panel has. */
  private async poll(): Promise<void> {
    const live = this.runs.filter((r) => r.state === "running").map((r) => r.run_id);
    const generation = this.generation;
    if (live.length) {
      // A live run may start logging new keys: add their panels.
      const { keys } = await api.keys(this.project, this.runs.map((r) => r.run_id)).catch(() => ({ keys: this.keys }));
      if (generation === this.generation && keys.join("\n") !== this.keys.join("\n")) {
        this.keys = keys;
        this.fillXOptions();
        this.layout();
      }
    }
    if (live.length && !this.view.zoom) {
      await Promise.all(
        [...this.visible].map(async (key) => {
          const panel = this.panels.get(key);
          if (!panel || panel.stale || this.pending.has(key)) return;
          const have = new Map(panel.runs.map((r) => [r.run, r]));
          const lastStep = Math.min(...live.map((id) => {
            const s = have.get(id);
            return s && s.steps.length ? s.steps[s.steps.length - 1] : -1;
          }));
          const start = this.view.xMode === "step" ? lastStep + 1 : this.lastX(panel, live);
          noteRequest(`live ${key} start=${start ?? ""}`);
          const { series } = await api.history(this.project, {
            runs: live, keys: [key], x: this.view.xMode, start, end: null, buckets: panel.buckets(),
          });
          if (generation !== this.generation) return;
          const merged = new Map(panel.runs.map((r) => [r.run, r] as [string, RunSeries]));
          for (const s of series) {
            const more = fromApi(s);
            const base = merged.get(s.run);
            merged.set(s.run, base ? append(base, more) : more);
          }
          const order = this.runs.map((r) => r.run_id).filter((id) => merged.has(id));
          const runs = order.map((id) => merged.get(id)!);
          // Far more points than pixels: ask again for buckets over the whole window.
          if (runs.some((r) => r.x.length > 3 * panel.buckets())) void this.load(panel);
          else panel.setRuns(runs);
        }),
      ).catch(() => {});
    }
    this.scheduleLive();
  }

  private lastX(panel: ChartPanel, live: string[]): number | null {
    const xs = panel.runs.filter((r) => live.includes(r.run) && r.x.length).map((r) => r.x[r.x.length - 1]);
    return xs.length ? Math.min(...xs) : null;
  }

  /** Re-ask every visible panel (the selection's data changed a lot). */
  reloadAll(): void {
    this.generation++;
    for (const key of this.visible) {
      const panel = this.panels.get(key);
      if (panel) void this.load(panel);
    }
  }

  get keyList(): string[] {
    return this.keys;
  }

  get keysLoadedFor(): string {
    return this.keysFor;
  }
}
