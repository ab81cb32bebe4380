// Model registry pages (docs/registry.md): every registry's collections (/registry), a collection's
// versions with their aliases, its alias history and pending promotion requests
// (/registry/<r>/<collection>), one version with its model card and a link to the lineage of the
// artifact version it links (/registry/<r>/<collection>/<vN>), and the promotion requests
// (/registry/requests), which a registry admin other than the requester approves or rejects here.
// A registry admin also manages the registry's members' roles (/registry) and the collection's
// protected aliases: approvals needed, a webhook check and its timeout (/registry/<r>/<collection>);
// others see no such controls (and the server refuses them: 403). The registered model's lineage
// graph is registry-lineage.ts (/registry/<r>/<collection>/<vN>/lineage).

import "./artifacts.css";
import "./registry.css";

import { ApiError } from "../api";
import { h } from "../dom";
import { fmtBytes, fmtTime } from "../format";
import {
  readQuery,
  registryCollectionHref,
  registryLineageHref,
  registryRequestsHref,
  registryVersionHref,
  runHref,
  setQuery,
  versionHref,
  type RegistryRoute,
} from "../router";
import { aliasChips, shortDigest } from "./artifacts";
import { APPROVER_ROLES, registryApi, type AliasMove, type Me, type PromotionRequest, type ProtectBody, type Protection, type RegistryLink } from "./registry-api";
import { registryLineagePage } from "./registry-lineage";

export function registryPage(root: HTMLElement, route: RegistryRoute): Promise<() => void> {
  if (route.page === "registries") return registriesPage(root);
  if (route.page === "registry-requests") return requestsPage(root);
  if (route.page === "registry-collection") return collectionPage(root, route.registry, route.collection);
  if (route.page === "registry-lineage") return registryLineagePage(root, route.registry, route.collection, route.version);
  return versionPage(root, route.registry, route.collection, route.version);
}

const vname = (n: number | null | undefined) => (n === null || n === undefined ? "–" : `v${n}`);

function sourceLink(link: RegistryLink): HTMLElement {
  return h("a.source-link", {
    href: versionHref(link.source_project, link.source_name, `v${link.source_version}`),
    "data-link": true,
    text: link.source,
  });
}

async function registriesPage(root: HTMLElement): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading the model registry…" }));
  const [{ collections }, pending] = await Promise.all([registryApi.collections(), registryApi.requests({})]);
  const byRegistry = new Map<string, typeof collections>();
  for (const c of collections) (byRegistry.get(c.registry) ?? byRegistry.set(c.registry, []).get(c.registry)!).push(c);
  const sections = [...byRegistry.keys()].sort().map((registry) => {
    const items = byRegistry.get(registry)!;
    return h(
      "section.card.wide",
      { "data-registry": registry },
      h("div.card-head", {}, h("h2", { text: registry }), h("span.role", { text: `your role: ${items[0].role}` })),
      items[0].role === "admin" ? membersPanel(registry) : null,
      h(
        "table.artifact-table.registry-collections",
        {},
        h("tr", {}, ...["Collection", "Type", "Versions", "Latest", "Aliases"].map((t) => h("th", { text: t }))),
        ...items.map((c) =>
          h(
            "tr",
            { "data-collection": c.collection },
            h("td", {}, h("a", { href: registryCollectionHref(registry, c.collection), "data-link": true, text: c.collection })),
            h("td", { text: c.type }),
            h("td.num", { text: String(c.versions) }),
            h("td", {}, h("a", { href: registryVersionHref(registry, c.collection, c.latest), "data-link": true, text: c.latest })),
            h("td", {}, aliasChips(Object.keys(c.aliases).sort())),
          ),
        ),
      ),
    );
  });
  root.replaceChildren(
    h(
      "div.artifact-page.registry-page",
      {},
      h(
        "div.pane-head",
        {},
        h("h1", { text: "Model registry" }),
        h("span.count", { text: `${collections.length} collections` }),
        h("a.requests-link", { href: registryRequestsHref, "data-link": true, text: `Promotion requests (${pending.requests.length} pending)` }),
      ),
      ...(sections.length
        ? sections
        : [h("div.empty", {}, h("p", { text: "No registered models you can see." }), h("p", {}, "Link one with ", h("code", { text: 'run.link_model(path, registered_model_name="...")' }), "."))]),
    ),
  );
  return () => {};
}

/** Shows an API error under a form: its message and HTTP status. */
function showError(error: HTMLElement, failure: unknown): void {
  error.hidden = false;
  error.textContent = failure instanceof ApiError ? `${failure.message} (HTTP ${failure.status})` : String(failure);
}

/** A registry admin's members editor, folded: each member's role (change it, or take it) and a
 * form to give a user a role. Loaded when opened. */
function membersPanel(registry: string): HTMLElement {
  const body = h("div.members-body");
  const panel = h("details.registry-members", { "data-registry": registry }, h("summary", { text: "Members and roles" }), body);
  const roleSelect = (selected: string, label: string) =>
    h("select.role-select", { "aria-label": label }, ...["viewer", "member", "admin"].map((r) => h("option", { value: r, text: r, selected: r === selected })));
  const render = async () => {
    const error = h("p.error.members-error", { hidden: true });
    let members;
    try {
      ({ members } = await registryApi.members(registry));
    } catch (failure) {
      showError(error, failure);
      body.replaceChildren(error);
      return;
    }
    const change = (action: () => Promise<unknown>) => async () => {
      for (const control of body.querySelectorAll<HTMLButtonElement | HTMLSelectElement>("button, select")) control.disabled = true;
      try {
        await action();
        await render();
      } catch (failure) {
        showError(error, failure);
        for (const control of body.querySelectorAll<HTMLButtonElement | HTMLSelectElement>("button, select")) control.disabled = false;
      }
    };
    const rows = members.map((m) => {
      const select = roleSelect(m.role, `role of ${m.user}`);
      select.addEventListener("change", change(() => registryApi.setMember(registry, m.user, select.value)));
      const remove = h("button.remove-member", { type: "button", text: "Remove" });
      remove.addEventListener("click", change(() => registryApi.removeMember(registry, m.user)));
      return h("tr", { "data-member": m.user }, h("td.user", { text: m.user }), h("td", {}, select), h("td", {}, remove));
    });
    const user = h("input.new-member", { type: "text", placeholder: "user name", "aria-label": "user to add" });
    const role = roleSelect("viewer", "role to give");
    const add = h("button.add-member", { type: "button", text: "Give role" });
    add.addEventListener("click", change(() => registryApi.setMember(registry, user.value.trim(), role.value)));
    body.replaceChildren(
      h("table.artifact-table.members-table", {}, h("tr", {}, ...["User", "Role", ""].map((t) => h("th", { text: t }))), ...rows),
      h("div.member-form", {}, user, role, add),
      error,
    );
  };
  panel.addEventListener("toggle", () => {
    if ((panel as HTMLDetailsElement).open && !body.childElementCount) void render();
  });
  return panel;
}

/** A registry admin's editor of a collection's protected aliases: approvals a move needs (0
 * lifts it), the registry role that may approve (or a higher one), a webhook check (an
 * automation's id) and its timeout. */
function protectionsPanel(registry: string, collection: string, protections: Protection[], reload: () => void): HTMLElement {
  const error = h("p.error.protect-error", { hidden: true });
  const number = (cls: string, label: string, value: string, attrs: Record<string, string | number> = {}) =>
    h(`input.${cls}`, { type: "number", "aria-label": label, value, ...attrs }) as HTMLInputElement;
  const save = (alias: string, approvals: HTMLInputElement, approver: HTMLSelectElement, check: HTMLInputElement, timeout: HTMLInputElement, button: HTMLButtonElement) => async () => {
    button.disabled = true;
    try {
      const body: ProtectBody = { approvals: Number(approvals.value), approver_role: approver.value };
      if (check.value) body.check = Number(check.value);
      if (check.value && timeout.value) body.check_timeout = Number(timeout.value);
      await registryApi.protect(registry, collection, alias, body);
      reload();
    } catch (failure) {
      showError(error, failure);
      button.disabled = false;
    }
  };
  const row = (p: Protection | null) => {
    const alias = p ? null : (h("input.alias-name", { type: "text", placeholder: "alias, e.g. production", "aria-label": "alias to protect" }) as HTMLInputElement);
    const approvals = number("approvals", "approvals needed", String(p?.approvals ?? 1), { min: 0, max: 100 });
    const current = p?.approver_role ?? "admin";
    const approver = h(
      "select.approver-role",
      { "aria-label": "approver role" },
      ...APPROVER_ROLES.map((role) => h("option", { value: role, text: `${role}s or higher`, ...(role === current ? { selected: true } : {}) })),
    ) as HTMLSelectElement;
    const check = number("check", "check automation id", p?.check ? String(p.check) : "", { min: 1, placeholder: "none" });
    const timeout = number("check-timeout", "check timeout in seconds", p?.check_timeout ? String(p.check_timeout) : "", { min: 0.5, max: 120, step: 0.5, placeholder: "10" });
    const button = h("button.save-protection", { type: "button", text: p ? "Save" : "Protect" }) as HTMLButtonElement;
    button.addEventListener("click", () => {
      const name = p ? p.alias : alias!.value.trim();
      void save(name, approvals, approver, check, timeout, button)();
    });
    return h(
      "tr",
      p ? { "data-alias": p.alias } : { class: "new-protection" },
      h("td", {}, p ? aliasChips([p.alias]) : alias!),
      h("td", {}, approvals),
      h("td", {}, approver),
      h("td", {}, check),
      h("td", {}, timeout),
      h("td", {}, button),
    );
  };
  return h(
    "section.card.wide.protections-card",
    {},
    h("h2", { text: "Protected aliases" }),
    h("p.muted", { text: "Moving a protected alias opens a promotion request, approved by holders of its approver role (or a higher role) other than the requester; approvals 0 lifts the protection and its check. A check is a webhook automation that must answer 2xx within its timeout (seconds) before an approved promotion moves the alias." }),
    h(
      "table.artifact-table.protections-table",
      {},
      h("tr", {}, ...["Alias", "Approvals", "Approved by", "Check (automation #)", "Check timeout (s)", ""].map((t) => h("th", { text: t }))),
      ...protections.map((p) => row(p)),
      row(null),
    ),
    error,
  );
}

/** Pending requests as a table; who may review one (its alias's approver role or higher, not the
 * requester: the server's `may_review`) gets approve/reject. */
function requestsTable(requests: PromotionRequest[], me: Me, reload: () => void): HTMLElement {
  if (!requests.length) return h("p.muted.no-requests", { text: "No promotion requests." });
  return h(
    "table.artifact-table.promotion-requests",
    {},
    h("tr", {}, ...["#", "Collection", "Alias", "Move", "Requested by", "Reason", "Approvals", "Reviews", "State", ""].map((t) => h("th", { text: t }))),
    ...requests.map((r) => requestRow(r, me, reload)),
  );
}

function requestRow(r: PromotionRequest, me: Me, reload: () => void): HTMLElement {
  const approvals = r.reviews.filter((review) => review.decision === "approve").length;
  const actions = h("div.review-actions");
  if (r.may_review) {
    const comment = h("input.comment", { type: "text", placeholder: "comment", "aria-label": "review comment" });
    const error = h("p.error.review-error", { hidden: true });
    const decide = (decision: "approve" | "reject") => async () => {
      for (const button of actions.querySelectorAll("button")) button.disabled = true;
      try {
        await registryApi.review(r.id, decision, comment.value);
        reload();
      } catch (failure) {
        error.hidden = false;
        error.textContent = failure instanceof ApiError ? `${failure.message} (HTTP ${failure.status})` : String(failure);
        for (const button of actions.querySelectorAll("button")) button.disabled = false;
      }
    };
    const approve = h("button.approve", { type: "button", text: "Approve" });
    const reject = h("button.reject", { type: "button", text: "Reject" });
    approve.addEventListener("click", decide("approve"));
    reject.addEventListener("click", decide("reject"));
    actions.append(comment, approve, reject, error);
  } else if (r.state === "pending") {
    actions.append(h("span.muted.cannot-review", {
      text: r.requester === me.user
        ? "your request: someone else reviews it"
        : r.reviews.some((review) => review.reviewer === me.user)
          ? "you reviewed it"
          : `a registry ${r.approver_role} (or higher) reviews it`,
    }));
  }
  return h(
    "tr",
    { "data-request": String(r.id), "data-state": r.state },
    h("td.num", { text: `#${r.id}` }),
    h("td", {}, h("a", { href: registryCollectionHref(r.registry, r.collection), "data-link": true, text: `${r.registry}/${r.collection}` })),
    h("td", {}, aliasChips([r.alias])),
    h("td.move", { text: `${vname(r.from_version)} → ${vname(r.to_version)}` }),
    h("td.requester", { text: r.requester }),
    h("td.reason", { text: r.reason }),
    h("td.num.approvals", { text: `${approvals}/${r.approvals_required}`, title: `approvals from the ${r.approver_role} role or higher` }),
    h(
      "td.reviews",
      {},
      ...r.reviews.map((review) =>
        h("div.review", { "data-decision": review.decision }, `${review.reviewer}: ${review.decision}`, review.comment ? ` (“${review.comment}”)` : ""),
      ),
    ),
    h("td", {}, h("span.state", { "data-state": r.state, text: r.state })),
    h("td.actions", {}, actions),
  );
}

const STATES = ["pending", "approved", "rejected", "superseded"];

async function requestsPage(root: HTMLElement): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading promotion requests…" }));
  const state = STATES.includes(readQuery().get("state") ?? "") ? readQuery().get("state")! : "pending";
  const [me, { requests }] = await Promise.all([registryApi.me(), registryApi.requests({ state })]);
  const select = h("select.state-filter", { "aria-label": "state" }, ...STATES.map((s) => h("option", { value: s, text: s, selected: s === state })));
  select.addEventListener("change", () => {
    setQuery({ state: select.value === "pending" ? null : select.value });
    void requestsPage(root);
  });
  root.replaceChildren(
    h(
      "div.artifact-page.registry-page",
      {},
      h("div.pane-head", {}, h("h1", { text: "Promotion requests" }), select, h("span.count", { text: `${requests.length} ${state}` })),
      h("section.card.wide", {}, requestsTable(requests, me, () => void requestsPage(root))),
    ),
  );
  return () => {};
}

function historyTable(events: AliasMove[]): HTMLElement {
  if (!events.length) return h("p.muted", { text: "No alias has moved yet." });
  return h(
    "table.artifact-table.alias-history",
    {},
    h("tr", {}, ...["When", "Alias", "Move", "By", "Reason", "Request"].map((t) => h("th", { text: t }))),
    ...[...events].reverse().map((e) =>
      h(
        "tr",
        { "data-alias": e.alias, "data-event": String(e.id) },
        h("td.muted", { text: fmtTime(e.at, true) }),
        h("td", {}, aliasChips([e.alias])),
        h("td.move", { text: `${vname(e.from_version)} → ${vname(e.to_version)}` }),
        h("td.actor", { text: e.actor }),
        h("td.reason", { text: e.reason }),
        h("td.request", { text: e.request_id === null ? "" : `#${e.request_id}` }),
      ),
    ),
  );
}

async function collectionPage(root: HTMLElement, registry: string, collection: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading the collection…" }));
  const [me, { links }, { events }, { requests }, { protections }, { collections }] = await Promise.all([
    registryApi.me(),
    registryApi.versions(registry, collection),
    registryApi.history(registry, collection),
    registryApi.requests({ registry }),
    registryApi.protections(registry, collection),
    registryApi.collections(),
  ]);
  const role = collections.find((c) => c.registry === registry && c.collection === collection)?.role;
  const mine = requests.filter((r) => r.collection === collection);
  const aliasFilter = readQuery().get("alias") ?? "";
  const aliases = [...new Set(events.map((e) => e.alias))].sort();
  const select = h(
    "select.alias-filter",
    { "aria-label": "alias" },
    h("option", { value: "", text: "every alias" }),
    ...aliases.map((a) => h("option", { value: a, text: a, selected: a === aliasFilter })),
  );
  const history = h("div.history-table", {}, historyTable(events.filter((e) => !aliasFilter || e.alias === aliasFilter)));
  select.addEventListener("change", () => {
    setQuery({ alias: select.value || null });
    history.replaceChildren(historyTable(events.filter((e) => !select.value || e.alias === select.value)));
  });
  const rows = [...links].reverse().map((link) =>
    h(
      "tr",
      { "data-version": `v${link.version}` },
      h("td", {}, h("a", { href: registryVersionHref(registry, collection, `v${link.version}`), "data-link": true, text: `v${link.version}` })),
      h("td", {}, aliasChips(link.aliases.filter((a) => a !== `v${link.version}`))),
      h("td", {}, sourceLink(link)),
      h("td", {}, shortDigest(link.source_digest)),
      h("td.linked-by", { text: link.linked_by }),
      h("td.muted", { text: fmtTime(link.linked_at) }),
    ),
  );
  root.replaceChildren(
    h(
      "div.artifact-page.registry-page",
      {},
      h(
        "div.pane-head",
        {},
        h("h1", { text: `${registry}/${collection}` }),
        h("span.type", { text: links[0]?.type ?? "" }),
        h("span.count", { text: `${links.length} versions` }),
        ...protections.map((p) =>
          h("span.protection", {
            "data-alias": p.alias,
            title: "moving it takes a promotion request approved by others",
            text: `🔒 ${p.alias}: ${p.approvals} approval${p.approvals === 1 ? "" : "s"} by ${p.approver_role}s${p.check ? ` + check #${p.check} (${p.check_timeout} s)` : ""}`,
          }),
        ),
      ),
      role === "admin" ? protectionsPanel(registry, collection, protections, () => void collectionPage(root, registry, collection)) : null,
      h(
        "section.card.wide.requests-card",
        {},
        h("h2", { text: "Pending promotion requests" }),
        requestsTable(mine, me, () => void collectionPage(root, registry, collection)),
      ),
      h(
        "section.card.wide",
        {},
        h("h2", { text: "Versions" }),
        h(
          "table.artifact-table.registry-versions",
          {},
          h("tr", {}, ...["Version", "Aliases", "Artifact", "Digest", "Linked by", "Linked"].map((t) => h("th", { text: t }))),
          ...rows,
        ),
      ),
      h("section.card.wide", {}, h("div.card-head", {}, h("h2", { text: "Alias history" }), select), history),
    ),
  );
  return () => {};
}

async function versionPage(root: HTMLElement, registry: string, collection: string, selector: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading the version…" }));
  const [{ link, version }, { card }] = await Promise.all([
    registryApi.version(registry, collection, selector),
    registryApi.card(registry, collection, selector),
  ]);
  // files_deleted: its artifact version was deleted (break_registry_links); the registry keeps the link.
  const loggedBy = version?.logged_by && version.logged_by.includes("/") ? version.logged_by.split("/") : null;
  const row = (label: string, field: string, value: Node | string) => h("tr", { "data-field": field }, h("th", { text: label }), h("td", {}, value));
  root.replaceChildren(
    h(
      "div.artifact-page.registry-page",
      {},
      h(
        "div.pane-head",
        {},
        h("h1", { text: link.path }),
        h("span.type", { text: link.type }),
        h("a.lineage-link", {
          href: registryLineageHref(registry, collection, `v${link.version}`),
          "data-link": true,
          text: "Lineage graph →",
        }),
      ),
      h(
        "div.columns",
        {},
        h(
          "section.card.version-details",
          {},
          h("h2", { text: "Version" }),
          h(
            "table.artifact-table",
            {},
            row("Aliases", "aliases", aliasChips(link.aliases)),
            row("Artifact", "source", sourceLink(link)),
            row("Digest", "digest", h("code.digest.full", { text: link.source_digest })),
            version
              ? row("Size", "size", `${fmtBytes(version.size)} in ${version.file_count} files`)
              : row("Files", "files-deleted", h("span.files-deleted", { text: `deleted: ${link.source} was deleted, so this version has no files` })),
            row("Produced by", "run", loggedBy ? h("a.run-link", { href: runHref(loggedBy[0], loggedBy[1]), "data-link": true, text: version?.logged_by ?? "" }) : "–"),
            row("Linked by", "linked_by", `${link.linked_by}, ${fmtTime(link.linked_at)}`),
          ),
        ),
        h(
          "section.card.model-card",
          {},
          h("div.card-head", {}, h("h2", { text: "Model card" }), card ? h("span.muted.card-revision", { text: `revision ${card.revision} by ${card.author}` }) : null),
          card
            ? h("pre.card-text", { text: card.text })
            : h("p.muted.no-card", {}, "No model card yet: ", h("code", { text: `tracklet registry card ${registry}/${collection}:v${link.version} --generate --save` })),
        ),
      ),
    ),
  );
  return () => {};
}
