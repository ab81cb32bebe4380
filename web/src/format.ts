export function fmtTime(epoch: number | null | undefined): string {
  if (epoch === null || epoch === undefined) return "";
  const date = new Date(epoch * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(
    date.getMinutes(),
  )}`;
}

export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  seconds = Math.max(0, seconds);
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${Math.floor(seconds % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** A number for a table cell or tooltip: up to 6 significant digits, no trailing noise. */
export function fmtValue(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-4 || abs >= 1e7)) return value.toExponential(4);
    return String(Number(value.toPrecision(6)));
  }
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** Nested config/summary dicts as dotted keys (what the API's filter syntax calls config.a.b). */
export function flatten(data: Record<string, unknown> | null | undefined, prefix = ""): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [key, value] of Object.entries(data ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) out.push(...flatten(value as Record<string, unknown>, name));
    else out.push([name, value]);
  }
  return out;
}

export function lookup(data: Record<string, unknown> | null | undefined, dotted: string): unknown {
  let value: unknown = data;
  for (const part of dotted.split(".")) {
    if (!value || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

export function runtime(row: { created_at: number | null; updated_at: number | null; state: string }): number | null {
  if (row.created_at === null) return null;
  const end = row.state === "running" ? Date.now() / 1000 : row.updated_at;
  return end === null ? null : end - row.created_at;
}
