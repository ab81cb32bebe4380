import "uplot/dist/uPlot.min.css";
import "./style.css";

import { ApiError } from "./api";
import { h } from "./dom";
import { projectPage } from "./pages/project";
import { projectsPage } from "./pages/projects";
import { runPage } from "./pages/run";
import { runDiffPage } from "./pages/run-diff";
import { artifactCrumbs, artifactPage } from "./pages/artifact-routes";
import { registryPage } from "./pages/registry";
import { sweepPage } from "./pages/sweep";
import { tablePage } from "./pages/table";
import { reportPage } from "./pages/report";
import { reportEditPage } from "./pages/report-edit";
import { reportsPage } from "./pages/reports";
import { tracePage, tracesPage } from "./pages/traces";
import { bootSnapshot, snapshotElement } from "./reports/snapshot";
import { reportHref, reportsHref, runHref } from "./router";
import { isArtifactRoute, isRegistryRoute, parseRoute, projectHref, registriesHref, registryCollectionHref, startRouter, tracesHref } from "./router";

const app = document.getElementById("app")!;
const crumbs = document.getElementById("crumbs")!;
let cleanup: () => void = () => {};
let current = 0;

async function render(): Promise<void> {
  cleanup();
  cleanup = () => {};
  const mine = ++current;
  const route = parseRoute(location.pathname);
  crumbs.replaceChildren(
    ...(route.page === "project" || route.page === "run" || route.page === "sweep" || route.page === "table" ||
      route.page === "traces" || route.page === "trace" || route.page === "reports" || route.page === "report" ||
      route.page === "report-edit" || route.page === "run-diff"
      ? [h("a", { href: projectHref(route.project), "data-link": true, text: route.project })]
      : []),
    ...(route.page === "traces" ? [h("span", { text: " / traces" })] : []),
    ...(route.page === "trace"
      ? [h("span", { text: " / " }), h("a", { href: tracesHref(route.project), "data-link": true, text: "traces" }), h("span", { text: ` / ${route.traceId.slice(0, 12)}` })]
      : []),
    ...(route.page === "reports" ? [h("span", { text: " / reports" })] : []),
    ...(route.page === "report" || route.page === "report-edit"
      ? [h("span", { text: " / " }), h("a", { href: reportsHref(route.project), "data-link": true, text: "reports" }),
         h("span", { text: " / " }), h("a", { href: reportHref(route.project, route.reportId), "data-link": true, text: route.reportId }),
         ...(route.page === "report-edit" ? [h("span", { text: " / edit" })] : [])]
      : []),
    ...(route.page === "run" ? [h("span", { text: ` / ${route.runId}` })] : []),
    ...(route.page === "run-diff" ? [h("span", { text: ` / compare ${route.a} with ${route.b}` })] : []),
    ...(route.page === "table"
      ? [h("span", { text: " / " }), h("a", { href: runHref(route.project, route.runId), "data-link": true, text: route.runId }), h("span", { text: ` / ${route.key}` })]
      : []),
    ...artifactCrumbs(route),
    ...(route.page === "sweep" ? [h("span", { text: ` / sweep ${route.sweepId}` })] : []),
    ...(isRegistryRoute(route) && route.page !== "registries" ? [h("a", { href: registriesHref, "data-link": true, text: "registry" })] : []),
    ...(route.page === "registry-version" || route.page === "registry-lineage"
      ? [h("span", { text: " / " }), h("a", { href: registryCollectionHref(route.registry, route.collection), "data-link": true, text: `${route.registry}/${route.collection}` }), h("span", { text: ` / ${route.version}` })]
      : []),
    ...(route.page === "registry-collection" ? [h("span", { text: ` / ${route.registry}/${route.collection}` })] : []),
    ...(route.page === "registry-requests" ? [h("span", { text: " / promotion requests" })] : []),
  );
  try {
    let stop: () => void;
    if (route.page === "projects") stop = await projectsPage(app);
    else if (route.page === "project") stop = await projectPage(app, route.project);
    else if (route.page === "run") stop = await runPage(app, route.project, route.runId);
    else if (route.page === "run-diff") stop = await runDiffPage(app, route.project, route.a, route.b);
    else if (isArtifactRoute(route)) stop = await artifactPage(app, route);
    else if (isRegistryRoute(route)) stop = await registryPage(app, route);
    else if (route.page === "table") stop = await tablePage(app, route.project, route.runId, route.key);
    else if (route.page === "sweep") stop = await sweepPage(app, route.project, route.sweepId);
    else if (route.page === "traces") stop = await tracesPage(app, route.project);
    else if (route.page === "trace") stop = await tracePage(app, route.project, route.traceId);
    else if (route.page === "reports") stop = await reportsPage(app, route.project);
    else if (route.page === "report") stop = await reportPage(app, route.project, route.reportId);
    else if (route.page === "report-edit") stop = await reportEditPage(app, route.project, route.reportId);
    else {
      app.replaceChildren(h("p.error", { text: `No page at ${route.path}` }));
      stop = () => {};
    }
    if (mine === current) cleanup = stop;
    else stop();
  } catch (error) {
    if (mine !== current) return;
    const message = error instanceof ApiError ? `${error.message} (HTTP ${error.status})` : String(error);
    app.replaceChildren(h("p.error", { text: message }));
  }
}

// An exported report (tracklet/reports/export.py, reports/snapshot.ts) carries its data: draw it, fetch nothing.
const snapshot = snapshotElement();
if (snapshot) {
  bootSnapshot(app, snapshot).catch((error) => app.replaceChildren(h("p.error", { text: String(error) })));
} else {
  startRouter(() => void render());
}
