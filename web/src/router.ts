// Client-side routes: /, /projects/<p>, /projects/<p>/runs/<id>. The server answers index.html for
// each, so a link (or a reload) lands on the right page; the view state lives in the query string.

export type Route =
  | { page: "projects" }
  | { page: "project"; project: string }
  | { page: "run"; project: string; runId: string }
  | { page: "missing"; path: string };

export function parseRoute(pathname: string): Route {
  const parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { page: "projects" };
  if (parts[0] === "projects" && parts.length === 2) return { page: "project", project: parts[1] };
  if (parts[0] === "projects" && parts.length === 4 && parts[2] === "runs")
    return { page: "run", project: parts[1], runId: parts[3] };
  return { page: "missing", path: pathname };
}

export const projectHref = (project: string) => `/projects/${encodeURIComponent(project)}`;
export const runHref = (project: string, runId: string) =>
  `${projectHref(project)}/runs/${encodeURIComponent(runId)}`;

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
