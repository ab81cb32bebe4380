// The Compare tab of a project: the config diff of the selected runs, and parallel coordinates of
// every run in the table (config values against a chosen summary metric).

import type { RunRow } from "../api";
import { h } from "../dom";
import { diffTable } from "./diff";
import { ParallelCoordinates } from "./parcoords";

export class CompareView {
  readonly el: HTMLElement;
  private readonly diffEl = h("div");
  private readonly parcoords: ParallelCoordinates;

  constructor(
    metric: string | null,
    onMetric: (metric: string) => void,
    private readonly info: (run: string) => { name: string; color: string },
  ) {
    this.parcoords = new ParallelCoordinates(metric, onMetric);
    this.el = h(
      "div.compare",
      {},
      h("section.card", {}, h("h2", { text: "Config diff (selected runs)" }), this.diffEl),
      h("section.card", {}, h("h2", { text: "Parallel coordinates (runs in the table)" }), this.parcoords.el),
    );
  }

  setSelected(runs: RunRow[]): void {
    this.diffEl.replaceChildren(diffTable(runs, this.info));
  }

  setRows(rows: RunRow[]): void {
    this.parcoords.setRows(rows);
  }

  destroy(): void {
    this.parcoords.destroy();
  }
}
