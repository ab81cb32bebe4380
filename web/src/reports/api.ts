// The reports API (/api/v1/projects/<p>/reports..., docs/reports.md) as the report pages use it.
// A view token (a link shared with someone without an account: `?token=` on the page's URL) is
// sent with every request as X-Tracklet-Report-Token; an API key as the other routes send it.

import { ApiError, plottable, type Series } from "../api";
import type { components } from "../api-types";
import { askForKey, storedKey } from "../auth";
import { FrameReader, LITTLE_ENDIAN } from "./columns";

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

type Schemas = components["schemas"];

export type TextBlock = Schemas["TextBlockModel"];
/** A panel block: the generated type with `spec` and `runs` read as what they hold. */
export type PanelBlock = Omit<Schemas["PanelBlockModel"], "spec" | "runs"> & { spec: PanelSpec | null; runs?: RunSetSpec | null };
export type Block = TextBlock | PanelBlock;
export type ReportSummary = Schemas["ReportSummary"];
/** One version of a report (`version` is the one shown: by default the published one, else the newest). */
export type Report = Omit<Schemas["ReportModel"], "blocks"> & { blocks: Block[] };
export type ReportVersion = Schemas["ReportVersionModel"] & { published?: boolean };
/** What a panel draws: its runs and their history (the /history body), or why it can't. */
export type PanelData = Omit<Schemas["PanelDataResponse"], "history" | "runs"> & {
  runs: (Omit<Schemas["PanelRun"], "group"> & { group?: string | number | boolean | null })[];
  history: { series: Series[] } | null;
};

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

/** One line of `GET .../reports/{id}/data`: a panel's answer (`data` null: unchanged since the `stamp` the caller sent). */
export interface PanelLine {
  index: number;
  stamp: string | null;
  data: PanelData | null;
}

/** Panels asked for in one streamed request: their indexes, buckets per series each, and the stamps drawn already. */
export interface PanelsRequest {
  panels: { index: number; buckets: number }[];
  known?: Map<number, string>;
}

async function refusal(response: Response): Promise<ApiError> {
  let detail = response.statusText;
  try {
    const payload = await response.json();
    detail = typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail);
  } catch {
    /* not JSON */
  }
  return new ApiError(response.status, detail);
}

/** Every panel asked for in one request, answered as a stream: `onPanel` is called for each as it
 * arrives (the first panels draw while the server reads the others). Binary column frames
 * (`format=columns`, ./columns.ts): the numbers arrive as raw columns, nothing to parse; JSON lines
 * where typed arrays are not little-endian. */
async function streamPanels(project: string, id: string | number, version: number | null | undefined, request: PanelsRequest,
  onPanel: (line: PanelLine) => void): Promise<void> {
  const params = new URLSearchParams();
  if (version) params.set("version", String(version));
  for (const panel of request.panels) params.append("panels", String(panel.index));
  const counts = [...new Set(request.panels.map((panel) => panel.buckets))];
  for (const count of counts.length === 1 ? counts : request.panels.map((panel) => panel.buckets)) params.append("buckets", String(count));
  for (const [index, stamp] of request.known ?? []) params.append("known", `${index}:${stamp}`);
  if (LITTLE_ENDIAN) params.set("format", "columns");
  const response = await fetch(`/api/v1${base(project)}/${enc(id)}/data?${params}`, { headers: headers(false) });
  if (!response.ok || !response.body) throw await refusal(response);
  const reader = response.body.getReader();
  if (LITTLE_ENDIAN) {
    const frames = new FrameReader(onPanel);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return frames.end();
      frames.push(value);
    }
  }
  const decoder = new TextDecoder();
  // A panel's line is a megabyte or more, read in chunks of tens of kilobytes: only each new chunk
  // is searched for the line's end, and the line is joined once (not re-scanned per chunk).
  let parts: string[] = [];
  const emit = (text: string) => {
    if (!text.trim()) return;
    const line = JSON.parse(text) as PanelLine;
    if (line.data?.history) line.data.history = plottable(line.data.history as never);
    onPanel(line);
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const chunk = decoder.decode(value, { stream: true });
    let from = 0;
    for (let end = chunk.indexOf("\n"); end >= 0; end = chunk.indexOf("\n", from)) {
      parts.push(chunk.slice(from, end));
      emit(parts.join(""));
      parts = [];
      from = end + 1;
    }
    if (from < chunk.length) parts.push(chunk.slice(from));
  }
  emit(parts.join("") + decoder.decode());
}

/** The export formats (`tracklet report export --format`): png and md come as a zip. */
export type ExportFormat = "html" | "pdf" | "png" | "md";

/** A report exported by the server (`GET .../export`, the CLI's code): the file and its name. */
async function exportFile(project: string, id: string | number, version: number | null | undefined, format: ExportFormat
): Promise<{ blob: Blob; name: string }> {
  const params = new URLSearchParams({ format });
  if (version) params.set("version", String(version));
  const response = await fetch(`/api/v1${base(project)}/${enc(id)}/export?${params}`, { headers: headers(false) });
  if (!response.ok) throw await refusal(response);
  const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "");
  return { blob: await response.blob(), name: named ? named[1] : `report-${id}.${format === "png" || format === "md" ? "zip" : format}` };
}

export const reportsApi = {
  list: (project: string) => call<Schemas["ReportsResponse"]>("GET", base(project)),
  create: (project: string, title: string, markdown: string) => call<Report>("POST", base(project), { title, markdown }),
  preview: (project: string, markdown: string) => call<{ blocks: Block[] }>("POST", `${base(project)}/preview`, { markdown } satisfies Schemas["PreviewRequest"]),
  get: (project: string, id: string | number, version?: number | null) => call<Report>("GET", `${base(project)}/${enc(id)}`, undefined, { version }),
  save: (project: string, id: string | number, body: { markdown: string; title?: string; parent: number }) =>
    call<Report>("PUT", `${base(project)}/${enc(id)}`, body),
  versions: (project: string, id: string | number) =>
    call<Schemas["ReportVersionsResponse"]>("GET", `${base(project)}/${enc(id)}/versions`).then((body) => body.versions as ReportVersion[]),
  diff: (project: string, id: string | number, a: number, b: number) => call<Schemas["ReportDiffResponse"]>("GET", `${base(project)}/${enc(id)}/diff`, undefined, { a, b }),
  revert: (project: string, id: string | number, version: number) => call<Report>("POST", `${base(project)}/${enc(id)}/revert`, { version }),
  publish: (project: string, id: string | number, version: number) => call<Report>("POST", `${base(project)}/${enc(id)}/publish`, { version }),
  delete: (project: string, id: string | number) => call<Schemas["DeletedReportResponse"]>("DELETE", `${base(project)}/${enc(id)}`),
  freeze: (project: string, id: string | number) => call<Report>("POST", `${base(project)}/${enc(id)}/freeze`, {}),
  export: exportFile,
  panels: (project: string, id: string | number, version: number | null | undefined, request: PanelsRequest, onPanel: (line: PanelLine) => void) =>
    streamPanels(project, id, version, request, onPanel),
  panelData: (project: string, id: string | number, index: number, version?: number | null, window?: { start: number | null; end: number | null; buckets: number } | null) =>
    call<PanelData>("GET", `${base(project)}/${enc(id)}/panels/${index}/data`, undefined, { version, ...(window ?? {}) }).then((data) => ({
      ...data,
      history: data.history ? plottable(data.history as never) : null,
    })) as Promise<PanelData>,
};
