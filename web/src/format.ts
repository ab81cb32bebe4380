export function fmtTime(epoch: number | null | undefined, seconds = false): string {
  if (epoch === null || epoch === undefined) return "";
  const date = new Date(epoch * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  return `${day} ${pad(date.getHours())}:${pad(date.getMinutes())}${seconds ? `:${pad(date.getSeconds())}` : ""}`;
}

/** A size in bytes: "12 B", "2.0 kB", "340 MB" (powers of 1,024). */
export function fmtBytes(size: number): string {
  if (size < 1024) return `${size} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = size / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  seconds = Math.max(0, seconds);
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`; // not "0.0s"
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${Math.floor(seconds % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** A histogram as the store keeps it in a summary (tracklet.Histogram: bin edges, counts, and how
 * many NaN and infinite values were left out of the bins). */
export interface HistogramValue {
  edges: number[];
  counts: number[];
  nan_count: number;
  inf_count: number;
}

export function isHistogram(value: unknown): value is HistogramValue {
  if (!value || typeof value !== "object" || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v).filter((k) => k !== "_type");
  return (
    keys.length === 4 && Array.isArray(v.edges) && Array.isArray(v.counts) &&
    typeof v.nan_count === "number" && typeof v.inf_count === "number"
  );
}

/** "Histogram(64 bins over [1, 2], 2 values, 1 NaN, 1 inf)", like `tracklet show`. */
export function fmtHistogram(histogram: HistogramValue): string {
  const { edges, counts, nan_count: nan, inf_count: inf } = histogram;
  const total = counts.reduce((sum, c) => sum + (Number(c) || 0), 0);
  const range = edges.length ? ` over [${fmtValue(edges[0])}, ${fmtValue(edges[edges.length - 1])}]` : "";
  const extra = [nan ? `${nan} NaN` : "", inf ? `${inf} inf` : ""].filter(Boolean);
  return `Histogram(${counts.length} bins${range}, ${total} value${total === 1 ? "" : "s"}${extra.map((e) => `, ${e}`).join("")})`;
}

/** A number for a table cell or tooltip: up to 6 significant digits, no trailing noise. */
export function fmtValue(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (isHistogram(value)) return fmtHistogram(value);
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-4 || abs >= 1e7)) return value.toExponential(4);
    return String(Number(value.toPrecision(6)));
  }
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** Nested config/summary dicts as dotted keys (what the API's filter syntax calls config.a.b); a
 * histogram is one value, not its parts. */
export function flatten(data: Record<string, unknown> | null | undefined, prefix = ""): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [key, value] of Object.entries(data ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value) && !isHistogram(value)) out.push(...flatten(value as Record<string, unknown>, name));
    else out.push([name, value]);
  }
  return out;
}

/** The keys a dotted column name (`flatten`'s) takes through `data`, or null when it names
 * nothing there. A key may hold dots itself (an evaluation's summary names a scorer's field
 * `exact.correct`; W&B keys such as `val.acc`), so at each level the longest key present wins. */
export function keyPath(data: unknown, dotted: string): string[] | null {
  const parts = dotted.split(".");
  const walk = (value: unknown, start: number): string[] | null => {
    if (start === parts.length) return [];
    if (!value || typeof value !== "object") return null;
    const record = value as Record<string, unknown>;
    for (let end = parts.length; end > start; end--) {
      const key = parts.slice(start, end).join(".");
      if (!Object.prototype.hasOwnProperty.call(record, key)) continue;
      const rest = walk(record[key], end);
      if (rest) return [key, ...rest];
    }
    return null;
  };
  return walk(data, 0);
}

export function lookup(data: Record<string, unknown> | null | undefined, dotted: string): unknown {
  const path = keyPath(data, dotted);
  if (!path) return undefined;
  let value: unknown = data;
  for (const key of path) value = (value as Record<string, unknown>)[key];
  return value;
}

export function runtime(row: { created_at: number | null; updated_at: number | null; state: string }): number | null {
  if (row.created_at === null) return null;
  const end = row.state === "running" ? Date.now() / 1000 : row.updated_at;
  return end === null ? null : end - row.created_at;
}

/** Who created a run, as the run page and the runs table say it: the name a server verified by API
 * key; a name only the run's client recorded (its OS user) marked unverified; "" when none is known. */
export function fmtUser(user: { name: string; verified: boolean } | null | undefined, long = false): string {
  if (!user) return long ? "unknown (not recorded)" : "";
  if (user.verified) return user.name;
  return long ? `${user.name} (unverified: the OS user its client recorded)` : `${user.name}?`;
}

/** A step as the server's JSON carries it (routes_media*.py, `JsonStep`): a number, or past 2**53 - 1
 * a string of its digits, which JSON.parse would have rounded to a float (2**53 + 1 read as 2**53). */
export type Step = number | string;

/** Steps in order, exactly (compared as BigInts). */
export function compareSteps(a: Step, b: Step): number {
  const x = BigInt(a), y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A step written in a URL (digits, at most 2**63 - 1) as the server's JSON carries it, so the two
 * compare equal (===); null for anything else. */
export function parseStep(text: string | null): Step | null {
  if (text === null || !/^\d{1,19}$/.test(text)) return null;
  const value = BigInt(text);
  if (value > 2n ** 63n - 1n) return null;
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}
