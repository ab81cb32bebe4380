// The model registry API (tracklet/server/routes_registry.py) as the registry pages use it; shapes
// from the generated api-types.ts, requests through api.ts's `get` and `send` (the key, errors).

import { get, send } from "../api";
import type { components, paths } from "../api-types";

type Schemas = components["schemas"];
type Body<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { "application/json": infer T } } } };
}
  ? T
  : never;

export type RegistryCollection = Schemas["RegistryCollection"];
export type RegistryLink = Schemas["RegistryLink"];
export type AliasMove = Schemas["AliasMove"];
export type PromotionRequest = Schemas["PromotionRequestModel"];
export type Me = Schemas["Me"];
/** PUT .../protections/{alias}: the policy as a whole (approvals 0 lifts it). */
export type ProtectBody = { approvals: number; approver_role?: string; check?: number; check_timeout?: number };
/** Registry roles, lowest first: a protection's approvers hold its role or a higher one. */
export const APPROVER_ROLES = ["viewer", "member", "admin"] as const;

const enc = encodeURIComponent;
const collectionPath = (registry: string, collection: string) => `/registries/${enc(registry)}/collections/${enc(collection)}`;

export const registryApi = {
  me: () => get<Me>("/me"),
  collections: () => get<Body<"/api/v1/registries">>("/registries"),
  versions: (registry: string, collection: string) =>
    get<Body<"/api/v1/registries/{registry}/collections/{collection}/versions">>(`${collectionPath(registry, collection)}/versions`),
  version: (registry: string, collection: string, selector: string) =>
    get<Body<"/api/v1/registries/{registry}/collections/{collection}/versions/{selector}">>(
      `${collectionPath(registry, collection)}/versions/${enc(selector)}`,
    ),
  history: (registry: string, collection: string) =>
    get<Body<"/api/v1/registries/{registry}/collections/{collection}/history">>(`${collectionPath(registry, collection)}/history`),
  protections: (registry: string, collection: string) =>
    get<Body<"/api/v1/registries/{registry}/collections/{collection}/protections">>(`${collectionPath(registry, collection)}/protections`),
  card: (registry: string, collection: string, selector: string) =>
    get<Body<"/api/v1/registries/{registry}/collections/{collection}/versions/{selector}/card">>(
      `${collectionPath(registry, collection)}/versions/${enc(selector)}/card`,
    ),
  requests: (query: { registry?: string; state?: string }) => get<Body<"/api/v1/registry-requests">>("/registry-requests", query),
  review: (requestId: number, decision: "approve" | "reject", comment: string) =>
    send<Schemas["PromotionRequestResponse"]>("POST", `/registry-requests/${requestId}/reviews`, { decision, comment }),
  lineage: (registry: string, collection: string, selector: string, hops: number) =>
    get<Body<"/api/v1/registries/{registry}/collections/{collection}/versions/{selector}/lineage">>(
      `${collectionPath(registry, collection)}/versions/${enc(selector)}/lineage`,
      { hops },
    ),
  protect: (registry: string, collection: string, alias: string, body: ProtectBody) =>
    send<Schemas["ProtectionResponse"]>("PUT", `${collectionPath(registry, collection)}/protections/${enc(alias)}`, body),
  members: (registry: string) => get<Body<"/api/v1/registries/{registry}/members">>(`/registries/${enc(registry)}/members`),
  setMember: (registry: string, user: string, role: string) =>
    send<Schemas["RegistryMembersResponse"]>("PUT", `/registries/${enc(registry)}/members/${enc(user)}`, { role }),
  removeMember: (registry: string, user: string) =>
    send<Schemas["RegistryMembersResponse"]>("DELETE", `/registries/${enc(registry)}/members/${enc(user)}`),
};

export type Protection = Schemas["ProtectionResponse"];
export type RegistryMember = Schemas["RegistryMember"];
