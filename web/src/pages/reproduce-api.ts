// The reproduce plan and run comparison routes (tracklet/server/routes_reproduce.py); shapes from
// the generated api-types.ts, requests through api.ts's `get` (the key, errors).

import { get } from "../api";
import type { components } from "../api-types";

type Schemas = components["schemas"];
export type ReproducePlan = Schemas["ReproducePlanResponse"];
export type PlanSeed = Schemas["PlanSeed"];
export type RunDiff = Schemas["RunDiffResponse"];
export type ValueChange = Schemas["ValueChange"];

const enc = encodeURIComponent;

export const reproduceApi = {
  plan: (project: string, runId: string, env: string) =>
    get<ReproducePlan>(`/runs/${enc(project)}/${enc(runId)}/reproduce-plan`, { env }),
  diff: (project: string, a: string, b: string) => get<RunDiff>(`/projects/${enc(project)}/run-diff`, { a, b }),
};
