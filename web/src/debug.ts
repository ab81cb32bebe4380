// window.__tracklet: what the browser tests (tests/test_dashboard.py) and benchmarks read instead
// of pixels: each chart's data as drawn (lines, min/max band), its scales, and how to hover a point.

export interface ChartProbe {
  key: string;
  runs: { run: string; exact: boolean; x: number[]; line: (number | null)[]; min: (number | null)[] | null; max: (number | null)[] | null }[];
  scales: { xMin: number | null; xMax: number | null; yMin: number | null; yMax: number | null };
  loads: number; // history requests answered and drawn for this chart
  drawnAt: number; // performance.now() of the last draw
  width: number | null; // the uPlot's size in CSS pixels (null before the first draw)
  height: number | null;
  span: number; // grid columns the panel spans
  series: { label: string; stroke: string; points: boolean }[]; // uPlot's series as drawn (markers: points)
  xTicks: string[]; // the x axis' tick labels (relative time)
  /** The canvas colour [r, g, b, a] at data point (x, y). */
  pixel(x: number, y: number): number[];
  /** Page coordinates of (x, y) on the plot, for mouse moves in tests. */
  pagePoint(x: number, y: number): { x: number; y: number };
}

const charts = new Map<string, () => ChartProbe>();
const probes = new Map<string, () => unknown>();
const requests: string[] = [];
const marks: Record<string, number> = {};

export function registerChart(id: string, probe: () => ChartProbe): () => void {
  charts.set(id, probe);
  return () => {
    if (charts.get(id) === probe) charts.delete(id);
  };
}

/** Any other view's state for tests (the parallel coordinates, the grouped table...). */
export function registerProbe(name: string, probe: () => unknown): () => void {
  probes.set(name, probe);
  return () => {
    if (probes.get(name) === probe) probes.delete(name);
  };
}

export function noteRequest(url: string): void {
  requests.push(url);
  if (requests.length > 1000) requests.splice(0, requests.length - 1000);
}

/** performance.now() when something first happened (first rows drawn, first chart drawn...). */
export function mark(name: string): void {
  marks[name] ??= performance.now();
  performance.mark(`tracklet:${name}`);
}

(window as unknown as { __tracklet: unknown }).__tracklet = {
  chart: (id: string) => charts.get(id)?.() ?? null,
  charts: () => Array.from(charts.keys()),
  probe: (name: string) => probes.get(name)?.() ?? null,
  requests,
  marks,
};
