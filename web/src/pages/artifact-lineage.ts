// The lineage graph around a run (/projects/<p>/runs/<id>/lineage) or an artifact version
// (/projects/<p>/artifacts/<name>/<vN>/lineage): runs and versions up to `hops` edges away (in
// the query string, 3 by default), data flowing left to right. A node links to its run or
// version page; a run table (type `run_table`, `run-<id>-<key>:vN` as W&B names a logged table:
// docs/tables.md#lineage) to the page of the run that logged it, where its tables are.

import { h } from "../dom";
import { lineageSvg, type GraphNode } from "../lineage";
import { projectHref, readQuery, runHref, setQuery, versionHref } from "../router";
import { artifactApi, type LineageEdge, type LineageNode } from "./artifact-api";

const DEFAULT_HOPS = 3;
const RUN_TABLE = "run_table";

/** The run that logged a run table node (its `logged` edge's source), if the graph holds it. */
function producer(node: LineageNode, nodes: LineageNode[], edges: LineageEdge[]): LineageNode | undefined {
  const edge = edges.find((e) => e.target === node.id && e.kind === "logged");
  return edge ? nodes.find((n) => n.id === edge.source && n.kind === "run") : undefined;
}

function graphNode(node: LineageNode, root: string, nodes: LineageNode[], edges: LineageEdge[]): GraphNode {
  if (node.kind === "run") {
    return {
      id: node.id,
      kind: "run",
      title: node.name || node.run_id!,
      subtitle: `${node.project}/${node.run_id} · ${node.state}`,
      href: runHref(node.project, node.run_id!),
      root: node.id === root,
    };
  }
  const aliases = (node.aliases ?? []).filter((a) => a !== node.version);
  if (node.type === RUN_TABLE) {
    const run = producer(node, nodes, edges);
    return {
      id: node.id,
      kind: "artifact",
      title: `${node.name}:${node.version}`,
      subtitle: ["run table", ...aliases].join(" · "),
      href: run ? runHref(run.project, run.run_id!) : projectHref(node.project),
      root: node.id === root,
    };
  }
  return {
    id: node.id,
    kind: "artifact",
    title: `${node.name}:${node.version}`,
    // Deleted since the runs recorded it: drawn dashed; its page says it was deleted.
    subtitle: (node.files_deleted ? ["files deleted", node.type] : [node.type, ...aliases]).join(" · "),
    href: versionHref(node.project, node.name, node.version!),
    root: node.id === root,
    deleted: node.files_deleted || undefined,
  };
}

export async function lineagePage(
  root: HTMLElement,
  project: string,
  start: { runId?: string; name?: string; version?: string },
): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading lineage…" }));
  const hops = Math.min(10, Math.max(1, Number(readQuery().get("hops")) || DEFAULT_HOPS));
  const graph = await artifactApi.lineage(project, {
    run: start.runId,
    artifact: start.runId ? undefined : `${start.name}:${start.version}`,
    hops,
  });
  const hopsSelect = h("select.hops", {}, ...Array.from({ length: 10 }, (_, i) => h("option", { value: i + 1, text: `${i + 1} hop${i ? "s" : ""}`, selected: i + 1 === hops })));
  hopsSelect.addEventListener("change", () => {
    setQuery({ hops: hopsSelect.value === String(DEFAULT_HOPS) ? null : hopsSelect.value });
    void lineagePage(root, project, start);
  });
  const title = start.runId ? `Lineage of run ${start.runId}` : `Lineage of ${start.name}:${start.version}`;
  const rootNode = graph.nodes.find((n) => n.id === graph.root);
  const tableRun = rootNode?.type === RUN_TABLE ? producer(rootNode, graph.nodes, graph.edges) : undefined;
  const back = start.runId
    ? h("a", { href: runHref(project, start.runId), "data-link": true, text: `← run ${start.runId}` })
    : tableRun
      ? h("a", { href: runHref(tableRun.project, tableRun.run_id!), "data-link": true, text: `← run ${tableRun.run_id}` })
      : h("a", { href: versionHref(project, start.name!, start.version!), "data-link": true, text: `← ${start.name}:${start.version}` });
  const runs = graph.nodes.filter((n) => n.kind === "run").length;
  root.replaceChildren(
    h(
      "div.artifact-page.lineage-page",
      {},
      h("div.pane-head", {}, h("h1", { text: title }), back),
      h(
        "div.toolbar",
        {},
        hopsSelect,
        h("span.count.lineage-count", { text: `${runs} runs, ${graph.nodes.length - runs} artifact versions, ${graph.edges.length} edges` }),
        graph.truncated ? h("span.truncated", { text: "Graph cut at its node limit: fewer hops show all of what is near." }) : null,
        h("span.legend.lineage-legend", {}, h("i.key.run"), "run", h("i.key.artifact"), "artifact version or run table", " · arrows follow the data: run → the version it logged → the runs that used it"),
      ),
      h("div.card.lineage-canvas", {}, lineageSvg(graph.nodes.map((n) => graphNode(n, graph.root, graph.nodes, graph.edges)), graph.edges)),
    ),
  );
  return () => {};
}
