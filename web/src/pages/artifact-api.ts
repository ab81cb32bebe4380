// The artifact read API (tracklet/server/routes_artifacts_read.py) as the artifact pages use it;
// shapes from the generated api-types.ts, requests through api.ts's `get` (the key, errors).

import { get } from "../api";
import type { components, paths } from "../api-types";

type Schemas = components["schemas"];
type Body<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { "application/json": infer T } } } };
}
  ? T
  : never;

export type ArtifactCollection = Schemas["ArtifactCollection"];
export type ArtifactVersion = Schemas["ArtifactVersion"];
export type DamagedVersion = Schemas["DamagedVersion"];
export type ArtifactFile = Schemas["ArtifactFileEntry"];
export type ArtifactDir = Schemas["ArtifactDirEntry"];
export type RunArtifact = Schemas["RunArtifact"];
export type LineageRun = Schemas["LineageRun"];
export type LineageNode = Schemas["LineageNode"];
export type LineageEdge = Schemas["LineageEdge"];
export type Lineage = Schemas["LineageResponse"];

const enc = encodeURIComponent;
const collection = (project: string, name: string) => `/projects/${enc(project)}/artifacts/${enc(name)}`;

export const artifactApi = {
  collections: (project: string) =>
    get<Body<"/api/v1/projects/{project}/artifacts">>(`/projects/${enc(project)}/artifacts`),
  versions: (project: string, name: string, query: { offset?: number; limit?: number } = {}) =>
    get<Body<"/api/v1/projects/{project}/artifacts/{name}/versions">>(`${collection(project, name)}/versions`, query),
  version: (project: string, name: string, selector: string) =>
    get<Body<"/api/v1/projects/{project}/artifacts/{name}/versions/{selector}">>(
      `${collection(project, name)}/versions/${enc(selector)}`,
    ),
  files: (project: string, name: string, selector: string, query: { dir?: string; q?: string; offset?: number; limit?: number }) =>
    get<Body<"/api/v1/projects/{project}/artifacts/{name}/versions/{selector}/files">>(
      `${collection(project, name)}/versions/${enc(selector)}/files`,
      query,
    ),
  runArtifacts: (project: string, runId: string) =>
    get<Body<"/api/v1/runs/{project}/{run_id}/artifacts">>(`/runs/${enc(project)}/${enc(runId)}/artifacts`),
  lineage: (project: string, query: { run?: string; artifact?: string; hops?: number; max_nodes?: number }) =>
    get<Body<"/api/v1/projects/{project}/lineage">>(`/projects/${enc(project)}/lineage`, query),
};
