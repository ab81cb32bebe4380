// The reports API (/api/v1/projects/<p>/reports..., docs/reports.md) as the report pages use it.
// A view token (a link shared with someone without an account: `?token=` on the page's URL) is
// sent with every request as X-Tracklet-Report-Token; an API key as the other routes send it.

import { ApiError, plottable, type Series } from "../api";
import { askForKey, storedKey } from "../auth";

export type PanelSize = "s" | "m" | "l";

/** A run set: which runs a panel charts (live unless frozen). */
export interface RunSetSpec {
  project?: string;
  filter?: string;
  sort?: string;
  limit?: number;
  group?: string;
  frozen?: { run_ids: string[]; max_step?: number | null } | null;
}

/** A `tracklet-panel` block's YAML: the workspace panel's own settings plus its run set. */
export interface PanelSpec {
  title?: string | null;
  keys: string[];
  x?: string;
  smoothing?: number;
  log_y?: boolean;
  size?: PanelSize;
  runs?: RunSetSpec;
}

export type TextBlock = { kind: "text"; markdown: string };
export type PanelBlock = { kind: "panel"; index: number; spec: PanelSpec | null; runs?: RunSetSpec | null; error: string | null };
export type Block = TextBlock | PanelBlock;

export interface ReportSummary {
  id: string;
  title: string;
  version: number;
  author: string | null;
  updated_at: number | string | null;
  published_version: number | null;
}

export interface Report extends ReportSummary {
  project: string;
  /** The newest version (`version` is the one shown: by default the published one, else the newest). */
  latest_version?: number;
  /** What made this version: created, edited, reverted to vN, froze run sets. */
  note?: string;
  parent: number | null;
  created_at: number | string | null;
  markdown: string;
  blocks: Block[];
}

export interface ReportVersion {
  version: number;
  parent?: number | null;
  author?: string | null;
  created_at?: number | string | null;
  title?: string;
  note?: string;
  published?: boolean;
}

/** What a panel draws: its runs and their history (the /history body), or why it can't. */
export interface PanelData {
  access: "ok" | "denied";
  error: string | null;
  runs: { id: string; name: string | null; project: string; group?: string | number | boolean | null }[];
  history: { series: Series[] } | null;
}

const enc = encodeURIComponent;

/** The view token this page was opened with (`?token=`), if any. */
export function reportToken(): string | null {
  return new URLSearchParams(location.search).get("token");
}

function headers(json: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  const key = storedKey();
  if (key) out.Authorization = `Bearer ${key}`;
  const token = reportToken();
  if (token) out["X-Tracklet-Report-Token"] = token;
  if (json) out["Content-Type"] = "application/json";
  return out;
}

/** One request to the reports API; JSON in and out, refusals as ApiError with the server's detail. */
async function call<T>(method: string, path: string, body?: unknown, query: Record<string, string | number | null | undefined> = {}): Promise<T> {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  const text = params.toString();
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(`/api/v1${path}${text ? "?" + text : ""}`, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.ok) return (await response.json()) as T;
    let detail = response.statusText;
    try {
      const payload = await response.json();
      detail = typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail);
    } catch {
      /* not JSON */
    }
    if (response.status === 401 && attempt === 0 && !reportToken() && (await askForKey(detail))) continue;
    throw new ApiError(response.status, detail);
  }
}

const base = (project: string) => `/projects/${enc(project)}/reports`;

export const reportsApi = {
  list: (project: string) => call<{ reports: ReportSummary[] }>("GET", base(project)),
  create: (project: string, title: string, markdown: string) => call<Report>("POST", base(project), { title, markdown }),
  preview: (project: string, markdown: string) => call<{ blocks: Block[] }>("POST", `${base(project)}/preview`, { markdown }),
  get: (project: string, id: string, version?: number | null) => call<Report>("GET", `${base(project)}/${enc(id)}`, undefined, { version }),
  save: (project: string, id: string, body: { markdown: string; title?: string; parent: number }) =>
    call<Report>("PUT", `${base(project)}/${enc(id)}`, body),
  versions: (project: string, id: string) =>
    call<{ versions: ReportVersion[] } | ReportVersion[]>("GET", `${base(project)}/${enc(id)}/versions`).then((body) =>
      Array.isArray(body) ? body : body.versions,
    ),
  diff: (project: string, id: string, a: number, b: number) => call<{ diff: string }>("GET", `${base(project)}/${enc(id)}/diff`, undefined, { a, b }),
  revert: (project: string, id: string, version: number) => call<Report>("POST", `${base(project)}/${enc(id)}/revert`, { version }),
  publish: (project: string, id: string, version: number) => call<Report>("POST", `${base(project)}/${enc(id)}/publish`, { version }),
  freeze: (project: string, id: string) => call<Report>("POST", `${base(project)}/${enc(id)}/freeze`, {}),
  panelData: (project: string, id: string, index: number, version?: number | null, window?: { start: number; end: number; buckets: number } | null) =>
    call<PanelData>("GET", `${base(project)}/${enc(id)}/panels/${index}/data`, undefined, { version, ...(window ?? {}) }).then((data) => ({
      ...data,
      history: data.history ? plottable(data.history as never) : null,
    })) as Promise<PanelData>,
};
