// A stable colour per run: the same run id gets the same colour on every page and every load.
const PALETTE = [
  "#1f77b4", "#e6550d", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#31a354", "#756bb1",
  "#e7ba52", "#de9ed6", "#6baed6", "#fd8d3c",
];

export function runColor(runId: string): string {
  let hash = 2166136261;
  for (let i = 0; i < runId.length; i++) hash = Math.imul(hash ^ runId.charCodeAt(i), 16777619);
  return PALETTE[(hash >>> 0) % PALETTE.length];
}

/** `#rrggbb` with an alpha. */
export function withAlpha(color: string, alpha: number): string {
  const a = Math.round(alpha * 255).toString(16).padStart(2, "0");
  return color + a;
}

/** The palette's `index`-th colour (cycling): distinct colours for the first 20 series of a chart. */
export function paletteColor(index: number): string {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}
