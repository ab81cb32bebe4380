// A project's reports: the list (title, version, author, updated, published) and "New report".

import { ApiError } from "../api";
import { h } from "../dom";
import { navigate, reportEditHref, reportHref } from "../router";
import { reportsApi } from "../reports/api";
import { fmtWhen } from "../reports/header";
import "../reports/reports.css";

export async function reportsPage(root: HTMLElement, project: string): Promise<() => void> {
  const { reports } = await reportsApi.list(project);
  const title = h("input.new-report-title", { type: "text", name: "title", placeholder: "Title of a new report", required: true });
  const error = h("p.error", { hidden: true });
  const form = h("form.new-report", {}, title, h("button", { type: "submit", text: "New report" }), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = title.value.trim();
    if (!name) return;
    try {
      const report = await reportsApi.create(project, name, `# ${name}\n\n`);
      navigate(reportEditHref(project, report.id));
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? `${failure.message} (HTTP ${failure.status})` : String(failure);
      error.hidden = false;
    }
  });
  const rows = reports.map((report) =>
    h(
      "tr",
      { "data-report": report.id },
      h("td", {}, h("a", { href: reportHref(project, report.id), "data-link": true, text: report.title || report.id })),
      h("td.num", { text: String(report.version) }),
      h("td", { text: report.author ?? "" }),
      h("td", { text: fmtWhen(report.updated_at) }),
      h("td", { text: report.published_version ? `version ${report.published_version}` : "draft" }),
    ),
  );
  root.replaceChildren(
    h(
      "div.reports-page",
      {},
      h("h1", { text: `Reports of ${project}` }),
      form,
      reports.length
        ? h(
            "table.reports-list",
            {},
            h("thead", {}, h("tr", {}, ...["Title", "Version", "Author", "Updated", "Published"].map((t) => h("th", { text: t })))),
            h("tbody", {}, ...rows),
          )
        : h("p.empty", { text: "No reports yet." }),
    ),
  );
  return () => {};
}
