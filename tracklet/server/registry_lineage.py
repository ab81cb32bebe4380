"""The lineage graph of a registered model (docs/registry.md): from a registry collection's version
back through the artifact version it links, the run that logged it, the dataset versions that run
used, and further hops, with the code commit each run ran.

It is the artifact version's lineage graph (``routes_artifacts_read.lineage``: runs and versions,
the caller's readable projects only) with two kinds of node added: the registry version itself
(``registry:<registry>/<collection>:vN``, the root, fed by a ``linked`` edge from the artifact
version) and one node per git commit its runs recorded (``commit:<sha>``, feeding each such run by
a ``code`` edge). Depths count from the registry version. A registry version whose artifact version
was deleted (``break_registry_links``) keeps its graph: that version's node is marked
``files_deleted`` and the runs that logged and used it are still there (docs/registry.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from tracklet.errors import ArtifactDeleted, ArtifactError
from tracklet.registry.sql import Link
from tracklet.server.artifact_source import artifact_source
from tracklet.server.lineage_graph import DELETED_VERSION_FIELDS, build_graph
from tracklet.server.models import LineageEdge, LineageNode, LineageResponse
from tracklet.server.routes_artifacts_read import _readable, graph_response, lineage


def registry_node_id(link: Link) -> str:
    return f"registry:{link.registry}/{link.collection}:v{link.version}"


def _git(metadata: Any) -> dict[str, Any] | None:
    """The run's recorded git commit (``metadata.git``: core/provenance.py), or None."""
    git = metadata.get("git") if isinstance(metadata, dict) else None
    if not isinstance(git, dict) or not isinstance(git.get("commit"), str) or not git["commit"]:
        return None
    commit = git["commit"]
    return {"commit": commit[:64], "branch": str(git.get("branch") or "")[:256] or None,
            "remote": str(git.get("remote") or "")[:1024] or None, "dirty": bool(git.get("dirty"))}


def _deleted_source_lineage(request: Request, link: Link, *, hops: int, max_nodes: int) -> LineageResponse:
    """The graph around ``link``'s artifact version when that version was deleted
    (``break_registry_links``): its node, marked ``files_deleted``, from what the link recorded
    (type, digest); the runs that logged and used it, and further hops, from the store's edges,
    which the deletion leaves (they are the runs' records)."""
    deleted = {"kind": "artifact", "project": link.source_project, "name": link.source_name,
               "version": link.source_version, "type": link.type, "digest": link.source_digest, "aliases": [],
               "files_deleted": True}
    source = artifact_source(request)

    def version_info(project: str, name: str, number: int) -> dict[str, Any] | None:
        if (project, name, number) == (link.source_project, link.source_name, link.source_version):
            return deleted
        try:
            info = source.version(project, name, f"v{number}")
        except ArtifactDeleted:
            return DELETED_VERSION_FIELDS
        except (ArtifactError, ValueError):
            return None
        return {"aliases": info.aliases}

    graph = build_graph(request.app.state.tracklet.store,
                        version=(link.source_project, link.source_name, link.source_version), hops=hops,
                        max_nodes=max_nodes, readable=_readable(request), run_info=lambda *_: None,
                        version_info=version_info)
    return graph_response(graph, hops)


def registered_lineage(request: Request, link: Link, *, hops: int, max_nodes: int) -> LineageResponse:
    """The graph of ``link`` (a resolved registry version) within ``hops`` edges of its artifact
    version (so ``hops + 1`` of the registry version), at most ``max_nodes`` runs and versions.
    A link whose artifact version was deleted keeps its graph, that version marked ``files_deleted``."""
    artifacts = request.app.state.tracklet.artifacts
    if artifacts.registry.was_deleted(link.source_project, link.source_name, link.source_version):
        graph = _deleted_source_lineage(request, link, hops=hops, max_nodes=max_nodes)
    else:
        graph = lineage(request, link.source_project, run=None, artifact=f"{link.source_name}:v{link.source_version}",
                        hops=hops, max_nodes=max_nodes)
    root = registry_node_id(link)
    nodes = [LineageNode(id=root, kind="registry", project=link.source_project, name=f"{link.registry}/{link.collection}",
                         depth=0, version=f"v{link.version}", type=link.type, aliases=link.aliases)]
    edges = [LineageEdge(source=graph.root, target=root, kind="linked")]
    store = request.app.state.tracklet.store
    commits: dict[str, LineageNode] = {}
    for node in graph.nodes:
        nodes.append(node.model_copy(update={"depth": node.depth + 1}))
        if node.kind != "run":
            continue
        row = store.run(node.project, node.run_id, fields=("metadata",))
        git = _git(row.get("metadata") if row else None)
        if git is None:
            continue
        commit_id = f"commit:{git['commit']}"
        if commit_id not in commits:
            commits[commit_id] = LineageNode(id=commit_id, kind="commit", project=node.project, name=git["commit"][:12],
                                             depth=node.depth + 2, **git)
        edges.append(LineageEdge(source=commit_id, target=node.id, kind="code"))
    nodes += commits.values()
    edges += graph.edges
    return LineageResponse(root=root, hops=hops, truncated=graph.truncated, nodes=nodes, edges=edges)
