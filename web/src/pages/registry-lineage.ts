// The lineage graph of a registered model (/registry/<r>/<collection>/<vN>/lineage): the registry
// version, the artifact version it links, the run that logged it, the dataset versions that run
// used and further hops, and the code commit each run ran (server/registry_lineage.py), drawn by
// lineage.ts as the artifact pages' graphs are. Data flows left to right, into the registry version.
// A version whose artifact version was deleted (break_registry_links) keeps its graph: that node is
// drawn dashed, "files deleted", and a note says so.

import { h } from "../dom";
import { lineageSvg, type GraphNode } from "../lineage";
import { readQuery, registryVersionHref, runHref, setQuery, versionHref } from "../router";
import type { LineageNode } from "./artifact-api";
import { registryApi } from "./registry-api";

const DEFAULT_HOPS = 3;

function graphNode(node: LineageNode, root: string, registry: string, collection: string): GraphNode {
  const base = { id: node.id, kind: node.kind, root: node.id === root };
  if (node.kind === "registry") {
    const aliases = (node.aliases ?? []).filter((a) => a !== node.version);
    return { ...base, title: `${node.name}:${node.version}`, subtitle: ["registered", ...aliases].join(" · "), href: registryVersionHref(registry, collection, node.version!) };
  }
  if (node.kind === "commit") {
    const detail = [node.branch, node.dirty ? "dirty" : "", node.remote].filter(Boolean).join(" · ");
    // A commit has no page here: its node links to itself (a copyable id in the title).
    return { ...base, title: `commit ${node.name}`, subtitle: detail || node.commit!, href: "#" + node.id };
  }
  if (node.kind === "run") {
    return { ...base, title: node.name || node.run_id!, subtitle: `${node.project}/${node.run_id} · ${node.state}`, href: runHref(node.project, node.run_id!) };
  }
  const aliases = (node.aliases ?? []).filter((a) => a !== node.version);
  if (node.files_deleted) {
    // Deleted: the registered one (break_registry_links) links to the registry version's page, which
    // says so; one further out to its own page, which says it was deleted.
    const href = node.depth === 1 ? registryVersionHref(registry, collection, root.split(":").pop()!) : versionHref(node.project, node.name, node.version!);
    return { ...base, deleted: true, title: `${node.name}:${node.version}`, subtitle: ["files deleted", node.type].join(" · "), href };
  }
  return { ...base, title: `${node.name}:${node.version}`, subtitle: [node.type, ...aliases].join(" · "), href: versionHref(node.project, node.name, node.version!) };
}

export async function registryLineagePage(root: HTMLElement, registry: string, collection: string, selector: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading lineage…" }));
  const hops = Math.min(10, Math.max(1, Number(readQuery().get("hops")) || DEFAULT_HOPS));
  const graph = await registryApi.lineage(registry, collection, selector, hops);
  const hopsSelect = h("select.hops", { "aria-label": "hops" }, ...Array.from({ length: 10 }, (_, i) => h("option", { value: i + 1, text: `${i + 1} hop${i ? "s" : ""}`, selected: i + 1 === hops })));
  hopsSelect.addEventListener("change", () => {
    setQuery({ hops: hopsSelect.value === String(DEFAULT_HOPS) ? null : hopsSelect.value });
    void registryLineagePage(root, registry, collection, selector);
  });
  const count = (kind: string) => graph.nodes.filter((n) => n.kind === kind).length;
  const rootNode = graph.nodes.find((n) => n.id === graph.root);
  const name = `${registry}/${collection}:${rootNode?.version ?? selector}`;
  const deleted = graph.nodes.find((n) => n.files_deleted && n.depth === 1);
  root.replaceChildren(
    h(
      "div.artifact-page.lineage-page.registry-lineage",
      {},
      h("div.pane-head", {}, h("h1", { text: `Lineage of ${name}` }), h("a", { href: registryVersionHref(registry, collection, selector), "data-link": true, text: `← ${name}` })),
      h(
        "div.toolbar",
        {},
        hopsSelect,
        h("span.count.lineage-count", { text: `${count("run")} runs, ${count("artifact")} artifact versions, ${count("commit")} commits, ${graph.edges.length} edges` }),
        graph.truncated ? h("span.truncated", { text: "Graph cut at its node limit: fewer hops show all of what is near." }) : null,
        deleted ? h("span.files-deleted", { text: `${deleted.project}/${deleted.name}:${deleted.version} was deleted: this version has no files; the runs that logged and used it are still shown.` }) : null,
        h("span.legend.lineage-legend", {}, h("i.key.commit"), "commit", h("i.key.run"), "run", h("i.key.artifact"), "artifact version", h("i.key.registry"), "registered model", " · arrows follow the data: code and dataset versions → the run → the version it logged → the registry"),
      ),
      h("div.card.lineage-canvas", {}, lineageSvg(graph.nodes.map((n) => graphNode(n, graph.root, registry, collection)), graph.edges)),
    ),
  );
  return () => {};
}
