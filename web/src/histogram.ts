// Histograms over steps (tracklet.Histogram logged under a key at many steps): one heat strip per
// logged step, drawn left to right on a canvas: a column per step, a row per bin (low values at
// the bottom), darker where the bin holds more of that step's values (each step scaled to its own
// largest bin, so an early wide distribution and a late narrow one both show their shape). The
// server puts every step on common bins (GET .../histograms/{key}); hover names step, range and count.

import { api, type HistogramSeries } from "./api";
import { registerProbe } from "./debug";
import { h } from "./dom";
import { fmtValue } from "./format";

const BINS = 48;
const MAX_STEPS = 300;
const WIDTH = 480; // canvas CSS pixels
const HEIGHT = 192;
const LOW = [247, 251, 255]; // an empty bin
const HIGH = [8, 48, 107]; // a step's fullest bin

/** The colour of a bin holding `share` (0..1) of its step's largest bin. */
export function heatColour(share: number): number[] {
  const t = Math.max(0, Math.min(1, share));
  return LOW.map((low, i) => Math.round(low + (HIGH[i] - low) * t));
}

class HistogramPanel {
  readonly canvas = h("canvas.hist-canvas", { width: WIDTH, height: HEIGHT });
  readonly info = h("div.hist-info.muted");
  readonly el: HTMLElement;
  private readonly yTop = h("span");
  private readonly yBottom = h("span");
  private readonly xFirst = h("span");
  private readonly xLast = h("span");
  private data: HistogramSeries | null = null;
  private readonly unregister: () => void;

  constructor(readonly key: string) {
    this.el = h(
      "div.hist-panel",
      { "data-key": key },
      h("h3", { text: key }),
      h("div.hist-body", {}, h("div.hist-yaxis", {}, this.yTop, this.yBottom), this.canvas),
      h("div.hist-xaxis", {}, this.xFirst, this.xLast),
      this.info,
    );
    this.canvas.addEventListener("mousemove", (event) => this.hover(event));
    this.unregister = registerProbe(`histogram:${key}`, () => this.probe());
  }

  /** Canvas pixels of step column `i`, bin row `j` (row 0 is the lowest bin, at the bottom). */
  private cell(i: number, j: number): { x0: number; x1: number; y0: number; y1: number } {
    const steps = this.data?.steps.length ?? 1;
    const bins = Math.max(1, (this.data?.edges.length ?? 2) - 1);
    return {
      x0: Math.round((i * WIDTH) / steps),
      x1: Math.round(((i + 1) * WIDTH) / steps),
      y0: Math.round(HEIGHT - ((j + 1) * HEIGHT) / bins),
      y1: Math.round(HEIGHT - (j * HEIGHT) / bins),
    };
  }

  draw(data: HistogramSeries): void {
    this.data = data;
    const context = this.canvas.getContext("2d")!;
    context.fillStyle = `rgb(${LOW.join(",")})`;
    context.fillRect(0, 0, WIDTH, HEIGHT);
    data.counts.forEach((row, i) => {
      const most = Math.max(0, ...row);
      row.forEach((count, j) => {
        if (!(count > 0) || !(most > 0)) return;
        const { x0, x1, y0, y1 } = this.cell(i, j);
        context.fillStyle = `rgb(${heatColour(count / most).join(",")})`;
        context.fillRect(x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0));
      });
    });
    const edges = data.edges;
    this.yTop.textContent = edges.length ? fmtValue(edges[edges.length - 1]) : "";
    this.yBottom.textContent = edges.length ? fmtValue(edges[0]) : "";
    this.xFirst.textContent = data.steps.length ? `step ${data.steps[0]}` : "";
    this.xLast.textContent = data.steps.length > 1 ? `step ${data.steps[data.steps.length - 1]}` : "";
    const shown = data.steps.length < data.total_steps ? ` (${data.steps.length} of ${data.total_steps} steps, evenly spaced)` : "";
    this.info.textContent = `${data.total_steps} steps${shown}`;
    this.el.dataset.steps = String(data.steps.length);
  }

  private hover(event: MouseEvent): void {
    const data = this.data;
    if (!data || !data.steps.length || data.edges.length < 2) return;
    const rect = this.canvas.getBoundingClientRect();
    const i = Math.min(data.steps.length - 1, Math.floor(((event.clientX - rect.left) / rect.width) * data.steps.length));
    const bins = data.edges.length - 1;
    const j = Math.min(bins - 1, Math.floor(((rect.bottom - event.clientY) / rect.height) * bins));
    if (i < 0 || j < 0) return;
    const count = data.counts[i][j];
    this.info.textContent = `step ${data.steps[i]}: [${fmtValue(data.edges[j])}, ${fmtValue(data.edges[j + 1])}) ${fmtValue(Math.round(count * 100) / 100)} values`;
  }

  private probe() {
    const data = this.data;
    return {
      key: this.key,
      steps: data?.steps ?? [],
      edges: data?.edges ?? [],
      counts: data?.counts ?? [],
      width: WIDTH,
      height: HEIGHT,
      /** The canvas colour [r, g, b, a] in the middle of step column i, bin row j. */
      pixel: (i: number, j: number) => {
        const { x0, x1, y0, y1 } = this.cell(i, j);
        const context = this.canvas.getContext("2d")!;
        return Array.from(context.getImageData(Math.floor((x0 + x1 - 1) / 2), Math.floor((y0 + y1 - 1) / 2), 1, 1).data);
      },
      heat: (share: number) => heatColour(share),
    };
  }

  destroy(): void {
    this.unregister();
  }
}

/** The run's histograms card: hidden until the run logged a histogram; `load` again for new steps.
 * At most MAX_PANELS keys are drawn (a model watched with many layers logs hundreds): the filter
 * box picks which. */
export class HistogramView {
  static readonly MAX_PANELS = 24;
  readonly el = h("div.hist-panels");
  private readonly filter = h("input.hist-filter", { type: "search", placeholder: "Filter histogram keys", hidden: true });
  private readonly note = h("span.muted.hist-note");
  readonly card = h("section.card.wide.histograms-card", { hidden: true }, h("h2", { text: "Histograms" }), h("div.toolbar", {}, this.filter, this.note), this.el);
  private readonly panels = new Map<string, HistogramPanel>();
  private keys: string[] = [];

  constructor(private readonly project: string, private readonly runId: string) {
    this.filter.addEventListener("input", () => void this.draw());
  }

  async load(): Promise<void> {
    ({ keys: this.keys } = await api.histogramKeys(this.project, this.runId));
    if (!this.keys.length) return;
    this.card.hidden = false;
    await this.draw();
  }

  private async draw(): Promise<void> {
    const text = this.filter.value.trim().toLowerCase();
    const matching = this.keys.filter((key) => key.toLowerCase().includes(text));
    const shown = matching.slice(0, HistogramView.MAX_PANELS);
    this.filter.hidden = this.keys.length <= HistogramView.MAX_PANELS && !text;
    this.note.textContent = matching.length > shown.length ? `${shown.length} of ${matching.length} keys shown: filter to see others` : "";
    for (const [key, panel] of this.panels) {
      if (shown.includes(key)) continue;
      panel.destroy();
      panel.el.remove();
      this.panels.delete(key);
    }
    await Promise.all(
      shown.map(async (key) => {
        let panel = this.panels.get(key);
        if (!panel) {
          panel = new HistogramPanel(key);
          this.panels.set(key, panel);
        }
        const data = await api.histograms(this.project, this.runId, key, { bins: BINS, max_steps: MAX_STEPS });
        if (this.panels.get(key) === panel) panel.draw(data);
      }),
    );
    this.el.replaceChildren(...shown.map((key) => this.panels.get(key)!.el));
  }

  destroy(): void {
    for (const panel of this.panels.values()) panel.destroy();
  }
}
