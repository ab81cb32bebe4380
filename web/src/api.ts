// The JSON API (/api/v1) as the dashboard uses it. A server with API keys answers 401 without
// one: the key prompt (auth.ts) stores a key in localStorage and every request sends it.

import { askForKey, storedKey } from "./auth";

export interface RunRow {
  run_id: string;
  path: string;
  name: string | null;
  state: string;
  tags: string[] | null;
  group_name: string | null;
  job_type: string | null;
  notes: string | null;
  host: string | null;
  created_at: number | null;
  updated_at: number | null;
  heartbeat_at: number | null;
  exit_code: number | null;
  config: Record<string, unknown> | null;
  summary: Record<string, unknown> | null;
  last_step: number | null;
  keys?: string[];
  metadata?: Record<string, unknown>;
}

/** One (run, key) series from the batch history endpoint: exact points or buckets. */
export interface Series {
  run: string;
  key: string;
  exact: boolean;
  x: (number | null)[];
  steps?: number[];
  values?: (number | null)[];
  min?: (number | null)[];
  max?: (number | null)[];
  last?: (number | null)[];
  stat?: string;
}

export interface ConsoleLine {
  seq: number;
  time: number;
  stream: string;
  text: string;
}

export interface RunAlert {
  seq: number;
  time: number;
  level: string; // INFO, WARN, ERROR
  title: string;
  text: string;
}

export interface RunFile {
  name: string;
  size: number;
  sha256: string;
  updated_at: string | null;
}

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

const enc = encodeURIComponent;

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

export const api = {
  projects: () => get<{ projects: { name: string; runs: number }[] }>("/projects"),
  runs: (project: string, query: { filter?: string; order_by?: string; limit?: number }, signal?: AbortSignal) =>
    get<{ runs: RunRow[] }>(`/projects/${enc(project)}/runs`, { limit: 10000, ...query }, signal),
  run: (project: string, runId: string) => get<{ run: RunRow }>(`/runs/${enc(project)}/${enc(runId)}`),
  keys: (project: string, runs: string[]) =>
    get<{ keys: string[] }>(`/projects/${enc(project)}/keys`, { runs: runs.join(",") }),
  history: (
    project: string,
    query: { runs: string[]; keys: string[]; x: string; start?: number | null; end?: number | null; buckets: number },
    signal?: AbortSignal,
  ) =>
    get<{ series: Series[] }>(
      `/projects/${enc(project)}/history`,
      { ...query, runs: query.runs.join(","), keys: query.keys.join(",") },
      signal,
    ),
  system: (project: string, runId: string, query: { x: string; buckets: number; start?: number | null }) =>
    get<{ names: string[]; series: (Series & { stat: string; steps: number[] })[] }>(
      `/runs/${enc(project)}/${enc(runId)}/system`,
      query,
    ),
  alerts: (project: string, runId: string, after = 0) =>
    get<{ alerts: RunAlert[] }>(`/runs/${enc(project)}/${enc(runId)}/alerts`, { after, limit: 10000 }),
  files: (project: string, runId: string) => get<{ files: RunFile[] }>(`/runs/${enc(project)}/${enc(runId)}/files`),
  console: (project: string, runId: string, query: { after?: number; limit?: number; q?: string; tail?: boolean }) =>
    get<{ lines: ConsoleLine[]; next_after: number; last_seq: number }>(
      `/runs/${enc(project)}/${enc(runId)}/console`,
      query,
    ),
};
