// Grouping the runs table by a config key: one group per value (numbers in numeric order, then
// other values, runs without the key last), each with a stable colour that charts can use too.
// SWEEP_GROUP groups by the sweep a run is a trial of instead (its `sweep:<id>` tag).

import type { RunRow } from "../api";
import { fmtValue, lookup } from "../format";

export const GROUP_PALETTE = ["#1f77b4", "#e6550d", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79"];

/** The group key that groups runs by their sweep (no config key starts with "@"). */
export const SWEEP_GROUP = "@sweep";
const SWEEP_TAG = "sweep:";

/** The sweep a run is a trial of (tracklet tags a trial's run `sweep:<id>`), if any. */
export function sweepOf(row: RunRow): string | undefined {
  const tag = (row.tags ?? []).find((t) => t.startsWith(SWEEP_TAG));
  return tag ? tag.slice(SWEEP_TAG.length) : undefined;
}

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
    const value = key === SWEEP_GROUP ? sweepOf(row) : lookup(row.config, key);
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
    label: key === SWEEP_GROUP ? (value === undefined ? "no sweep" : `sweep ${fmtValue(value)}`) : `${key} = ${value === undefined ? "(none)" : fmtValue(value)}`,
    runs,
    color: GROUP_PALETTE[index % GROUP_PALETTE.length],
    order: index,
  }));
}
