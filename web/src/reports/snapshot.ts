// Offline reports: one HTML file that holds the dashboard's bundle and a snapshot of a report (its
// blocks and each panel's data, as the reports API answered them), so it opens with the network
// off and draws the same charts (hover values, bands, zoom). Python's exporter
// (tracklet/reports/export.py) writes the file, for the CLI and for the report page's Export.
//
// The snapshot is `<script type="application/json" id="tracklet-report-snapshot">`: base64 of the
// gzip of `{"format": 1, "report": Report, "panels": {index: PanelData}, "exported_at": seconds}`
// (gzip: chart data is repetitive, and a file with 20 panels of 50 runs stays a few MB).

import { plottable } from "../api";
import { h } from "../dom";
import type { PanelData, Report } from "./api";
import { ReportDocument } from "./document";
import { reportHeader } from "./header";

export const SNAPSHOT_ID = "tracklet-report-snapshot";
export const SNAPSHOT_FORMAT = 1;

export interface Snapshot {
  format: number;
  report: Report;
  panels: Record<string, PanelData>;
  exported_at: number;
}

async function gunzipBase64(text: string): Promise<string> {
  // A plain loop: `Uint8Array.from(binary, callback)` calls back per byte (~0.3 s of every PDF/PNG
  // export's render for a 3.6 MB snapshot); this is a few milliseconds.
  const binary = atob(text.trim());
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).text();
}

/** The snapshot this document carries, or null (the live dashboard). */
export function snapshotElement(): HTMLElement | null {
  return document.getElementById(SNAPSHOT_ID);
}

/** Draw the embedded report: nothing is fetched. */
export async function bootSnapshot(app: HTMLElement, el: HTMLElement): Promise<void> {
  const snapshot = JSON.parse(await gunzipBase64(el.textContent ?? "")) as Snapshot;
  if (snapshot.format !== SNAPSHOT_FORMAT) throw new Error(`this file's report snapshot has format ${snapshot.format}; this viewer reads ${SNAPSHOT_FORMAT}`);
  const { report } = snapshot;
  document.title = `${report.title} · tracklet report`;
  document.body.classList.add("report-offline");
  const crumbs = document.getElementById("crumbs");
  crumbs?.replaceChildren(h("span", { text: `${report.project} / reports / ${report.title}` }));
  const exported = new Date(snapshot.exported_at * 1000).toISOString().replace("T", " ").slice(0, 16);
  const doc = new ReportDocument(report.blocks, async (block) => {
    const data = snapshot.panels[String(block.index)];
    if (!data) throw new Error("this panel's data was not exported");
    return { ...data, history: data.history ? plottable(data.history as never) : null } as PanelData;
  });
  app.replaceChildren(h("div.report-page", {}, reportHeader(report, `snapshot exported ${exported} UTC`), doc.el));
  await doc.load();
}

/** Save a blob as a file named `name` (the browser's download). */
export function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
