// Two runs side by side (#21): what `tracklet diff A B` computes (GET .../run-diff): config,
// environment, packages, seeds, inputs (artifact versions), summary metrics with their difference and
// relative difference, and the code as each ran (a unified diff). Only what differs is listed.

import { api } from "../api";
import { h } from "../dom";
import { fmtValue } from "../format";
import { navigate, runDiffHref, runHref } from "../router";
import { reproduceApi, type RunDiff, type ValueChange } from "./reproduce-api";

function shown(value: unknown, absent: boolean): string {
  if (absent) return "—";
  return typeof value === "object" && value !== null ? JSON.stringify(value) : fmtValue(value);
}

function relative(change: ValueChange): string {
  if (change.difference === undefined) return "";
  if (change.relative === null || change.relative === undefined) return "n/a";
  const percent = change.relative * 100;
  return `${percent > 0 ? "+" : ""}${Number(percent.toPrecision(3))}%`;
}

function section(title: string, name: string, changes: ValueChange[], numbers = false): HTMLElement {
  const body = changes.length
    ? h("table.diff-table", {},
        h("thead", {}, h("tr", {}, h("th", { text: "key" }), h("th", { text: "a" }), h("th", { text: "b" }),
          ...(numbers ? [h("th", { text: "b − a" }), h("th", { text: "relative" })] : []))),
        h("tbody", {}, ...changes.map((change) =>
          h("tr", { "data-key": change.key },
            h("td.key", { text: change.key }),
            h("td.a", { text: shown(change.a, change.only === "b") }),
            h("td.b", { text: shown(change.b, change.only === "a") }),
            ...(numbers ? [h("td.difference", { text: change.difference === undefined ? "" : fmtValue(change.difference) }),
              h("td.relative", { text: relative(change) })] : [])))))
    : h("p.muted", { text: "no difference" });
  return h(`section.card.wide.diff-${name}`, { "data-section": name }, h("h2", { text: `${title} (${changes.length})` }), body);
}

function codeSection(diff: RunDiff): HTMLElement {
  const [a, b] = diff.code.commits;
  const lines = diff.code.diff.split("\n");
  const pre = h("pre.code-diff", {}, ...lines.map((line) => {
    const kind = line.startsWith("+++") || line.startsWith("---") ? "file" : line.startsWith("+") ? "add"
      : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "same";
    return h(`span.line.${kind}`, { text: `${line}\n` });
  }));
  return h("section.card.wide.diff-code", { "data-section": "code" }, h("h2", { text: "Code" }),
    h("p.muted", { text: `commits: ${a ? a.slice(0, 12) : "?"} → ${b ? b.slice(0, 12) : "?"}` }),
    ...diff.code.notes.map((note) => h("p.note", { text: note })),
    diff.code.diff ? pre : h("p.muted", { text: "the sources are the same" }));
}

/** The page at /projects/<p>/run-diff?a=<run>&b=<run>. */
export async function runDiffPage(root: HTMLElement, project: string, a: string, b: string): Promise<() => void> {
  if (!a || !b) {
    root.replaceChildren(h("p.error", { text: "Name two runs: ?a=<run id>&b=<run id>" }));
    return () => {};
  }
  root.replaceChildren(h("p.loading", { text: "Comparing runs…" }));
  const diff = await reproduceApi.diff(project, a, b);
  const swap = h("button.swap", { type: "button", text: "swap a and b" });
  swap.addEventListener("click", () => navigate(runDiffHref(project, b, a)));
  const other = h("select.compare-b", {}, h("option", { value: "", text: "compare a with another run…" }));
  void api.runs(project, { limit: 500 }).then(({ runs }) => {
    for (const row of runs) if (row.run_id !== a) other.append(h("option", { value: row.run_id, text: `${row.name || row.run_id} (${row.run_id})` }));
  }).catch(() => undefined);
  other.addEventListener("change", () => other.value && navigate(runDiffHref(project, a, other.value)));
  root.replaceChildren(
    h("div.run-diff-page", {},
      h("div.pane-head", {}, h("h1", { text: "Compare runs" }),
        h("span", {}, "a: ", h("a.run-a", { href: runHref(project, a), "data-link": true, text: diff.a })),
        h("span", {}, "b: ", h("a.run-b", { href: runHref(project, b), "data-link": true, text: diff.b })),
        swap, other),
      h("p.muted", { text: `The same as: tracklet diff ${diff.a} ${diff.b}` }),
      section("Config", "config", diff.config),
      section("Summary", "summary", diff.summary, true),
      section("Inputs", "inputs", diff.inputs),
      section("Environment", "environment", diff.environment),
      section("Packages", "packages", diff.packages),
      section("Seeds", "seeds", diff.seeds),
      codeSection(diff)),
  );
  return () => {};
}
