// A run page's "Artifacts" card: the versions the run logged and used (links to their pages; a
// run table it used, W&B's `run_table` artifact, to its lineage graph, which leads to the run that
// logged it) and a link to its lineage graph. Shown only when the run logged or used any.

import { h } from "../dom";
import { runLineageHref, versionHref, versionLineageHref } from "../router";
import { artifactApi, type RunArtifact } from "./artifact-api";
import { aliasChips, shortDigest } from "./artifacts";

function list(project: string, items: RunArtifact[], which: string): HTMLElement {
  if (!items.length) return h("p.empty", { "data-list": which, text: "None." });
  return h(
    "table.artifact-table.run-artifacts",
    { "data-list": which },
    ...items.map((a) =>
      h(
        "tr",
        { "data-artifact": `${a.project}/${a.name}:${a.version}` },
        h("td", {}, h("a", { href: (a.type === "run_table" ? versionLineageHref : versionHref)(a.project, a.name, a.version), "data-link": true, text: `${a.project === project ? "" : a.project + "/"}${a.name}:${a.version}` })),
        h("td.muted", { text: a.type }),
        h("td", {}, aliasChips(a.aliases.filter((alias) => alias !== a.version))),
        h("td", {}, shortDigest(a.digest)),
      ),
    ),
  );
}

/** The card (hidden until the run turns out to have artifacts). */
export function runArtifactsCard(project: string, runId: string): HTMLElement {
  const card = h("section.card.wide.run-artifacts-card", { hidden: true });
  void artifactApi
    .runArtifacts(project, runId)
    .then(({ logged, used }) => {
      if (!logged.length && !used.length) return;
      card.replaceChildren(
        h("div.card-head", {}, h("h2", { text: "Artifacts" }),
          h("a.lineage-link", { href: runLineageHref(project, runId), "data-link": true, text: "Lineage graph →" })),
        h("div.columns.two", {}, h("div", {}, h("h3", { text: `Used (${used.length})` }), list(project, used, "used")),
          h("div", {}, h("h3", { text: `Logged (${logged.length})` }), list(project, logged, "logged"))),
      );
      card.hidden = false;
    })
    .catch(() => {
      /* a server without the artifact routes: no card */
    });
  return card;
}
