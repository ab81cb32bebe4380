// Chart data: the server's series per run (exact points or min/max/last buckets), appended to as a
// live run logs, smoothed, and joined onto one x axis for uPlot.

import type { Series } from "../api";

/** One run's one key, in x order. Exact points have min = max = null; buckets carry both. */
export interface RunSeries {
  run: string;
  exact: boolean;
  x: number[];
  steps: number[];
  line: (number | null)[]; // exact values, or each bucket's last value
  min: (number | null)[] | null;
  max: (number | null)[] | null;
}

export function fromApi(series: Series): RunSeries {
  const line = series.exact ? series.values : series.last;
  if (!series.x.includes(null)) {
    // Every point has its x (the usual case): the arrays are taken as they are, not copied.
    const x = series.x as number[];
    return {
      run: series.run,
      exact: series.exact,
      x,
      steps: series.steps ?? x,
      line: line ?? [],
      min: series.exact ? null : (series.min ?? null),
      max: series.exact ? null : (series.max ?? null),
    };
  }
  const keep: number[] = [];
  series.x.forEach((x, i) => {
    if (x !== null) keep.push(i);
  });
  const pick = <T>(array: T[] | undefined) => (array ? keep.map((i) => array[i]) : null);
  const x = keep.map((i) => series.x[i] as number);
  return {
    run: series.run,
    exact: series.exact,
    x,
    steps: series.steps ? keep.map((i) => series.steps![i]) : x,
    line: pick(line) ?? [],
    min: series.exact ? null : pick(series.min),
    max: series.exact ? null : pick(series.max),
  };
}

/** `base` followed by what `more` has after base's last step (a live run's new points). */
export function append(base: RunSeries, more: RunSeries): RunSeries {
  const lastStep = base.steps.length ? base.steps[base.steps.length - 1] : -Infinity;
  let from = 0;
  while (from < more.steps.length && more.steps[from] <= lastStep) from++;
  if (from === more.steps.length) return base;
  const bucketed = !base.exact || !more.exact;
  const spread = (s: RunSeries, which: "min" | "max") => (s.exact ? s.line : s[which]!);
  return {
    run: base.run,
    exact: !bucketed,
    x: base.x.concat(more.x.slice(from)),
    steps: base.steps.concat(more.steps.slice(from)),
    line: base.line.concat(more.line.slice(from)),
    min: bucketed ? spread(base, "min").concat(spread(more, "min").slice(from)) : null,
    max: bucketed ? spread(base, "max").concat(spread(more, "max").slice(from)) : null,
  };
}

/** Exponential moving average with TensorBoard's debiasing (the first points aren't pulled to 0). */
export function ema(values: (number | null)[], weight: number): (number | null)[] {
  if (weight <= 0) return values;
  let last = 0;
  let count = 0;
  return values.map((value) => {
    if (value === null || !isFinite(value)) return null;
    last = last * weight + (1 - weight) * value;
    count++;
    return last / (1 - Math.pow(weight, count));
  });
}

/** The sorted union of every run's x, and each column aligned to it (null where a run has no point). */
export function join(runs: RunSeries[], columns: (number | null)[][]): { xs: number[]; aligned: (number | null)[][] } {
  const all = new Set<number>();
  for (const run of runs) for (const x of run.x) all.add(x);
  const xs = Array.from(all).sort((a, b) => a - b);
  const index = new Map<number, number>();
  xs.forEach((x, i) => index.set(x, i));
  const aligned = columns.map((column, c) => {
    const out: (number | null)[] = new Array(xs.length).fill(null);
    const run = runs[c];
    for (let i = 0; i < run.x.length; i++) out[index.get(run.x[i])!] = column[i];
    return out;
  });
  return { xs, aligned };
}

/** Index of the point of `xs` (sorted) nearest to `x`. */
export function nearest(xs: number[], x: number): number {
  let lo = 0;
  let hi = xs.length - 1;
  if (hi < 0) return -1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(xs[lo - 1] - x) <= Math.abs(xs[lo] - x)) return lo - 1;
  return lo;
}
