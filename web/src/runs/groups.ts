// Grouping the runs table by a config key: one group per value (numbers in numeric order, then
// other values, runs without the key last), each with a stable colour that charts can use too.

import type { RunRow } from "../api";
import { fmtValue, lookup } from "../format";

export const GROUP_PALETTE = ["#1f77b4", "#e6550d", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79"];

export interface RunGroup {
  id: string; // the value as JSON ("missing" for runs without the key)
  label: string; // key = value
  runs: RunRow[];
  color: string;
  order: number; // its place among the groups
}

export function groupRuns(rows: RunRow[], key: string): RunGroup[] {
  const byValue = new Map<string, { value: unknown; runs: RunRow[] }>();
  for (const row of rows) {
    const value = lookup(row.config, key);
    const id = value === undefined ? "missing" : JSON.stringify(value);
    if (!byValue.has(id)) byValue.set(id, { value, runs: [] });
    byValue.get(id)!.runs.push(row);
  }
  const rank = (value: unknown) => (value === undefined ? 2 : typeof value === "number" ? 0 : 1);
  const ordered = [...byValue].sort(([, a], [, b]) => {
    const order = rank(a.value) - rank(b.value);
    if (order) return order;
    if (typeof a.value === "number" && typeof b.value === "number") return a.value - b.value;
    return fmtValue(a.value).localeCompare(fmtValue(b.value), undefined, { numeric: true });
  });
  return ordered.map(([id, { value, runs }], index) => ({
    id,
    label: `${key} = ${value === undefined ? "(none)" : fmtValue(value)}`,
    runs,
    color: GROUP_PALETTE[index % GROUP_PALETTE.length],
    order: index,
  }));
}
