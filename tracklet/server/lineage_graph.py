"""A lineage graph around a run or an artifact version: runs and versions up to ``hops`` edges away.

Edges come from the store (``Store.artifact_edges``: one query per hop with the frontier, so a
graph of N hops costs N queries) and point the way data flows: a run ``logged`` a version
(run -> version), a version was ``used`` by a run (version -> run). The graph is bounded: at
most ``max_nodes`` nodes (then ``truncated``), and each hop reads at most a bounded number of
edges. Nodes in projects the caller may not read are left out, with their edges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container
from typing import Any

from tracklet.errors import ArtifactError

EDGES_PER_NODE = 8  # edges read per hop: up to this many per node the graph may still take


# What ``version_info`` answers for a version that was deleted (``ArtifactDeleted``): the runs'
# edges to it stay (they are the runs' records); the node is drawn "files deleted", without aliases.
DELETED_VERSION_FIELDS: dict[str, Any] = {"aliases": [], "files_deleted": True}


def run_node_id(project: str, run_id: str) -> str:
    return f"run:{project}/{run_id}"


def version_node_id(project: str, name: str, version: int) -> str:
    return f"artifact:{project}/{name}:v{version}"


@dataclasses.dataclass
class Graph:
    root: str
    nodes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    edges: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # (source, target) -> kind
    truncated: bool = False


def build_graph(
    store: Any,
    *,
    run: tuple[str, str] | None = None,
    version: tuple[str, str, int] | None = None,
    hops: int,
    max_nodes: int,
    readable: Container[str] | None,
    run_info: Callable[[str, str], dict[str, Any] | None],
    version_info: Callable[[str, str, int], dict[str, Any] | None],
) -> Graph:
    """Breadth-first from ``run`` ((project, run_id)) or ``version`` ((project, name, version)).

    ``readable``: the projects whose runs and versions may be shown (None: all).
    ``run_info(project, run_id)`` and ``version_info(project, name, version)`` give the start
    node's fields (None: it doesn't exist); other nodes take theirs from the edges that reach
    them, versions completed by ``version_info`` (its current aliases, and ``files_deleted`` for a
    version deleted since: see ``deleted_version_fields``)."""
    graph: Graph
    if run is not None:
        start = run_info(*run)
        graph = Graph(root=run_node_id(*run))
        graph.nodes[graph.root] = {**(start or {}), "depth": 0}
        runs_frontier, versions_frontier = [run], []
    else:
        assert version is not None
        start = version_info(*version)
        graph = Graph(root=version_node_id(*version))
        graph.nodes[graph.root] = {**(start or {}), "depth": 0}
        runs_frontier, versions_frontier = [], [version]

    def allowed(project: str) -> bool:
        return readable is None or project in readable

    for depth in range(1, hops + 1):
        if not runs_frontier and not versions_frontier:
            break
        room = max_nodes - len(graph.nodes)
        edges, more = store.artifact_edges(runs=runs_frontier, versions=versions_frontier,
                                           limit=max(room, 1) * EDGES_PER_NODE + len(graph.nodes))
        graph.truncated = graph.truncated or more
        runs_frontier, versions_frontier = [], []
        for edge in edges:
            if not (allowed(edge["run_project"]) and allowed(edge["project"])):
                continue
            run_id = run_node_id(edge["run_project"], edge["run_id"])
            version_id = version_node_id(edge["project"], edge["name"], edge["version"])
            for node_id in (run_id, version_id):
                if node_id in graph.nodes:
                    continue
                if len(graph.nodes) >= max_nodes:
                    graph.truncated = True
                    break
                if node_id == run_id:
                    graph.nodes[node_id] = {"kind": "run", "project": edge["run_project"], "run_id": edge["run_id"],
                                            "name": edge["run_name"], "state": edge["run_state"], "depth": depth}
                    runs_frontier.append((edge["run_project"], edge["run_id"]))
                else:
                    graph.nodes[node_id] = {"kind": "artifact", "project": edge["project"], "name": edge["name"],
                                            "version": edge["version"], "type": edge["type"],
                                            "digest": edge["digest"], "aliases": list(edge["aliases"] or []),
                                            "depth": depth}
                    versions_frontier.append((edge["project"], edge["name"], edge["version"]))
            if run_id in graph.nodes and version_id in graph.nodes:
                pair = (run_id, version_id) if edge["direction"] == "logged" else (version_id, run_id)
                graph.edges.setdefault(pair, edge["direction"])
    for node in graph.nodes.values():  # current aliases (those recorded on an edge may have moved since)
        if node.get("kind") == "artifact" and node["depth"] > 0:
            try:
                current = version_info(node["project"], node["name"], node["version"])
            except ArtifactError:
                current = None
            if current is not None:
                node["aliases"] = current["aliases"]
                if current.get("files_deleted"):  # deleted since the runs recorded it: its edges stay
                    node["files_deleted"] = True
    return graph
