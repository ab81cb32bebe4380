// A run: overview (state, command, git, host, GPUs, runtime), config and summary, alerts, its
// metric charts, system-metric charts, console output (searchable; tailed while the run is live) and
// files (listed with size and time; downloaded through the API with the key, if any; 3-D files
// opened in the viewer, web/src/viewer3d.ts), and the
// Reproduce / compare-with card (pages/reproduce.ts).

import { row3d, viewToggle } from "./view3d";
import { runFileSource, viewer3d } from "../viewer3d";
import { api, fileBlob, type ConsoleLine, type RunAlert, type RunFile, type RunRow } from "../api";
import { runColor } from "../colors";
import { fromApi, append, type RunSeries } from "../charts/data";
import { ChartPanel, fillGridRows } from "../charts/panel";
import { ChartsWorkspace, POLL_MS } from "../charts/workspace";
import { addToReportDialog } from "../reports/add";
import { debounce, h } from "../dom";
import { flatten, fmtBytes, fmtDuration, fmtTime, fmtUser, fmtValue, runtime } from "../format";
import { MediaView } from "../media";
import { HistogramView } from "../histogram";
import { TablesView } from "../components/table-card";
import { runTracesCard } from "./traces";
import { projectHref, sweepHref } from "../router";
import { sweepOf } from "../runs/groups";
import { runArtifactsCard } from "./artifact-run";
import { reproduceCard } from "./reproduce";
import { readView, writeView } from "./project";

function table(entries: [string, unknown][], className: string): HTMLElement {
  if (!entries.length) return h("p.empty", { text: "None." });
  return h(
    `table.${className}` as "table",
    {},
    ...entries.map(([key, value]) => h("tr", {}, h("th", { text: key }), h("td", { text: fmtValue(value) }))),
  );
}

function overview(run: RunRow): HTMLElement {
  const meta = (run.metadata ?? {}) as Record<string, any>;
  const git = meta.git as Record<string, unknown> | null;
  const gpu = meta.gpu as { names?: string[]; count?: number } | undefined;
  const command = Array.isArray(meta.command) ? meta.command.join(" ") : meta.command;
  const entries: [string, string][] = [
    ["State", run.state + (run.exit_code !== null && run.exit_code !== undefined ? ` (exit ${run.exit_code})` : "")],
    ["Created", fmtTime(run.created_at)],
    ["User", fmtUser(run.user, true)],
    ["Runtime", fmtDuration(runtime(run))],
    ["Command", command ?? ""],
    ["Git", git ? [git.commit, git.branch ? `(${git.branch})` : "", git.dirty ? "dirty" : "", git.remote ?? ""].filter(Boolean).join(" ") : ""],
    ["Host", run.host ?? meta.hostname ?? ""],
    ["GPU", gpu && gpu.names && gpu.names.length ? gpu.names.join(", ") : "none"],
    ["Python", meta.python ?? ""],
    ["Platform", meta.platform ?? meta.os ?? ""],
    ["Tags", (run.tags ?? []).join(", ")],
    ["Notes", run.notes ?? ""],
  ];
  return h(
    "dl.overview",
    {},
    ...entries.flatMap(([label, value]) => [h("dt", { text: label }), h("dd", { "data-field": label.toLowerCase(), text: value })]),
  );
}

/** System metrics: one panel per metric, the windows' mean as the line and up to their max as the band. */
class SystemCharts {
  readonly el = h("div.grid.system");
  private readonly panels = new Map<string, ChartPanel>();
  private data = new Map<string, RunSeries>();
  private lastX: number | null = null;

  private readonly resize = new ResizeObserver(() => fillGridRows(this.el, [...this.panels.values()]));

  constructor(private readonly project: string, private readonly runId: string) {
    this.resize.observe(this.el);
  }

  async load(live = false): Promise<void> {
    const { series } = await api.system(this.project, this.runId, {
      x: "relative_time",
      buckets: 400,
      start: live && this.lastX !== null ? this.lastX : null,
    });
    const byName = new Map<string, { mean?: (typeof series)[number]; max?: (typeof series)[number] }>();
    for (const s of series) {
      const entry = byName.get(s.key) ?? {};
      entry[s.stat as "mean" | "max"] = s;
      byName.set(s.key, entry);
    }
    for (const [name, { mean, max }] of byName) {
      if (!mean) continue;
      const line = fromApi({ ...mean, run: this.runId });
      const peak = max ? fromApi({ ...max, run: this.runId }) : null;
      const merged: RunSeries = {
        ...line,
        exact: false,
        min: line.exact ? line.line : line.min,
        max: peak ? (peak.exact ? peak.line : peak.max) : line.max,
      };
      const old = this.data.get(name);
      this.data.set(name, old && live ? append(old, merged) : merged);
    }
    for (const run of this.data.values()) if (run.x.length) this.lastX = Math.max(this.lastX ?? -Infinity, run.x[run.x.length - 1]);
    for (const name of [...this.data.keys()].sort()) {
      let panel = this.panels.get(name);
      if (!panel) {
        panel = new ChartPanel(`system:${name}`, name, {
          xMode: "relative_time",
          log: false,
          smoothing: 0,
          zoom: null,
          height: 160,
          runInfo: () => ({ name, color: runColor(this.runId) }),
        });
        this.panels.set(name, panel);
        this.el.append(panel.el);
      }
      panel.loads++;
      panel.setRuns([this.data.get(name)!]);
    }
    if (!this.panels.size) this.el.replaceChildren(h("p.empty", { text: "No system metrics recorded." }));
    fillGridRows(this.el, [...this.panels.values()]);
  }

  destroy(): void {
    this.resize.disconnect();
    for (const panel of this.panels.values()) panel.destroy();
  }
}

/** Console output: the last lines, a search box (asks the server), and tailing while live. */
class ConsoleView {
  readonly el: HTMLElement;
  private readonly lines: HTMLElement;
  private readonly info: HTMLElement;
  private after = 0;
  private query = "";

  constructor(private readonly project: string, private readonly runId: string) {
    const search = h("input.console-search", { type: "search", placeholder: "Search console output" });
    search.addEventListener("input", debounce(() => void this.search(search.value), 200));
    this.lines = h("div.console-lines");
    this.info = h("span.console-info");
    this.el = h("div.console", {}, h("div.toolbar", {}, search, this.info), this.lines);
  }

  private row(line: ConsoleLine): HTMLElement {
    return h("div.line", { "data-seq": line.seq, "data-stream": line.stream }, h("span.seq", { text: String(line.seq) }), line.text);
  }

  async load(): Promise<void> {
    const page = await api.console(this.project, this.runId, { tail: true, limit: 2000, q: this.query || undefined });
    this.after = page.next_after;
    this.lines.replaceChildren(...page.lines.map((line) => this.row(line)));
    this.info.textContent = `${page.lines.length} of ${page.last_seq} lines${this.query ? " match" : ""}`;
    this.lines.scrollTop = this.lines.scrollHeight;
  }

  async search(query: string): Promise<void> {
    this.query = query.trim();
    await this.load();
  }

  /** Lines after the last one we have (the run is live). */
  async tail(): Promise<void> {
    const atBottom = this.lines.scrollTop + this.lines.clientHeight >= this.lines.scrollHeight - 4;
    const page = await api.console(this.project, this.runId, { after: this.after, limit: 2000, q: this.query || undefined });
    this.after = page.next_after;
    if (!page.lines.length) return;
    this.lines.append(...page.lines.map((line) => this.row(line)));
    this.info.textContent = `${this.lines.childElementCount} of ${page.last_seq} lines${this.query ? " match" : ""}`;
    if (atBottom) this.lines.scrollTop = this.lines.scrollHeight;
  }
}

/** The run's alerts (run.alert): time, level, title and text, oldest first; new ones appended while
 * live. The card shows once the run has any. */
class AlertsView {
  readonly el = h("div.alerts");
  readonly heading = h("h2", { text: "Alerts" });
  readonly card = h("section.card.wide.alerts-card", { hidden: true }, this.heading, this.el); // shown once there are alerts
  private after = 0;
  private count = 0;

  constructor(private readonly project: string, private readonly runId: string) {}

  private row(alert: RunAlert): HTMLElement {
    return h(
      "div.alert",
      { "data-seq": alert.seq, "data-level": alert.level },
      h("span.level", { text: alert.level }),
      h("span.when.muted", { text: fmtTime(alert.time, true) }),
      h("b.title", { text: alert.title }),
      alert.text ? h("span.text", { text: alert.text }) : null,
    );
  }

  async load(): Promise<void> {
    const { alerts } = await api.alerts(this.project, this.runId, this.after);
    if (!alerts.length) return;
    if (!this.count) this.el.replaceChildren();
    this.el.append(...alerts.map((alert) => this.row(alert)));
    this.after = alerts[alerts.length - 1].seq;
    this.count += alerts.length;
    this.heading.textContent = `Alerts (${this.count})`;
    this.card.hidden = false;
  }
}

/** The run's files: name (click to download), size, last update. */
async function filesList(project: string, runId: string): Promise<HTMLElement> {
  let files: RunFile[];
  try {
    ({ files } = await api.files(project, runId));
  } catch (error) {
    return h("p.empty", { text: `Files are not available: ${(error as Error).message}` });
  }
  if (!files.length) return h("p.empty", { text: "No files." });
  const download = async (file: RunFile) => {
    const url = URL.createObjectURL(await fileBlob(project, runId, file.name));
    const link = h("a", { href: url, download: file.name.split("/").pop()! });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };
  return h(
    "table.files",
    {},
    ...files.map((file) => {
      const link = h("a.file-link", { href: "#", "data-name": file.name, title: `sha256 ${file.sha256}`, text: file.name });
      link.addEventListener("click", (event) => {
        event.preventDefault();
        void download(file);
      });
      const source = runFileSource(project, runId, file.name, file.size, file.sha256);
      const row = h(
        "tr",
        { "data-name": file.name },
        h("td", {}, link),
        h("td.size", { text: fmtBytes(file.size) }),
        h("td.muted", { text: file.updated_at ? file.updated_at.replace("T", " ").slice(0, 19) : "" }),
        h("td", {}, source ? viewToggle(row3d(() => viewer3d(source), 3)) : null),
      );
      return row;
    }),
  );
}

export async function runPage(root: HTMLElement, project: string, runId: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading run…" }));
  let { run } = await api.run(project, runId);
  const overviewEl = h("div");
  const stateEl = h("span.state");
  const system = new SystemCharts(project, runId);
  const consoleView = new ConsoleView(project, runId);
  const alertsView = new AlertsView(project, runId);
  const mediaView = new MediaView(project, runId);
  const tablesView = new TablesView(project, runId);
  const histogramView = new HistogramView(project, runId);
  const workspace = new ChartsWorkspace(project, readView(new URLSearchParams(location.search)), writeView);
  workspace.addToReport = (key, view) => void addToReportDialog(project, key, view, [runId]);
  const configEl = h("div");
  const filesEl = h("div", {}, h("p.muted", { text: "Loading files…" }));
  const summaryEl = h("div");
  const draw = () => {
    overviewEl.replaceChildren(overview(run));
    stateEl.textContent = run.state;
    stateEl.dataset.state = run.state;
    configEl.replaceChildren(table(flatten(run.config), "config"));
    // Structured values (a logged list of strings, nested lists) are shown as their JSON text.
    summaryEl.replaceChildren(table(flatten(run.summary), "summary"));
  };
  draw();
  root.replaceChildren(
    h(
      "div.run-page",
      {},
      h(
        "div.pane-head",
        {},
        h("i.swatch.big", { style: `background:${runColor(runId)}` }),
        h("h1", { text: run.name || runId }),
        stateEl,
        h("span.muted", { text: `${project}/${runId}` }),
        h("a", { href: projectHref(project), "data-link": true, text: `← ${project}` }),
        sweepOf(run) ? h("a.run-sweep", { href: sweepHref(project, sweepOf(run)!), "data-link": true, text: `sweep ${sweepOf(run)}` }) : "",
      ),
      h("div.columns", {}, h("section.card", {}, h("h2", { text: "Overview" }), overviewEl), h("section.card", {}, h("h2", { text: "Config" }), configEl), h("section.card", {}, h("h2", { text: "Summary" }), summaryEl)),
      alertsView.card,
      reproduceCard(project, runId),
      runArtifactsCard(project, runId),
      h("section.card.wide", {}, h("h2", { text: "Charts" }), workspace.el),
      mediaView.card,
      histogramView.card,
      tablesView.card,
      runTracesCard(project, runId),
      h("section.card.wide", {}, h("h2", { text: "System" }), system.el),
      h("section.card.wide", {}, h("h2", { text: "Console" }), consoleView.el),
      h("section.card.wide", {}, h("h2", { text: "Files" }), filesEl),
    ),
  );
  void filesList(project, runId).then((list) => filesEl.replaceChildren(list));
  workspace.setRuns([run]);
  await Promise.all([system.load(), consoleView.load(), alertsView.load(), mediaView.load().catch(() => undefined),
    histogramView.load().catch(() => undefined), tablesView.load().catch(() => undefined)]);

  let stopped = false;
  let timer: number | undefined;
  const poll = async () => {
    if (stopped || run.state !== "running") return;
    try {
      ({ run } = await api.run(project, runId));
      draw();
      workspace.setRuns([run]);
      await Promise.all([system.load(true), consoleView.tail(), alertsView.load(), mediaView.load(), histogramView.load(), tablesView.load()]);
    } catch {
      /* try again next time */
    }
    if (!stopped) timer = window.setTimeout(() => void poll(), POLL_MS);
  };
  timer = window.setTimeout(() => void poll(), POLL_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
    workspace.destroy();
    system.destroy();
    tablesView.destroy();
    histogramView.destroy();
  };
}
