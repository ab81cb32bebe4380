// The run page's "Reproduce" button and "compare with…" control (#21, docs/reproduce.md). The
// button asks the server for the dry-run plan (what would be checked out, applied, restored,
// installed and run; what can't be restored and why) and shows it with the exact command to copy;
// nothing runs on the server. "Compare with…" opens the side-by-side page (pages/run-diff.ts).

import { api } from "../api";
import { h } from "../dom";
import { navigate, runDiffHref } from "../router";
import { reproduceApi, type PlanSeed, type ReproducePlan } from "./reproduce-api";

function list(title: string, items: string[], className: string): HTMLElement | "" {
  if (!items.length) return "";
  return h(`div.${className}`, {}, h("h3", { text: title }), h("ul", {}, ...items.map((text) => h("li", { text }))));
}

/** The seeds the run's program set, in order (it sets them again as it runs), and what of them
 * isn't known: calls past the recorder's cap, seeds given before `import tracklet`, other ranks'. */
function seedsView(plan: ReproducePlan): HTMLElement | "" {
  const notes: string[] = [];
  if (plan.seeds_dropped) notes.push(`${plan.seeds_dropped} more seeding call(s) past the recorder's cap: not recorded`);
  if (plan.seeds_unknown.length) notes.push(`Not known: any seed given to ${plan.seeds_unknown.join(", ")} before \`import tracklet\``);
  if (plan.ranks_unrecorded.length) notes.push(`Rank(s) ${plan.ranks_unrecorded.join(", ")}: not known (they recorded no run of their own)`);
  if (!plan.seeds.length && !plan.rank_seeds.length && !notes.length) return "";
  const row = (seed: PlanSeed, rank?: string) =>
    h("tr", { "data-api": seed.api, "data-rank": rank ?? plan.rank }, ...(plan.rank ? [h("td.rank", { text: rank ?? plan.rank })] : []),
      h("td.api", {}, h("code", { text: seed.api })), h("td.value", {}, h("code", { text: seed.value })));
  const rows = [...plan.seeds.map((seed) => row(seed)), ...plan.rank_seeds.flatMap((other) => other.seeds.map((seed) => row(seed, other.rank)))];
  const heads = [...(plan.rank ? ["rank"] : []), "set with", "seed"];
  return h(
    "div.reproduce-seeds",
    {},
    h("h3", { text: "Seeds (set by the program: set again as it runs)" }),
    rows.length ? h("table.seeds", {}, h("thead", {}, h("tr", {}, ...heads.map((text) => h("th", { text })))), h("tbody", {}, ...rows)) : h("p.muted", { text: "The program set no seed." }),
    ...notes.map((text) => h("p.muted.seeds-note", { text })),
  );
}

function planView(plan: ReproducePlan): HTMLElement {
  const command = h("code.reproduce-command", { text: plan.command });
  const copy = h("button.copy-command", { type: "button", text: "Copy" });
  copy.addEventListener("click", () => {
    void navigator.clipboard?.writeText(plan.command).then(
      () => (copy.textContent = "Copied"),
      () => (copy.textContent = "Select and copy"),
    );
  });
  return h(
    "div.reproduce-plan",
    { "data-ok": plan.ok ? "true" : "false" },
    h("p", {}, plan.ok ? "Run this where the data root and the repository are:" : "Reproducing stops before doing anything unless --force is added:"),
    h("div.command-row", {}, command, copy),
    list("Cannot be restored", plan.problems, "reproduce-problems"),
    list("Differs from the original machine", plan.differences, "reproduce-differences"),
    seedsView(plan),
    h("h3", { text: "Plan" }),
    h("pre.reproduce-steps", { text: plan.plan }),
  );
}

/** The card: a Reproduce button (with the environment to use) and a compare-with-run control. */
export function reproduceCard(project: string, runId: string): HTMLElement {
  const body = h("div.reproduce-body");
  const env = h("select.reproduce-env", {}, ...["current", "venv", "uv"].map((name) => h("option", { value: name, text: name })));
  const button = h("button.reproduce", { type: "button", text: "Reproduce…" });
  button.addEventListener("click", async () => {
    body.replaceChildren(h("p.muted", { text: "Making the plan (a dry run)…" }));
    try {
      body.replaceChildren(planView(await reproduceApi.plan(project, runId, env.value)));
    } catch (error) {
      body.replaceChildren(h("p.error", { text: `No plan: ${(error as Error).message}` }));
    }
  });
  const other = h("select.compare-with", {}, h("option", { value: "", text: "compare with…" }));
  void api.runs(project, { limit: 500 }).then(({ runs }) => {
    for (const row of runs) if (row.run_id !== runId) other.append(h("option", { value: row.run_id, text: `${row.name || row.run_id} (${row.run_id})` }));
  }).catch(() => undefined);
  other.addEventListener("change", () => {
    if (!other.value) return;
    navigate(runDiffHref(project, runId, other.value));
  });
  return h("section.card.wide.reproduce-card", {}, h("h2", { text: "Reproduce and compare" }),
    h("div.reproduce-controls", {}, button, h("label", {}, "environment ", env), other), body);
}
