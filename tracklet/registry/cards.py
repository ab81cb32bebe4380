"""Model cards: Markdown with YAML front matter (Hugging Face's layout) for a registry version,
generated from its lineage, then edited by people and kept as revisions beside the collection
(``registry_cards``: every save is a new revision; the newest is the card).

The generated front matter holds what the registry can prove: the version and what it links, its
content digest, the producing run (config, summary metrics, git commit, environment) and the
digests of the artifact versions that run used. Values are written as JSON, which YAML reads as
flow values, so no YAML library is needed to write one and any YAML parser reads it.
"""

from __future__ import annotations

import json
import time
from typing import Any

MAX_METRICS = 200  # summary values put on a card at most (a run may log thousands of keys)
MAX_CONFIG = 200
ENVIRONMENT_KEYS = ("python", "platform", "os", "hostname", "cpu_model", "cpu_count", "gpus", "tracklet_version")


def _yaml_value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _scalars(values: dict[str, Any], limit: int) -> dict[str, Any]:
    """The values a card can show: numbers, strings, booleans, short lists; at most ``limit``."""
    kept: dict[str, Any] = {}
    for key in sorted(values)[:limit]:
        value = values[key]
        if isinstance(value, (bool, int, float, str)) or value is None:
            kept[key] = value
        elif isinstance(value, (list, tuple)) and len(value) <= 16:
            kept[key] = list(value)
        elif isinstance(value, dict) and len(value) <= 16:
            kept[key] = value
    return kept


def _inputs(run: Any, data_root: Any) -> list[dict[str, Any]]:
    """The artifact versions the run used, with their digests (local runs: from the store's lineage)."""
    if data_root is None:
        return []
    from tracklet.artifacts.storage import open_store
    from tracklet.store import Store
    from tracklet.store.lineage import edges_of_run

    store = Store(None, root=data_root)
    try:
        store.index(wait=2.0)
        edges = edges_of_run(store.engine, run.project, run.id, "used")
    finally:
        store.close()
    registry = open_store(data_root).registry
    found = []
    for edge in edges:
        try:
            digest = registry.read_version(edge["project"], edge["name"], edge["version"]).digest
        except Exception:  # noqa: BLE001 - a deleted or damaged input: named without its digest
            digest = None
        found.append({"artifact": f"{edge['project']}/{edge['name']}:v{edge['version']}", "type": edge["type"],
                      "digest": digest})
    return found


def card_facts(artifact: Any, *, data_root: Any = None, api: Any = None) -> dict[str, Any]:
    """The front matter of ``artifact``'s card (a version read through a registry collection).
    ``api`` (a ``tracklet.Api``) finds the producing run where local lineage can't (a server's
    version: its ``RemoteApi``); ``data_root`` is where the run's inputs are read from (local)."""
    link = artifact._link
    info = artifact._info
    facts: dict[str, Any] = {
        "model": f"{link.registry}/{link.collection}", "version": f"v{link.version}",
        "aliases": [alias for alias in link.aliases if alias != f"v{link.version}"],
        "artifact": info.qualified_name, "type": info.type, "digest": info.digest, "size": info.size,
        "files": info.file_count, "linked_by": link.linked_by,
        "linked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(link.linked_at)),
    }
    if info.description:
        facts["description"] = info.description
    run = None
    try:
        run = artifact.logged_by()
    except Exception:  # noqa: BLE001 - lineage unreadable (a server's version read from another machine)
        run = None
    if run is None and api is not None and info.logged_by:
        try:
            run = api.run(info.logged_by)
        except Exception:  # noqa: BLE001 - the run is gone, or not readable with this key
            run = None
    if run is None:
        facts["run"] = None
        return facts
    metadata = run.metadata
    git = metadata.get("git") or {}
    facts["run"] = {"path": run.path, "name": run.name, "state": run.state}
    facts["git_commit"] = git.get("commit") if git else None
    if git and git.get("dirty"):
        facts["git_dirty"] = True
    facts["config"] = _scalars(run.config, MAX_CONFIG)
    facts["metrics"] = {key: value for key, value in _scalars(run.summary, MAX_METRICS).items()
                        if isinstance(value, (int, float)) and not isinstance(value, bool)}
    facts["inputs"] = _inputs(run, data_root) if data_root is not None else None  # None: not known here
    facts["environment"] = {key: metadata[key] for key in ENVIRONMENT_KEYS if metadata.get(key) not in (None, "", [])}
    return facts


def render(facts: dict[str, Any]) -> str:
    """The card: YAML front matter, then Markdown sections for people to fill in."""
    lines = ["---", *(f"{key}: {_yaml_value(value)}" for key, value in facts.items()), "---", ""]
    lines += [f"# {facts['model']} {facts['version']}", "",
              f"Links `{facts['artifact']}` (digest `{facts['digest'][:12]}`).", "",
              "## Intended use", "", "_Describe what this model is for, and what it must not be used for._", "",
              "## Training", ""]
    run = facts.get("run")
    if run:
        lines.append(f"Trained by run `{run['path']}` ({run['state']})"
                     + (f" at git commit `{facts['git_commit']}`" if facts.get("git_commit") else "") + ".")
        if facts.get("config"):
            lines += ["", "| config | value |", "| --- | --- |",
                      *(f"| {key} | {_cell(value)} |" for key, value in facts["config"].items())]
    else:
        lines.append("_No producing run is recorded for this version._")
    if facts.get("metrics"):
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |",
                  *(f"| {key} | {_cell(value)} |" for key, value in facts["metrics"].items())]
    if facts.get("inputs"):
        lines += ["", "## Inputs", "", "| artifact | digest |", "| --- | --- |",
                  *(f"| {item['artifact']} | {str(item['digest'])[:12]} |" for item in facts["inputs"])]
    lines += ["", "## Limitations", "", "_Known failure modes, biases, data the model was not evaluated on._", ""]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def front_matter(text: str) -> dict[str, Any]:
    """The front matter of a card as a dict (values as this module writes them: one JSON value per
    line; other lines are kept as strings). ``{}`` if the card has none."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    found: dict[str, Any] = {}
    for line in text[4:end].splitlines():
        key, separator, value = line.partition(":")
        if not separator or not key.strip():
            continue
        try:
            found[key.strip()] = json.loads(value.strip())
        except ValueError:
            found[key.strip()] = value.strip()
    return found


def generate(artifact: Any, *, data_root: Any = None, api: Any = None) -> str:
    """A generated card for a version read through a registry collection."""
    if getattr(artifact, "_link", None) is None:
        from tracklet.errors import RegistryError

        raise RegistryError(f"{artifact.qualified_name} is not a registry version: model cards are for versions "
                            "of a registry collection (link it first)")
    return render(card_facts(artifact, data_root=data_root, api=api))
