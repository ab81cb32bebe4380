// A report: its Markdown and live panels (reports/document.ts). `?version=N` shows an older
// version; `?token=` is a view token (no account: the page is read-only). Every panel's data comes in
// one streamed request, each panel drawn as its line arrives; live run sets are then polled and
// redrawn when their runs log more (frozen ones never change). Export: HTML (one offline file),
// PDF, PNG (a zip of one per panel) and Markdown (a zip of it and its panels' PNGs), each made by
// the server with `tracklet report export`'s code; "Print" is the browser's print.

import { h } from "../dom";
import { navigate, readQuery, reportEditHref, reportHref, reportsHref } from "../router";
import { reportsApi, reportToken, type ExportFormat } from "../reports/api";
import { ReportDocument } from "../reports/document";
import { reportHeader } from "../reports/header";
import { download } from "../reports/snapshot";
import "../reports/reports.css";

/** The export buttons: format, label, tooltip. */
const EXPORTS: { format: ExportFormat; text: string; title: string }[] = [
  { format: "html", text: "HTML", title: "One file with the report and its panels' data; opens offline" },
  { format: "pdf", text: "PDF", title: "The report printed by the server's Chromium (A4 landscape)" },
  { format: "md", text: "Markdown", title: "A zip of the Markdown with each panel as a PNG" },
  { format: "png", text: "PNG", title: "A zip of one PNG per panel, at twice its size on screen" },
];

export async function reportPage(root: HTMLElement, project: string, id: string): Promise<() => void> {
  const asked = Number(readQuery().get("version"));
  const version = Number.isInteger(asked) && asked > 0 ? asked : null;
  const report = await reportsApi.get(project, id, version);
  const doc = new ReportDocument(report.blocks, (block, window) => reportsApi.panelData(project, id, block.index, report.version, window),
    "report", (request, onPanel) => reportsApi.panels(project, id, report.version, request, onPanel));
  const token = reportToken();
  const exportButtons = EXPORTS.map(({ format, text, title }) => {
    const button = h(`button.export-${format}`, { text, title });
    button.addEventListener("click", async () => {
      button.disabled = true;
      const label = button.textContent;
      button.textContent = `${text}…`;
      try {
        const { blob, name } = await reportsApi.export(project, id, report.version, format);
        download(blob, name);
      } catch (error) {
        window.alert(`Not exported: ${(error as Error).message}`);
      } finally {
        button.disabled = false;
        button.textContent = label;
      }
    });
    return button;
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
  const printButton = h("button.print", { text: "Print", title: "The browser's print dialog" });
  printButton.addEventListener("click", () => window.print());
  const actions = [
    token ? null : h("a.button", { href: reportEditHref(project, id), "data-link": true, text: "Edit" }),
    version ? h("a.button", { href: reportHref(project, id) + (token ? `?token=${encodeURIComponent(token)}` : ""), "data-link": true, text: "Current version" }) : null,
    !version && report.latest_version && report.latest_version > report.version
      ? h("a.button.newer", { href: `${reportHref(project, id)}?version=${report.latest_version}${token ? `&token=${encodeURIComponent(token)}` : ""}`, "data-link": true, text: `Newest draft (v${report.latest_version})` })
      : null,
    h("span.report-export", { title: "Download the report as the CLI exports it" }, h("span.export-label", { text: "Export:" }), ...exportButtons),
    printButton,
    token ? null : deleteButton,
  ].filter((a) => a !== null) as HTMLElement[];
  const note = version && version !== report.latest_version ? "not the newest version" : "";
  root.replaceChildren(h("div.report-page", {}, reportHeader(report, note, actions), doc.el));
  void doc.load().then(() => doc.live());
  return () => doc.destroy();
}
