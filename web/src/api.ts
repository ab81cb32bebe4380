// The JSON API (/api/v1) as the dashboard uses it. A server with API keys answers 401 without
// one: the key prompt (auth.ts) stores a key in localStorage and every request sends it.

import type { components, paths } from "./api-types";
import { askForKey, storedKey } from "./auth";

// The shapes come from the server's OpenAPI schema: api-types.ts is generated from it
// (scripts/gen_api_types.sh), so a change on the server that the dashboard doesn't follow fails
// `tsc` here, and CI fails when api-types.ts is stale.
type Schemas = components["schemas"];

export type RunRow = Schemas["RunRow"];
/** One (run, key) series from the batch history endpoint: exact points or buckets. */
export type Series = Plotted<Schemas["CompareSeries"]>;
/** One system metric's series (a run's path as `run`; `stat`: mean or max). */
export type SystemSeries = Plotted<Schemas["Series"]>;
export type ConsoleLine = Schemas["ConsoleLine"];
export type RunAlert = Schemas["Alert"];
export type RunFile = Schemas["FileEntry"];
export type SweepSummary = Schemas["SweepSummary"];
export type SweepDetail = Schemas["SweepDetail"];
export type SweepTrial = Schemas["SweepTrial"];
export type SweepParameter = Schemas["SweepParameter"];
export type SweepImportance = Schemas["SweepImportanceResponse"];
export type MediaEntry = Schemas["MediaEntry"];
export type TableRows = Schemas["TableRowsResponse"];
export type TableVersion = Schemas["TableVersion"];
export type TableGroups = Schemas["TableGroupsResponse"];
export type HistogramSeries = Schemas["HistogramSeriesResponse"];
/** A page request of a table (or of two joined): filter, sort, a window of rows. */
export type TablePageQuery = { filter?: string; sort?: string; descending?: boolean; offset: number; limit: number };
/** Which version of a table: run-table version `version` (`table-versions`' `version`: one per
 * log, also where a shared run's writers logged the key at one step), else the last at `step`,
 * else the latest. */
export type TableVersionQuery = { version?: number | null; step?: number | null };

/** The JSON body a GET of `P` answers with, per the server's schema. */
type Body<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { "application/json": infer T } } } };
}
  ? T
  : never;

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

type Query = Record<string, string | number | boolean | null | undefined>;

function url(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return `/api/v1${path}${text ? "?" + text : ""}`;
}

/** GET a JSON document; on 401 ask for a key once and retry. */
export async function get<T>(path: string, query: Query = {}, signal?: AbortSignal): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const key = storedKey();
    const response = await fetch(url(path, query), {
      headers: key ? { Authorization: `Bearer ${key}` } : {},
      signal,
    });
    if (response.ok) return (await response.json()) as T;
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch {
      /* not JSON */
    }
    if (response.status === 401 && attempt === 0 && (await askForKey(detail))) continue;
    throw new ApiError(response.status, detail);
  }
}

/** POST, PUT or DELETE a JSON body; the answer's JSON. On 401 ask for a key once and retry; a
 * refusal is an ApiError with the server's detail (a 409's names the promotion request opened). */
export async function send<T>(method: "POST" | "PUT" | "DELETE", path: string, body?: unknown, query: Query = {}): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const key = storedKey();
    const headers: Record<string, string> = key ? { Authorization: `Bearer ${key}` } : {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url(path, query), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.ok) return (await response.json()) as T;
    let detail = response.statusText;
    try {
      const answer = await response.json();
      detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
    } catch {
      /* not JSON */
    }
    if (response.status === 401 && attempt === 0 && (await askForKey(detail))) continue;
    throw new ApiError(response.status, detail);
  }
}

const enc = encodeURIComponent;

const PLOTTED = ["x", "values", "min", "max", "last"] as const;
type PlottedName = (typeof PLOTTED)[number];
/** A series with its plotted arrays as numbers or null (no point), as the charts take them. */
type Plotted<S> = { [K in keyof S]: K extends PlottedName ? Exclude<S[K], unknown[]> | (number | null)[] : S[K] };

/** Series arrays as numbers for the charts. The server writes NaN and ±inf as the strings "NaN",
 * "Infinity" and "-Infinity" (strict JSON, docs/server.md); a chart has no point for them, so
 * they become null, a gap, like a missing value. */
export function plottable<B extends { series: object[] }>(data: B): Omit<B, "series"> & { series: Plotted<B["series"][number]>[] } {
  for (const series of data.series as Record<string, unknown>[]) {
    for (const name of PLOTTED) {
      const values = series[name] as unknown[] | undefined;
      // In place: a report's panels are millions of numbers, and a copy of each array is garbage.
      if (values) for (let i = 0; i < values.length; i++) if (typeof values[i] !== "number") values[i] = null;
    }
  }
  return data as unknown as Omit<B, "series"> & { series: Plotted<B["series"][number]>[] };
}

/** A run file's bytes, with the key header a plain link could not send. */
export async function fileBlob(project: string, runId: string, name: string): Promise<Blob> {
  const key = storedKey();
  const path = name.split("/").map(enc).join("/");
  const response = await fetch(`/api/v1/runs/${enc(project)}/${enc(runId)}/files/${path}`, {
    headers: key ? { Authorization: `Bearer ${key}` } : {},
  });
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  return response.blob();
}

/** A media cell's file (by sha256) of the table under `key`: of the version shown (`at`; the server
 * looks in that version's records; without it, in the key's last logs). */
export async function tableBlob(project: string, runId: string, key: string, digest: string,
  at: { version?: number; step?: number } = {}): Promise<Blob> {
  const storedKeyValue = storedKey();
  const response = await fetch(url(`/runs/${enc(project)}/${enc(runId)}/table-blobs/${enc(digest)}`, { key, ...at }), {
    headers: storedKeyValue ? { Authorization: `Bearer ${storedKeyValue}` } : {},
  });
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  return response.blob();
}

/** A table key as a path (its `/` kept: the routes take `{key:path}`). */
const keyPath = (key: string) => key.split("/").map(enc).join("/");

/** A logged media file's bytes (by sha256), with the key header an <img src> could not send. */
export async function mediaBlob(project: string, runId: string, digest: string): Promise<Blob> {
  const key = storedKey();
  const response = await fetch(`/api/v1/runs/${enc(project)}/${enc(runId)}/media/${enc(digest)}`, {
    headers: key ? { Authorization: `Bearer ${key}` } : {},
  });
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  return response.blob();
}

/** A blob a trace's spans name (a media argument or result, a large payload), by sha256. */
export async function traceBlob(project: string, traceId: string, digest: string): Promise<Blob> {
  const key = storedKey();
  const response = await fetch(`/api/v1/projects/${enc(project)}/traces/${enc(traceId)}/blobs/${enc(digest)}`, {
    headers: key ? { Authorization: `Bearer ${key}` } : {},
  });
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  return response.blob();
}

/** Versions asked for a page of `table-versions` (the server's most). */
export const TABLE_VERSIONS_PAGE = 10000;

export const api = {
  projects: () => get<Body<"/api/v1/projects">>("/projects"),
  runs: (project: string, query: { filter?: string; order_by?: string; limit?: number }, signal?: AbortSignal) =>
    get<Body<"/api/v1/projects/{project}/runs">>(`/projects/${enc(project)}/runs`, { limit: 10000, ...query }, signal),
  run: (project: string, runId: string) =>
    get<Body<"/api/v1/runs/{project}/{run_id}">>(`/runs/${enc(project)}/${enc(runId)}`),
  keys: (project: string, runs: string[]) =>
    get<Body<"/api/v1/projects/{project}/keys">>(`/projects/${enc(project)}/keys`, { runs: runs.join(",") }),
  history: (
    project: string,
    query: { runs: string[]; keys: string[]; x: string; start?: number | null; end?: number | null; buckets: number },
    signal?: AbortSignal,
  ) =>
    get<Body<"/api/v1/projects/{project}/history">>(
      `/projects/${enc(project)}/history`,
      { ...query, runs: query.runs.join(","), keys: query.keys.join(",") },
      signal,
    ).then(plottable),
  system: (project: string, runId: string, query: { x: string; buckets: number; start?: number | null }) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/system">>(`/runs/${enc(project)}/${enc(runId)}/system`, query).then(plottable),
  alerts: (project: string, runId: string, after = 0) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/alerts">>(`/runs/${enc(project)}/${enc(runId)}/alerts`, {
      after,
      limit: 10000,
    }),
  media: (project: string, runId: string) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/media">>(`/runs/${enc(project)}/${enc(runId)}/media`),
  tableKeys: (project: string, runId: string) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/tables">>(`/runs/${enc(project)}/${enc(runId)}/tables`),
  table: (project: string, runId: string, key: string, query: TablePageQuery & TableVersionQuery, signal?: AbortSignal) =>
    get<TableRows>(`/runs/${enc(project)}/${enc(runId)}/tables/${keyPath(key)}`, query, signal),
  /** A page of a table key's versions, from `cursor` (a page's `next_cursor`; none: the first). */
  tableVersions: (project: string, runId: string, key: string, cursor: string | null = null) =>
    get<Schemas["TableVersionsResponse"]>(`/runs/${enc(project)}/${enc(runId)}/table-versions/${keyPath(key)}`, {
      limit: TABLE_VERSIONS_PAGE,
      cursor,
    }),
  tableGroups: (project: string, runId: string, key: string, query: TableVersionQuery & { by: string; filter?: string; limit?: number }, signal?: AbortSignal) =>
    get<TableGroups>(`/runs/${enc(project)}/${enc(runId)}/table-groups/${keyPath(key)}`, query, signal),
  tableJoin: (
    project: string,
    query: TablePageQuery & {
      a_run: string;
      a_key: string;
      a_step?: number | null;
      a_version?: number | null;
      b_run: string;
      b_key: string;
      b_step?: number | null;
      b_version?: number | null;
      on: string;
    },
    signal?: AbortSignal,
  ) => get<Body<"/api/v1/projects/{project}/table-join">>(`/projects/${enc(project)}/table-join`, query, signal),
  histogramKeys: (project: string, runId: string) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/histograms">>(`/runs/${enc(project)}/${enc(runId)}/histograms`),
  histograms: (project: string, runId: string, key: string, query: { bins: number; max_steps: number }) =>
    get<HistogramSeries>(`/runs/${enc(project)}/${enc(runId)}/histograms/${keyPath(key)}`, query),
  files: (project: string, runId: string) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/files">>(`/runs/${enc(project)}/${enc(runId)}/files`),
  sweeps: (project: string) => get<Body<"/api/v1/projects/{project}/sweeps">>(`/projects/${enc(project)}/sweeps`),
  sweep: (project: string, sweepId: string) =>
    get<Body<"/api/v1/projects/{project}/sweeps/{sweep_id}">>(`/projects/${enc(project)}/sweeps/${enc(sweepId)}`),
  sweepImportance: (project: string, sweepId: string) =>
    get<Body<"/api/v1/projects/{project}/sweeps/{sweep_id}/importance">>(`/projects/${enc(project)}/sweeps/${enc(sweepId)}/importance`),
  console: (project: string, runId: string, query: { after?: number; limit?: number; q?: string; tail?: boolean }) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/console">>(`/runs/${enc(project)}/${enc(runId)}/console`, query),
};

/** A table key's last 10,000 versions in one request, and where those logged later start. */
export async function latestTableVersions(
  project: string,
  runId: string,
  key: string,
): Promise<{ versions: TableVersion[]; cursor: string | null; total: number }> {
  const page = await get<Schemas["TableVersionsResponse"]>(`/runs/${enc(project)}/${enc(runId)}/table-versions/${keyPath(key)}`);
  return { versions: page.versions, cursor: page.next_cursor ?? null, total: page.total };
}

/** A table key's versions from `cursor` on (none: from the first), the server's pages followed
 * (each costs it the page, not every version); `cursor`: where versions logged later will start
 * (ask from it to list only those), `total`: the key's versions in all. */
export async function tableVersionsFrom(
  project: string,
  runId: string,
  key: string,
  cursor: string | null = null,
): Promise<{ versions: TableVersion[]; cursor: string | null; total: number }> {
  const versions: TableVersion[] = [];
  for (;;) {
    const page = await api.tableVersions(project, runId, key, cursor);
    versions.push(...page.versions);
    cursor = page.next_cursor ?? null;
    if (page.versions.length < TABLE_VERSIONS_PAGE || cursor === null) return { versions, cursor, total: page.total };
  }
}
