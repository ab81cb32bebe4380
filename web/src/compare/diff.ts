// Config diff: the config keys whose values differ between the selected runs, one column per run;
// a cell that differs from the first run's value is highlighted.

import type { RunRow } from "../api";
import { h } from "../dom";
import { flatten, fmtValue } from "../format";

export interface DiffRow {
  key: string;
  values: unknown[]; // per run, undefined where the run has no such key
  differs: boolean[]; // per run: not equal to the first run's value
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Rows for the keys (dotted, sorted) whose values are not all equal; `keys`: every key seen. */
export function configDiff(runs: RunRow[]): { rows: DiffRow[]; keys: number } {
  const perRun = runs.map((run) => new Map(flatten(run.config)));
  const keys = [...new Set(perRun.flatMap((config) => [...config.keys()]))].sort();
  const rows: DiffRow[] = [];
  for (const key of keys) {
    const values = perRun.map((config) => config.get(key));
    if (values.every((value) => same(value, values[0]))) continue;
    rows.push({ key, values, differs: values.map((value) => !same(value, values[0])) });
  }
  return { rows, keys: keys.length };
}

export function diffTable(runs: RunRow[], info: (run: string) => { name: string; color: string }): HTMLElement {
  if (runs.length < 2) return h("p.empty", { text: "Select two or more runs to compare their configs." });
  const { rows, keys } = configDiff(runs);
  const head = h(
    "tr",
    {},
    h("th", { text: "Config key" }),
    ...runs.map((run) => {
      const { name, color } = info(run.run_id);
      return h("th", { "data-run": run.run_id }, h("i.swatch", { style: `background:${color}` }), name);
    }),
  );
  const body = rows.map((row) =>
    h(
      "tr",
      { "data-key": row.key },
      h("th", { text: row.key }),
      ...row.values.map((value, i) =>
        h(`td${row.differs[i] ? ".differs" : ""}` as "td", { "data-run": runs[i].run_id, text: value === undefined ? "—" : fmtValue(value) }),
      ),
    ),
  );
  return h(
    "div.config-diff",
    {},
    h("p.muted", { text: `${rows.length} of ${keys} config keys differ (highlighted: not the first run's value)` }),
    rows.length ? h("table.diff", {}, h("thead", {}, head), h("tbody", {}, ...body)) : h("p.empty", { text: "The configs are identical." }),
  );
}
