// The artifact pages' part of main.ts: which page a route shows, and its breadcrumbs.

import { h } from "../dom";
import { artifactHref, artifactsHref, isArtifactRoute, projectHref, runHref, versionHref, type ArtifactRoute } from "../router";
import { lineagePage } from "./artifact-lineage";
import { artifactsPage, collectionPage, versionPage } from "./artifacts";

export function artifactPage(root: HTMLElement, route: ArtifactRoute): Promise<() => void> {
  if (route.page === "artifacts") return artifactsPage(root, route.project);
  if (route.page === "artifact") return collectionPage(root, route.project, route.name);
  if (route.page === "artifact-version") return versionPage(root, route.project, route.name, route.version);
  return lineagePage(root, route.project, route);
}

const link = (href: string, text: string) => h("a", { href, "data-link": true, text });

export function artifactCrumbs(route: { page: string }): (HTMLElement | string)[] {
  if (!isArtifactRoute(route)) return [];
  const r = route;
  const crumbs: (HTMLElement | string)[] = [link(projectHref(r.project), r.project)];
  if (r.page === "lineage" && r.runId) return [...crumbs, " / ", link(runHref(r.project, r.runId), r.runId), " / lineage"];
  crumbs.push(" / ", link(artifactsHref(r.project), "artifacts"));
  const name = "name" in r ? r.name : undefined;
  const version = "version" in r ? r.version : undefined;
  if (name) crumbs.push(" / ", link(artifactHref(r.project, name), name));
  if (name && version) crumbs.push(":", link(versionHref(r.project, name, version), version));
  if (r.page === "lineage") crumbs.push(" / lineage");
  return crumbs;
}
