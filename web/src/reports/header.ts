// A report's title line: title, version, author, when, published.

import { h } from "../dom";
import type { Report } from "./api";

export function fmtWhen(value: number | string | null | undefined): string {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return isNaN(date.getTime()) ? String(value) : date.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function reportHeader(report: Report, note = "", actions: (HTMLElement | null)[] = []): HTMLElement {
  const published = report.published_version;
  const meta = [
    `version ${report.version}`,
    report.author ? `by ${report.author}` : "",
    report.updated_at ? `updated ${fmtWhen(report.updated_at)}` : "",
    published ? (published === report.version ? "published" : `published: version ${published}`) : "draft",
    note,
  ].filter(Boolean);
  return h(
    "header.report-head",
    {},
    h("h1", { text: report.title }),
    h("p.report-meta", { text: meta.join(" · ") }),
    actions.length ? h("div.report-actions", {}, ...actions) : null,
  );
}
