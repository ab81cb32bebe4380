// A report: its Markdown and live panels (reports/document.ts). `?version=N` shows an older
// version; `?token=` is a view token (no account: the page is read-only). Every panel's data comes in
// one streamed request, each panel drawn as its line arrives; live run sets are then polled and
// redrawn when their runs log more (frozen ones never change). "Download HTML" saves
// the report with its panels' data as one offline file; "Print / PDF" is the browser's print.

import { h } from "../dom";
import { navigate, readQuery, reportEditHref, reportHref, reportsHref } from "../router";
import { reportsApi, reportToken } from "../reports/api";
import { ReportDocument } from "../reports/document";
import { reportHeader } from "../reports/header";
import { download, exportHtml } from "../reports/snapshot";
import "../reports/reports.css";

export async function reportPage(root: HTMLElement, project: string, id: string): Promise<() => void> {
  const asked = Number(readQuery().get("version"));
  const version = Number.isInteger(asked) && asked > 0 ? asked : null;
  const report = await reportsApi.get(project, id, version);
  const doc = new ReportDocument(report.blocks, (block, window) => reportsApi.panelData(project, id, block.index, report.version, window),
    "report", (request, onPanel) => reportsApi.panels(project, id, report.version, request, onPanel));
  const token = reportToken();
  const exportButton = h("button.export-html", { text: "Download HTML", title: "One file with the report and its panels' data; opens offline" });
  exportButton.addEventListener("click", async () => {
    exportButton.disabled = true;
    try {
      download(await exportHtml(report, doc.snapshot()), `${String(report.title || report.id).replace(/[^\w.-]+/g, "_")}.html`);
    } finally {
      exportButton.disabled = false;
    }
  });
  const deleteButton = h("button.delete-report", {
    text: "Delete",
    title: report.published_version ? "Delete this published report (project admins only)" : "Delete this report",
  });
  deleteButton.addEventListener("click", async () => {
    const what = report.published_version ? `the published report "${report.title}"` : `the report "${report.title}"`;
    if (!window.confirm(`Delete ${what}? It leaves the reports list and its view links stop working.`)) return;
    deleteButton.disabled = true;
    try {
      await reportsApi.delete(project, id);
      navigate(reportsHref(project));
    } catch (error) {
      deleteButton.disabled = false;
      window.alert(`Not deleted: ${(error as Error).message}`);
    }
  });
  const printButton = h("button.print", { text: "Print / PDF" });
  printButton.addEventListener("click", () => window.print());
  const actions = [
    token ? null : h("a.button", { href: reportEditHref(project, id), "data-link": true, text: "Edit" }),
    version ? h("a.button", { href: reportHref(project, id) + (token ? `?token=${encodeURIComponent(token)}` : ""), "data-link": true, text: "Current version" }) : null,
    !version && report.latest_version && report.latest_version > report.version
      ? h("a.button.newer", { href: `${reportHref(project, id)}?version=${report.latest_version}${token ? `&token=${encodeURIComponent(token)}` : ""}`, "data-link": true, text: `Newest draft (v${report.latest_version})` })
      : null,
    exportButton,
    printButton,
    token ? null : deleteButton,
  ].filter((a) => a !== null) as HTMLElement[];
  const note = version && version !== report.latest_version ? "not the newest version" : "";
  root.replaceChildren(h("div.report-page", {}, reportHeader(report, note, actions), doc.el));
  void doc.load().then(() => doc.live());
  return () => doc.destroy();
}
