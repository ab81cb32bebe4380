// "Add to report" on a workspace chart: the chart as a `tracklet-panel` block (its key, x axis,
// smoothing, log scale and size, and the selected runs as its run set) appended to a report the
// user picks, or to a new one; saved as a new version.

import { ApiError } from "../api";
import type { PanelSize, ViewState } from "../charts/workspace";
import { h } from "../dom";
import { reportHref } from "../router";
import { reportsApi, type ReportSummary } from "./api";
import "./reports.css";

/** The most runs a run set may name (the contract's `limit`). */
export const MAX_RUN_SET = 200;

/** A YAML scalar: JSON's quoting is valid YAML (flow style), so names with any character survive. */
const q = (value: string) => JSON.stringify(value);

/** The fenced block for one workspace chart. `runIds`: the selection, charted as a run set. */
export function panelBlock(project: string, key: string, view: Pick<ViewState, "xMode" | "smoothing" | "log" | "size">, runIds: string[]): string {
  const ids = runIds.slice(0, MAX_RUN_SET);
  const lines = [
    "```tracklet-panel",
    `title: ${q(key)}`,
    `keys: [${q(key)}]`,
    `x: ${q(view.xMode)}`,
    `smoothing: ${Number(view.smoothing.toFixed(4))}`,
    `log_y: ${view.log.has(key)}`,
    `size: ${view.size as PanelSize}`,
    "runs:",
    `  project: ${q(project)}`,
    ...(ids.length ? [`  filter: ${q(`run_id in [${ids.map(q).join(", ")}]`)}`] : []),
    `  limit: ${Math.max(1, Math.min(MAX_RUN_SET, ids.length || 10))}`,
    "```",
  ];
  return lines.join("\n");
}

/** Markdown with `block` appended as a paragraph of its own. */
export function appendBlock(markdown: string, block: string): string {
  const base = markdown.replace(/\s+$/, "");
  return `${base}${base ? "\n\n" : ""}${block}\n`;
}

/** The dialog: pick a report (or name a new one), append the chart, say where it went. */
export async function addToReportDialog(project: string, key: string, view: ViewState, runIds: string[]): Promise<void> {
  let reports: ReportSummary[] = [];
  try {
    ({ reports } = await reportsApi.list(project));
  } catch {
    /* no reports yet, or no reports route: offer a new one */
  }
  const NEW = "\u0000new";
  const select = h("select", { name: "report" }, ...reports.map((r) => h("option", { value: r.id, text: `${r.title} (v${r.version})` })), h("option", { value: NEW, text: "New report…" }));
  const title = h("input", { type: "text", name: "new-title", placeholder: "Title of the new report" });
  const note = h("p.result");
  const add = h("button", { value: "add", text: "Add" });
  const close = h("button", { value: "close", type: "button", text: "Close" });
  const dialog = h(
    "dialog.add-report-dialog",
    {},
    h("form", { method: "dialog" }, h("h2", { text: `Add ${key} to a report` }), h("p.muted", { text: `${runIds.length} selected run${runIds.length === 1 ? "" : "s"} as its run set` }), select, title, note, h("menu", {}, close, add)),
  );
  const syncTitle = () => (title.hidden = select.value !== NEW);
  select.addEventListener("change", syncTitle);
  syncTitle();
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  add.addEventListener("click", async (event) => {
    event.preventDefault();
    const block = panelBlock(project, key, view, runIds);
    try {
      let report;
      if (select.value === NEW) {
        const name = title.value.trim() || key;
        report = await reportsApi.create(project, name, appendBlock(`# ${name}`, block));
      } else {
        const current = await reportsApi.get(project, select.value);
        report = await reportsApi.save(project, current.id, { markdown: appendBlock(current.markdown, block), parent: current.version });
      }
      const link = h("a", { href: reportHref(project, report.id), "data-link": true, text: `${report.title} (v${report.version})` });
      link.addEventListener("click", () => dialog.close()); // the router opens the report
      note.replaceChildren("Added: ", link);
      note.dataset.report = String(report.id);
    } catch (error) {
      note.textContent = error instanceof ApiError ? `${error.message} (HTTP ${error.status})` : String(error);
    }
  });
  document.body.append(dialog);
  dialog.showModal();
}
