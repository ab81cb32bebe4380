// Media across runs (tracklet/server/routes_media_compare.py) as the Compare tab's media grid uses
// it; shapes from the generated api-types.ts, requests through api.ts's `get` (the key, errors).

import { get } from "../api";
import type { components } from "../api-types";

type Schemas = components["schemas"];

export type MediaKeySummary = Schemas["MediaKeySummary"];
export type MediaKeys = Schemas["MediaKeysResponse"];
export type MediaGrid = Schemas["MediaGridResponse"];
export type RunMediaAtStep = Schemas["RunMediaAtStep"];

/** Runs per request: the server's bound (MAX_RUNS). */
export const MAX_GRID_RUNS = 20;

const enc = encodeURIComponent;

export interface GridQuery {
  runs: string[];
  key: string;
  step: number | string | null; // each run's latest step at or before it (null: each run's last); a string: exact past 2**53
  offset?: number;
  limit?: number;
  steps: boolean; // also list each run's steps of the key
}

export const mediaCompareApi = {
  keys: (project: string, runs: string[]) =>
    get<MediaKeys>(`/projects/${enc(project)}/media/keys`, { runs: runs.join(",") }),
  grid: (project: string, query: GridQuery, signal?: AbortSignal) =>
    get<MediaGrid>(`/projects/${enc(project)}/media`, { ...query, runs: query.runs.join(",") }, signal),
};
