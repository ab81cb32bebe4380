// One chart: a metric's series for the selected runs, drawn with uPlot. Lines are each run's exact
// values (or each bucket's last value); the band between each bucket's min and max is drawn under
// them, so a one-step spike shows at any zoom. Drag selects an x range to zoom into (the workspace
// re-queries the server for it); double-click zooms out; hovering lists every run's value.

import uPlot from "uplot";

import { withAlpha } from "../colors";
import { registerChart } from "../debug";
import { h } from "../dom";
import { fmtDuration, fmtValue } from "../format";
import { BandRaster, rgbOf } from "./bands";
import { ema, join, nearest, type RunSeries } from "./data";

/** step, relative_time, time, or the name of a metric (its value at each point's step). */
export type XMode = string;

export const TIME_MODES = ["step", "relative_time", "time"];

export interface RunInfo {
  name: string;
  color: string;
  group?: { id: string; label: string; color: string; order: number }; // set when the runs table is grouped
}

export interface PanelOptions {
  xMode: XMode;
  log: boolean;
  smoothing: number;
  zoom: [number, number] | null;
  runInfo: (run: string) => RunInfo;
  onZoom?: (range: [number, number] | null) => void;
  onToggleLog?: () => void;
  /** "Add to report": a button in the header that calls it (the workspace's panels). */
  onAddToReport?: () => void;
  height?: number;
  /** The panel's width (its element's clientWidth), when the caller measured it already: the first
   * draw takes it instead of reading it from a page it just changed, which forces a layout per chart
   * (20 in a report). A wrong one costs a second draw: the resize observer sets the real width. */
  width?: number;
  /** Columns of the grid the panel spans (1 unless its corner was dragged wider). */
  span?: number;
  /** Its corner was dragged to this plot height and span (null: double-click, back to the default). */
  onResize?: (size: { height: number; span: number } | null) => void;
}

export const MIN_PLOT_HEIGHT = 80;
/** The y axis' width (CSS px): the plot area is the panel's width less this and the padding. */
export const Y_AXIS_PX = 56;
/** Horizontal padding of a panel around its plot (CSS px). */
const PANEL_PADDING_PX = 16;

/** Device pixel columns of the plot area of a panel `panelWidth` CSS pixels wide: one min/max
 * bucket per column draws exactly what every point would (the band covers each column's range of
 * values), so asking for more only costs, and fewer loses detail. */
export function plotColumns(panelWidth: number, ratio = devicePixelRatio || 1): number {
  return Math.ceil(Math.max(100, panelWidth - PANEL_PADDING_PX - Y_AXIS_PX) * ratio);
}
/** Points in a chart (all its series) above which its lines are drawn one device pixel wide. */
export const DENSE_POINTS = 5000;
export const MAX_PLOT_HEIGHT = 1200;
/** The bands' opacity (as `withAlpha(color, 0.22)` writes it: 56/255). */
const BAND_ALPHA = 56 / 255;
/** One raster for every chart's bands: charts draw one at a time. */
const BANDS = new BandRaster();

export function fmtX(x: number, mode: XMode): string {
  if (mode === "step") return `step ${Math.round(x)}`;
  if (mode === "relative_time") return fmtDuration(x);
  if (mode === "time") return new Date(x * 1000).toLocaleString();
  return `${mode} ${fmtValue(x)}`;
}

/** Tick labels of a duration axis (seconds): as many decimals as the tick spacing needs, so ticks
 * 0.05 s apart don't all read "0.1s"; minutes and hours past 60 s. */
export function durationTicks(ticks: number[], step: number): string[] {
  const decimals = step > 0 && step < 1 ? Math.min(3, Math.ceil(-Math.log10(step) - 1e-9)) : 0;
  return ticks.map((t) => {
    const sign = t < 0 ? "-" : "";
    let rest = Math.abs(t);
    if (rest < 60) return `${sign}${rest.toFixed(decimals)}s`;
    if (step >= 60 && rest < 3600 * 48) return sign + fmtDuration(rest);
    const hours = Math.floor(rest / 3600);
    rest -= hours * 3600;
    const minutes = Math.floor(rest / 60);
    const seconds = rest - minutes * 60;
    const s = step < 60 ? ` ${seconds.toFixed(decimals)}s` : "";
    return `${sign}${hours ? `${hours}h ` : ""}${minutes}m${s}`;
  });
}

/** An axis tick: compact (1.5k, 2.3G, 1e-5), so large and tiny values fit the axis. */
export function fmtTick(v: number): string {
  const abs = Math.abs(v);
  if (abs === 0) return "0";
  if (abs >= 1e4) {
    const units = ["", "k", "M", "G", "T", "P"];
    const power = Math.min(units.length - 1, Math.floor(Math.log10(abs) / 3));
    return `${Number((v / 10 ** (3 * power)).toPrecision(3))}${units[power]}`;
  }
  if (abs < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** Widen the last of a grid's panels over the empty columns at the end of its row (`span`: each
 * panel's own columns), so a grid of panels never ends in a gap. */
export function fillGridRows(grid: HTMLElement, panels: ChartPanel[], span: (panel: ChartPanel) => number = () => 1): void {
  const tracks = getComputedStyle(grid).gridTemplateColumns.split(" ").filter((t) => parseFloat(t) > 0).length;
  let used = 0;
  for (const panel of panels) {
    const own = Math.min(tracks, span(panel));
    used = used + own > tracks ? own : used + own;
    panel.setFill(0);
  }
  const last = panels[panels.length - 1];
  if (last && tracks > 0 && used < tracks) last.setFill(tracks - used);
}

export class ChartPanel {
  readonly el: HTMLElement;
  runs: RunSeries[] = [];
  loads = 0; // data loads drawn, ever (tests wait on it)
  stale = true; // its data must be asked for (again) when it is on screen
  private readonly plotEl: HTMLElement;
  private readonly tooltip: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly status: HTMLElement;
  private readonly logButton: HTMLButtonElement;
  private plot: uPlot | null = null;
  private signature = "";
  private hovered = false;
  private xTicks: string[] = []; // the x axis' tick labels as last drawn
  private drawnAt = 0;
  private readonly unregister: () => void;
  private readonly resize: ResizeObserver;

  constructor(
    readonly id: string,
    readonly title: string,
    private options: PanelOptions,
  ) {
    this.logButton = h("button.small", { title: "Log scale (y)", text: "log" });
    this.logButton.addEventListener("click", () => this.options.onToggleLog?.());
    this.status = h("span.panel-status");
    const addButton = options.onAddToReport ? h("button.small.add-to-report", { title: "Add this chart to a report", text: "+ report" }) : null;
    addButton?.addEventListener("click", () => this.options.onAddToReport?.());
    this.plotEl = h("div.plot");
    this.tooltip = h("div.tooltip", { hidden: true });
    this.legend = h("div.legend");
    this.el = h(
      "section.panel",
      { "data-key": id },
      h("header", {}, h("h3", { text: title, title }), this.status, options.onToggleLog ? this.logButton : null, addButton),
      this.plotEl,
      this.legend,
    );
    this.plotEl.append(this.tooltip);
    if (options.onResize) this.el.append(this.resizeHandle());
    this.applySpan();
    this.plotEl.addEventListener("mouseenter", () => (this.hovered = true));
    this.plotEl.addEventListener("mouseleave", () => {
      this.hovered = false;
      this.tooltip.hidden = true;
    });
    this.plotEl.addEventListener("dblclick", () => this.options.onZoom?.(null));
    this.resize = new ResizeObserver(() => {
      if (this.plot && this.plotWidth() !== this.plot.width) this.fit();
    });
    this.resize.observe(this.el);
    this.unregister = registerChart(id, () => this.probe());
  }

  setOptions(options: Partial<PanelOptions>): void {
    this.options = { ...this.options, ...options };
    this.logButton.classList.toggle("on", this.options.log);
    this.applySpan();
    this.draw();
  }

  private applySpan(): void {
    const span = (this.options.span ?? 1) + this.fill;
    this.el.style.gridColumn = span > 1 ? `span ${span}` : "";
  }

  /** Columns added to the panel's own span so it fills the rest of its grid row (the last panel of a group). */
  setFill(columns: number): void {
    if (columns === this.fill) return;
    this.fill = columns;
    this.applySpan();
  }

  private fill = 0;

  /** The bottom-right corner: drag to set the plot's height (and how many grid columns it spans). */
  private resizeHandle(): HTMLElement {
    const handle = h("div.resize-handle", { title: "Drag to resize; double-click for the default size" });
    handle.addEventListener("pointerdown", (down: PointerEvent) => {
      if (down.button !== 0) return;
      down.preventDefault();
      down.stopPropagation();
      handle.setPointerCapture(down.pointerId);
      const startHeight = this.height();
      const startSpan = this.options.span ?? 1;
      const startWidth = this.el.getBoundingClientRect().width;
      const grid = this.el.parentElement;
      const columns = grid ? getComputedStyle(grid).gridTemplateColumns.split(" ").filter(Boolean).length : 1;
      const column = startWidth / (startSpan + this.fill);
      this.fill = 0;
      let size = { height: startHeight, span: startSpan };
      this.el.classList.add("resizing");
      const move = (event: PointerEvent) => {
        const height = Math.round(Math.min(MAX_PLOT_HEIGHT, Math.max(MIN_PLOT_HEIGHT, startHeight + event.clientY - down.clientY)));
        const span = Math.min(Math.max(1, columns), Math.max(1, Math.round((startWidth + event.clientX - down.clientX) / column)));
        if (height === size.height && span === size.span) return;
        size = { height, span };
        this.options = { ...this.options, height, span };
        this.applySpan();
        this.fit();
      };
      const up = () => {
        handle.removeEventListener("pointermove", move);
        handle.removeEventListener("pointerup", up);
        handle.removeEventListener("pointercancel", up);
        this.el.classList.remove("resizing");
        if (size.height !== startHeight || size.span !== startSpan) this.options.onResize?.(size);
      };
      handle.addEventListener("pointermove", move);
      handle.addEventListener("pointerup", up);
      handle.addEventListener("pointercancel", up);
    });
    handle.addEventListener("dblclick", (event) => {
      event.stopPropagation();
      this.options.onResize?.(null);
    });
    return handle;
  }

  /** Give the plot the panel's current width and the chosen height, without redrawing it from scratch. */
  private fit(): void {
    if (this.plot && (this.plot.width !== this.plotWidth() || this.plot.height !== this.height())) {
      this.plot.setSize({ width: this.plotWidth(), height: this.height() });
    }
  }

  setRuns(runs: RunSeries[]): void {
    this.runs = runs;
    this.draw();
  }

  setStatus(text: string): void {
    this.status.textContent = text;
  }

  /** Buckets to ask for: about one per horizontal pixel. */
  buckets(): number {
    return Math.max(100, Math.min(2000, Math.round(this.plotWidth())));
  }

  destroy(): void {
    this.resize.disconnect();
    this.unregister();
    this.plot?.destroy();
    this.el.remove();
  }

  private plotWidth(): number {
    return Math.max(200, (this.options.width ?? this.el.clientWidth) - PANEL_PADDING_PX);
  }

  private height(): number {
    return this.options.height ?? 220;
  }

  private draw(): void {
    const { smoothing, log, xMode } = this.options;
    const positive = (v: number | null) => (v !== null && (!log || v > 0) ? v : null);
    const columns: (number | null)[][] = [];
    const owners: RunSeries[] = [];
    const series: uPlot.Series[] = [{}];
    const styles: string[] = [];
    // Raw lines of many points are drawn one device pixel wide: Skia strokes such "hairlines" on a
    // fast path, about 30x cheaper to rasterise than a 1.5 px line zigzagging through noisy data (20
    // panels of 50 runs: seconds of a renderer's CPU otherwise). The bands still show every bucket's
    // min and max; a smoothed line (smooth, so cheap) keeps its width.
    const points = this.runs.reduce((sum, run) => sum + run.x.length, 0) * (smoothing > 0 ? 2 : 1);
    const dense = points > DENSE_POINTS;
    const thin = 1 / uPlot.pxRatio;
    for (const run of this.runs) {
      const { color, name } = this.options.runInfo(run.run);
      const raw = run.line.map(positive);
      // A line needs two points: a lone one (a run's first point, a system chart's first window) is a marker.
      const marker = { show: raw.filter((v) => v !== null).length === 1, size: 7, fill: color, stroke: color };
      columns.push(raw);
      owners.push(run);
      styles.push(`${name}:${color}:${marker.show}`);
      series.push({ label: name, stroke: smoothing > 0 ? withAlpha(color, 0.3) : color, width: dense ? thin : smoothing > 0 ? 1 : 1.5, spanGaps: true, points: marker });
      if (smoothing > 0) {
        columns.push(ema(run.line, smoothing).map(positive));
        owners.push(run);
        series.push({ label: `${name} (smoothed)`, stroke: color, width: 1.5, spanGaps: true, points: marker });
      }
    }
    const { xs, aligned } = join(owners, columns);
    const data = [xs, ...aligned] as uPlot.AlignedData;
    // Colours and names are uPlot series options: when they change (the table was grouped), rebuild the plot.
    const signature = [this.runs.map((r) => r.run).join(","), styles.join(","), smoothing > 0, log, xMode, dense].join("|");
    if (this.plot && signature === this.signature) {
      this.fit(); // a new height (size selector, dragged corner) is a resize, not a new plot
      this.plot.setData(data, true);
    } else {
      this.plot?.destroy();
      this.signature = signature;
      this.plot = new uPlot(this.plotOptions(series), data, this.plotEl);
      if (this.options.width !== undefined) this.options = { ...this.options, width: undefined }; // measured from now on
    }
    this.drawLegend();
    this.drawnAt = performance.now();
    this.el.dataset.points = String(xs.length);
  }

  private plotOptions(series: uPlot.Series[]): uPlot.Options {
    const { xMode, log } = this.options;
    const xValues =
      xMode === "relative_time"
        ? (_u: uPlot, ticks: number[], _axis: number, _space: number, step: number) => (this.xTicks = durationTicks(ticks, step))
        : undefined;
    return {
      width: this.plotWidth(),
      height: this.height(),
      legend: { show: false },
      series,
      scales: {
        x: { time: xMode === "time", range: (_u, min, max) => this.xRange(min, max) },
        y: { distr: log ? 3 : 1, range: () => this.yRange() },
      },
      axes: [
        { values: xValues, stroke: "#555", grid: { stroke: "#eee" } },
        { size: Y_AXIS_PX, stroke: "#555", grid: { stroke: "#eee" }, values: (_u, ticks) => ticks.map(fmtTick) },
      ],
      cursor: {
        drag: { x: true, y: false, setScale: false },
        sync: { key: "tracklet-x" },
        points: { show: false },
      },
      hooks: {
        drawAxes: [(u) => this.drawBands(u)],
        setSelect: [(u) => this.selected(u)],
        setCursor: [(u) => this.showTooltip(u)],
      },
    };
  }

  private xRange(min: number | null, max: number | null): uPlot.Range.MinMax {
    if (this.options.zoom) return this.options.zoom;
    if (min === null || max === null) return [0, 1];
    // uPlot widens a single x to a "nice" range itself (0 → 0..100): centre one x on a small one.
    const xs = this.runs.flatMap((r) => (r.x.length ? [r.x[0], r.x[r.x.length - 1]] : []));
    if (!xs.length || Math.min(...xs) !== Math.max(...xs)) return [min, max];
    const x = xs[0];
    const { xMode } = this.options;
    if (xMode === "time") return [x - 60, x + 60];
    if (xMode === "relative_time" && x >= 0) return x > 0 ? [0, 2 * x] : [0, 1]; // a duration is never negative
    const pad = Math.max(1, Math.abs(x) * 0.05);
    return [x - pad, x + pad];
  }

  /** y limits from everything drawn in the x window, band included, so spikes are never cut off. */
  private yRange(): uPlot.Range.MinMax {
    const [x0, x1] = this.options.zoom ?? [-Infinity, Infinity];
    let lo = Infinity;
    let hi = -Infinity;
    const log = this.options.log;
    const take = (v: number | null) => {
      if (v === null || !isFinite(v) || (log && v <= 0)) return;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    };
    for (const run of this.runs) {
      for (let i = 0; i < run.x.length; i++) {
        if (run.x[i] < x0 || run.x[i] > x1) continue;
        take(run.line[i]);
        if (run.min) take(run.min[i]);
        if (run.max) take(run.max[i]);
      }
    }
    if (lo === Infinity) return log ? [1, 10] : [0, 1];
    if (log) return [lo / 1.2, hi * 1.2];
    const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 1;
    return [lo - pad, hi + pad];
  }

  /** Each bucket's min–max as a column of the run's colour (translucent, under the lines): one
   * device-pixel-aligned rectangle per bucket, from halfway to the previous bucket's x to halfway to
   * the next (and at least the pixels its own x touches), at least one device pixel tall, so a lone
   * bucket or a one-step spike still shows. The columns are composited in script (`BandRaster`) and
   * blitted once: filling them as canvas paths cost most of a 20-panel report's raster time. */
  private drawBands(u: uPlot): void {
    const { left, top, width, height } = u.bbox;
    const log = this.options.log;
    const originX = Math.floor(left);
    const originY = Math.floor(top);
    BANDS.reset(Math.ceil(left + width) - originX, Math.ceil(top + height) - originY);
    // Linear scales map a value as offset + value × scale; a log y goes through uPlot.
    const x0 = u.valToPos(0, "x", true);
    const xScale = u.valToPos(1, "x", true) - x0;
    const linearY = u.scales.y.distr !== 3;
    const y0 = linearY ? u.valToPos(0, "y", true) : 0;
    const yScale = linearY ? u.valToPos(1, "y", true) - y0 : 0;
    const yPos = (v: number) => (linearY ? y0 + v * yScale : u.valToPos(v, "y", true));
    let xs = new Float64Array(0);
    for (const run of this.runs) {
      const { min, max, x } = run;
      if (!min || !max) continue;
      const n = x.length;
      if (xs.length < n) xs = new Float64Array(n);
      for (let i = 0; i < n; i++) xs[i] = x0 + x[i] * xScale;
      const rgb = rgbOf(this.options.runInfo(run.run).color);
      BANDS.beginLayer();
      for (let i = 0; i < n; i++) {
        const lo = min[i];
        const hi = max[i];
        if (lo === null || hi === null || !isFinite(lo) || !isFinite(hi) || (log && lo <= 0)) continue;
        // Whole pixels from halfway to the previous bucket to halfway to the next, and at least the
        // pixel or two the bucket's own x falls on.
        const from = Math.floor(Math.min(i > 0 ? (xs[i - 1] + xs[i]) / 2 : xs[i], xs[i] - 0.5));
        const to = Math.ceil(Math.max(i < n - 1 ? (xs[i] + xs[i + 1]) / 2 : xs[i], xs[i] + 0.5));
        const yHi = Math.floor(yPos(hi));
        const yLo = Math.max(yHi + 1, Math.ceil(yPos(lo)));
        BANDS.fill(from - originX, yHi - originY, to - originX, yLo - originY, rgb, BAND_ALPHA);
      }
    }
    BANDS.drawOnto(u.ctx, originX, originY);
  }

  private selected(u: uPlot): void {
    const { left, width } = u.select;
    if (width < 3) return;
    const range: [number, number] = [u.posToVal(left, "x"), u.posToVal(left + width, "x")];
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    this.options.onZoom?.(range);
  }

  private showTooltip(u: uPlot): void {
    const left = u.cursor.left ?? -1;
    if (!this.hovered || left < 0 || !this.runs.length) {
      this.tooltip.hidden = true;
      return;
    }
    const x = u.posToVal(left, "x");
    const smoothing = this.options.smoothing;
    const rows = this.runs.map((run) => {
      const i = nearest(run.x, x);
      if (i < 0) return null;
      const { name, color } = this.options.runInfo(run.run);
      const value = run.line[i];
      const smooth = smoothing > 0 ? ema(run.line.slice(0, i + 1), smoothing)[i] : null;
      const range = run.min && run.max ? ` [${fmtValue(run.min[i])} – ${fmtValue(run.max[i])}]` : "";
      // A row is the tooltip grid's name and value cells: names get the width the longest needs.
      return h(
        "div.tip-row",
        { "data-run": run.run, "data-value": value === null ? "" : String(value), "data-step": String(run.steps[i]) },
        h("span.tip-name", { title: name }, h("i.swatch", { style: `background:${color}` }), name),
        h("b.tip-value", { text: fmtValue(value) + (smooth !== null ? ` (${fmtValue(smooth)})` : "") + range }),
      );
    });
    this.tooltip.replaceChildren(h("div.tip-x", { text: fmtX(x, this.options.xMode) }), ...rows.filter((r) => r !== null));
    this.tooltip.hidden = false;
    // Beside the cursor, on the side it fits, and never past the panel's edges.
    const cursor = left + u.bbox.left / uPlot.pxRatio;
    const width = this.tooltip.offsetWidth;
    const room = this.plotEl.clientWidth;
    let at = cursor + 16;
    if (at + width > room) at = cursor - 16 - width;
    if (at < 0) at = Math.max(0, room - width);
    this.tooltip.style.left = `${at}px`;
    this.tooltip.style.right = "";
  }

  private drawLegend(): void {
    const infos = this.runs.map((run) => this.options.runInfo(run.run));
    if (infos.some((info) => info.group)) {
      const groups = new Map<string, { label: string; color: string; count: number; order: number }>();
      for (const { group } of infos) {
        if (!group) continue;
        const entry = groups.get(group.id) ?? { label: group.label, color: group.color, count: 0, order: group.order };
        entry.count++;
        groups.set(group.id, entry);
      }
      this.legend.replaceChildren(
        ...[...groups.values()].sort((a, b) => a.order - b.order).map(({ label, color, count }) =>
          h("span.legend-item.legend-group", {}, h("i.swatch", { style: `background:${color}` }), `${label} (${count})`),
        ),
      );
      return;
    }
    const shown = this.runs.slice(0, 12).map((run) => {
      const { name, color } = this.options.runInfo(run.run);
      return h("span.legend-item", {}, h("i.swatch", { style: `background:${color}` }), name);
    });
    const more = this.runs.length > 12 ? h("span.legend-more", { text: `+${this.runs.length - 12} more` }) : null;
    this.legend.replaceChildren(...shown, more ?? "");
  }

  private probe() {
    const u = this.plot;
    return {
      key: this.id,
      runs: this.runs.map((r) => ({ run: r.run, exact: r.exact, x: r.x, line: r.line, min: r.min, max: r.max })),
      scales: {
        xMin: u?.scales.x.min ?? null,
        xMax: u?.scales.x.max ?? null,
        yMin: u?.scales.y.min ?? null,
        yMax: u?.scales.y.max ?? null,
      },
      loads: this.loads,
      width: u?.width ?? null,
      /** The plot area's width in device pixels. */
      plotPixels: u?.bbox.width ?? null,
      height: u?.height ?? null,
      span: this.options.span ?? 1,
      fill: this.fill,
      drawnAt: this.drawnAt,
      // uPlot's own series (after the x one), as it draws them: label, stroke colour, marker shown
      series: (u?.series.slice(1) ?? []).map((s, i) => ({
        label: String(s.label ?? ""),
        stroke: typeof s.stroke === "function" ? String(s.stroke(u!, i + 1)) : String(s.stroke ?? ""),
        points: Boolean(s.points?.show),
      })),
      xTicks: [...this.xTicks],
      /** The colour (r, g, b, a) the plot's canvas has at data point (x, y). */
      pixel: (x: number, y: number) => {
        const ratio = uPlot.pxRatio;
        const left = u!.bbox.left + u!.valToPos(x, "x") * ratio;
        const top = u!.bbox.top + u!.valToPos(y, "y") * ratio;
        return [...u!.ctx.getImageData(Math.round(left), Math.round(top), 1, 1).data];
      },
      pagePoint: (x: number, y: number) => {
        const rect = u!.over.getBoundingClientRect();
        return { x: rect.left + u!.valToPos(x, "x"), y: rect.top + u!.valToPos(y, "y") };
      },
    };
  }
}
