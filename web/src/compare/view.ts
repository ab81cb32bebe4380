// The Compare tab of a project: the config diff of the selected runs, parallel coordinates of
// every run in the table (config values against a chosen summary metric), and the selected runs'
// media side by side (media.ts).

import type { RunRow } from "../api";
import { h } from "../dom";
import { diffTable } from "./diff";
import { CompareMedia } from "./media";
import { ParallelCoordinates } from "./parcoords";

export class CompareView {
  readonly el: HTMLElement;
  private readonly diffEl = h("div");
  private readonly parcoords: ParallelCoordinates;
  private readonly media: CompareMedia;

  constructor(
    metric: string | null,
    onMetric: (metric: string) => void,
    private readonly info: (run: string) => { name: string; color: string },
    project: string,
  ) {
    this.parcoords = new ParallelCoordinates(metric, onMetric);
    this.media = new CompareMedia(project);
    this.el = h(
      "div.compare",
      {},
      h("section.card", {}, h("h2", { text: "Config diff (selected runs)" }), this.diffEl),
      this.media.el,
      h("section.card", {}, h("h2", { text: "Parallel coordinates (runs in the table)" }), this.parcoords.el),
    );
  }

  setSelected(runs: RunRow[]): void {
    this.diffEl.replaceChildren(diffTable(runs, this.info));
    this.media.setRuns(runs.map((run) => ({ run_id: run.run_id, ...this.info(run.run_id), running: run.state === "running" })));
  }

  /** The tab shown or hidden: the media grid asks the server only while it is seen. */
  setVisible(on: boolean): void {
    this.media.setVisible(on);
  }

  setRows(rows: RunRow[]): void {
    this.parcoords.setRows(rows);
  }

  destroy(): void {
    this.parcoords.destroy();
  }
}
