// Client-side routes: /, /projects/<p>/run-diff?a=<run>&b=<run>, /registry[/requests | /<registry>/<collection>[/<version>[/lineage]]], /projects/<p>, /projects/<p>/runs/<id>,
// /projects/<p>/runs/<id>/tables/<key>, /projects/<p>/sweeps/<id>, /projects/<p>/traces[/<trace id>], the report pages
// (/projects/<p>/reports[/<id>[/edit]]), and the artifact pages
// (/projects/<p>/artifacts[/<name>[/<version>[/lineage]]], /projects/<p>/runs/<id>/lineage). The server answers index.html for
// each, so a link (or a reload) lands on the right page; the view state lives in the query string.

export type Route =
  | { page: "projects" }
  | { page: "project"; project: string }
  | { page: "run"; project: string; runId: string }
  | { page: "run-diff"; project: string; a: string; b: string }
  | ArtifactRoute
  | { page: "sweep"; project: string; sweepId: string }
  | { page: "table"; project: string; runId: string; key: string }
  | { page: "traces"; project: string }
  | { page: "trace"; project: string; traceId: string }
  | ReportRoute
  | RegistryRoute
  | { page: "missing"; path: string };

/** Report pages (pages/reports.ts, pages/report.ts, pages/report-edit.ts). */
export type ReportRoute =
  | { page: "reports"; project: string }
  | { page: "report"; project: string; reportId: string }
  | { page: "report-edit"; project: string; reportId: string };

function parseReportRoute(parts: string[]): ReportRoute | null {
  if (parts[0] !== "projects" || parts[2] !== "reports") return null;
  if (parts.length === 3) return { page: "reports", project: parts[1] };
  if (parts.length === 4) return { page: "report", project: parts[1], reportId: parts[3] };
  if (parts.length === 5 && parts[4] === "edit") return { page: "report-edit", project: parts[1], reportId: parts[3] };
  return null;
}

export function parseRoute(pathname: string): Route {
  const parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { page: "projects" };
  const registry = parseRegistryRoute(parts);
  if (registry) return registry;
  if (parts[0] === "projects" && parts.length === 2) return { page: "project", project: parts[1] };
  if (parts[0] === "projects" && parts.length === 3 && parts[2] === "run-diff") {
    const query = new URLSearchParams(location.search);
    return { page: "run-diff", project: parts[1], a: query.get("a") ?? "", b: query.get("b") ?? "" };
  }
  if (parts[0] === "projects" && parts.length === 4 && parts[2] === "runs")
    return { page: "run", project: parts[1], runId: parts[3] };
  if (parts[0] === "projects" && parts.length >= 6 && parts[2] === "runs" && parts[4] === "tables")
    return { page: "table", project: parts[1], runId: parts[3], key: parts.slice(5).join("/") };
  const report = parseReportRoute(parts);
  if (report) return report;
  const artifact = parseArtifactRoute(parts);
  if (artifact) return artifact;
  if (parts[0] === "projects" && parts.length === 4 && parts[2] === "sweeps")
    return { page: "sweep", project: parts[1], sweepId: parts[3] };
  if (parts[0] === "projects" && parts.length === 3 && parts[2] === "traces") return { page: "traces", project: parts[1] };
  if (parts[0] === "projects" && parts.length === 4 && parts[2] === "traces")
    return { page: "trace", project: parts[1], traceId: parts[3] };
  return { page: "missing", path: pathname };
}

/** Artifact pages (pages/artifacts.ts, pages/artifact-lineage.ts). */
export type ArtifactRoute =
  | { page: "artifacts"; project: string }
  | { page: "artifact"; project: string; name: string }
  | { page: "artifact-version"; project: string; name: string; version: string }
  | { page: "lineage"; project: string; runId?: string; name?: string; version?: string };

const ARTIFACT_PAGES: ReadonlySet<string> = new Set(["artifacts", "artifact", "artifact-version", "lineage"]);

export function isArtifactRoute(route: { page: string }): route is ArtifactRoute {
  return ARTIFACT_PAGES.has(route.page);
}

function parseArtifactRoute(parts: string[]): ArtifactRoute | null {
  if (parts[0] !== "projects" || parts.length < 3) return null;
  const project = parts[1];
  if (parts[2] === "runs" && parts.length === 5 && parts[4] === "lineage") return { page: "lineage", project, runId: parts[3] };
  if (parts[2] !== "artifacts") return null;
  if (parts.length === 3) return { page: "artifacts", project };
  if (parts.length === 4) return { page: "artifact", project, name: parts[3] };
  if (parts.length === 5) return { page: "artifact-version", project, name: parts[3], version: parts[4] };
  if (parts.length === 6 && parts[5] === "lineage") return { page: "lineage", project, name: parts[3], version: parts[4] };
  return null;
}

/** Model registry pages (pages/registry.ts): /registry, /registry/requests, /registry/<r>/<collection>[/<version>[/lineage]]. */
export type RegistryRoute =
  | { page: "registries" }
  | { page: "registry-requests" }
  | { page: "registry-collection"; registry: string; collection: string }
  | { page: "registry-version"; registry: string; collection: string; version: string }
  | { page: "registry-lineage"; registry: string; collection: string; version: string };

function parseRegistryRoute(parts: string[]): RegistryRoute | null {
  if (parts[0] !== "registry") return null;
  if (parts.length === 1) return { page: "registries" };
  if (parts.length === 2 && parts[1] === "requests") return { page: "registry-requests" };
  if (parts.length === 3) return { page: "registry-collection", registry: parts[1], collection: parts[2] };
  if (parts.length === 4) return { page: "registry-version", registry: parts[1], collection: parts[2], version: parts[3] };
  if (parts.length === 5 && parts[4] === "lineage") return { page: "registry-lineage", registry: parts[1], collection: parts[2], version: parts[3] };
  return null;
}

export function isRegistryRoute(route: { page: string }): route is RegistryRoute {
  return route.page.startsWith("registr");
}

export const registriesHref = "/registry";
export const registryRequestsHref = "/registry/requests";
export const registryCollectionHref = (registry: string, collection: string) =>
  `/registry/${encodeURIComponent(registry)}/${encodeURIComponent(collection)}`;
export const registryVersionHref = (registry: string, collection: string, version: string) =>
  `${registryCollectionHref(registry, collection)}/${encodeURIComponent(version)}`;
export const registryLineageHref = (registry: string, collection: string, version: string) =>
  `${registryVersionHref(registry, collection, version)}/lineage`;

export const projectHref = (project: string) => `/projects/${encodeURIComponent(project)}`;
export const runHref = (project: string, runId: string) =>
  `${projectHref(project)}/runs/${encodeURIComponent(runId)}`;

export const artifactsHref = (project: string) => `${projectHref(project)}/artifacts`;
export const artifactHref = (project: string, name: string) => `${artifactsHref(project)}/${encodeURIComponent(name)}`;
export const versionHref = (project: string, name: string, version: string) =>
  `${artifactHref(project, name)}/${encodeURIComponent(version)}`;
export const runDiffHref = (project: string, a: string, b: string) =>
  `${projectHref(project)}/run-diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
export const runLineageHref = (project: string, runId: string) => `${runHref(project, runId)}/lineage`;
export const versionLineageHref = (project: string, name: string, version: string) =>
  `${versionHref(project, name, version)}/lineage`;
export const tracesHref = (project: string) => `${projectHref(project)}/traces`;
export const traceHref = (project: string, traceId: string) => `${tracesHref(project)}/${encodeURIComponent(traceId)}`;
export const sweepHref = (project: string, sweepId: string) =>
  `${projectHref(project)}/sweeps/${encodeURIComponent(sweepId)}`;

export const reportsHref = (project: string) => `${projectHref(project)}/reports`;
export const reportHref = (project: string, id: string | number) => `${reportsHref(project)}/${encodeURIComponent(id)}`;
export const reportEditHref = (project: string, id: string | number) => `${reportHref(project, id)}/edit`;

let onNavigate: () => void = () => {};

export function startRouter(render: () => void): void {
  onNavigate = render;
  window.addEventListener("popstate", render);
  document.addEventListener("click", (event) => {
    const link = (event.target as HTMLElement).closest("a[data-link]") as HTMLAnchorElement | null;
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(link.getAttribute("href")!);
  });
  render();
}

export function navigate(href: string): void {
  history.pushState(null, "", href);
  onNavigate();
}

/** The query string as a map; `setQuery` writes it back without a new history entry. */
export function readQuery(): URLSearchParams {
  return new URLSearchParams(location.search);
}

export function setQuery(changes: Record<string, string | null>): void {
  const params = readQuery();
  for (const [name, value] of Object.entries(changes)) {
    if (value === null || value === "") params.delete(name);
    else params.set(name, value);
  }
  const text = params.toString();
  history.replaceState(null, "", location.pathname + (text ? "?" + text : ""));
}
