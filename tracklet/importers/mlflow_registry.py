"""``tracklet import mlflow``'s second half: MLflow's model registry → tracklet's (docs/import.md,
"MLflow registered models").

Each registered model becomes a collection of the ``model`` registry (``models:/<name>@<alias>``
reads the same in both); each of its versions a link to the artifact version holding its files,
which the imported run logged, so lineage reads registry version → artifact version → run:

- a version whose files are the run's artifact files (MLflow 2's ``runs:/<id>/model``, stored under
  the run's artifact URI) links that run's ``mlflow-<run id>`` version; the path under it is on the card;
- a version whose files are elsewhere (MLflow 3's logged models, ``models:/m-<id>``: their files are
  not the run's) links a version of ``mlflow-<model id>`` (type ``mlflow-artifacts``, logged by the run)
  holding them, made here from the model's files (read in place, or downloaded to a temporary directory).

MLflow aliases become aliases; the legacy stages ``Staging`` and ``Production`` the aliases
``staging`` and ``production`` on the newest version in that stage (an MLflow alias of that name
wins); ``Archived`` is on the card only. Description, tags, status, stage, source, run link and the
registered model's description and tags go on each version's model card. A version that can't be
imported (its run isn't in this import, its files can't be read) is reported by name and skipped;
the rest are imported. Importing again adds no version, moves aliases to where the source has them
now and removes those the source dropped (only aliases an import set: one moved by hand stays)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

from tracklet.core.layout import MAX_NAME_CHARS, is_valid_name
from tracklet.core.redact import redact_url
from tracklet.errors import ArtifactRootRefused

REGISTRY = "model"  # tracklet's registry that models:/ URIs name (registry/refs.py)
PAGE = 1000
STAGE_ALIASES = {"Staging": "staging", "Production": "production"}
REASON = "tracklet import mlflow"  # the reason of every alias move an import makes: how it finds its own
CARD_KEY = "mlflow_import"  # the front matter key of a card an import wrote
_MODEL_ID = re.compile(r"models:/(m-[0-9a-f]{1,64})")


@dataclasses.dataclass
class ImportedModelVersion:
    """One MLflow model version and what happened to it: ``status`` is ``imported`` (a new
    tracklet registry version), ``unchanged`` (linked before: its aliases and card follow the
    source) or ``skipped`` (``warnings`` say why; nothing written for it). ``path`` is the
    tracklet version (``model/<collection>:vN``), or the collection when skipped."""

    path: str
    name: str  # "<MLflow model name> version <n>"
    source: str
    status: str
    aliases: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunInImport:
    """What the registry import needs of a run the run import handled (imported or unchanged)."""

    project: str
    run_path: str  # project/run_id
    artifact_uri: str


def collection_names(model_names: list[str]) -> dict[str, str]:
    """A valid collection name for each MLflow model name: runs of other characters become ``-``
    (``churn model`` → ``churn-model``); names that would become the same, or nothing, get
    ``-<digest>`` of the MLflow name so that no two models share a collection."""
    plain = {name: re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._").replace("..", "-") for name in model_names}
    taken: dict[str, int] = {}
    for candidate in plain.values():
        taken[candidate.lower()] = taken.get(candidate.lower(), 0) + 1
    found = {}
    for name, candidate in plain.items():
        if not is_valid_name(candidate[:MAX_NAME_CHARS]) or taken[candidate.lower()] > 1 or len(candidate) > 100:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            candidate = f"{candidate[:100].rstrip('-._') or 'mlflow-model'}-{digest}"
        found[name] = candidate
    return found


# ---------------------------------------------------------------- reading the source


def registry_exists(source: Any) -> bool:
    """Whether the source may have registered models, checked without MLflow for a file store:
    MLflow's file registry creates ``models/`` in the store when it is opened, and an import never
    writes to its source."""
    return source.root is None or (source.root / "models").is_dir()


@contextlib.contextmanager
def reading(source: Any) -> Iterator[None]:
    """MLflow opened on ``source`` for a registry read. Its file registry reads a version's logged
    model through ``MlflowClient()``, the process's default tracking URI (MLflow 3: a
    ``mlflow.db`` it creates in the working directory), so that is the source's meanwhile."""
    from tracklet.importers.mlflow import _file_store_allowed

    with _file_store_allowed(source.kind == "file"), default_tracking_uri(source.uri):
        yield


@contextlib.contextmanager
def default_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to ``uri`` meanwhile, then put back as it was, with
    MLflow's public API only (``set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` for subprocesses;
    ``set_tracking_uri(None)`` unsets both, which is how MLflow's own private helper restores "none")."""
    import mlflow

    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        # Set only by the variable (or set to what it says): unset, and the variable read again.
        mlflow.set_tracking_uri(None if before in (None, environment) else before)
        if environment is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = environment


@dataclasses.dataclass
class Unreadable:
    """A model version MLflow can't read (a file store's damaged ``meta.yaml``, say)."""

    name: str
    version: str
    why: str
    run_id: str = ""


def model_versions(source: Any) -> dict[str, list[Any]]:
    """Every registered model's versions (MLflow's ``ModelVersion``, or ``Unreadable``), by model
    name, oldest first: all versions in pages, grouped (a name in a search filter would need quoting
    MLflow's parser can't always take). Deleted models and versions are not listed by MLflow. Sets
    ``source.registered_models`` (name → ``RegisteredModel``, None when it can't be read)."""
    if source.root is not None:
        return _file_store_versions(source)
    found: dict[str, list[Any]] = {}
    with reading(source):
        token = None
        while True:
            page = source.client.search_registered_models(max_results=PAGE, page_token=token)
            for model in page:
                found.setdefault(model.name, [])
            token = page.token
            if not token:
                break
        models = {name: source.client.get_registered_model(name) for name in found}
        token = None
        while True:
            page = source.client.search_model_versions(max_results=PAGE, page_token=token)
            for version in page:
                if version.name in found:
                    found[version.name].append(version)
            token = page.token
            if not token:
                break
    for name in found:
        found[name].sort(key=lambda version: int(version.version))
    source.registered_models = models
    return found


def _file_store_versions(source: Any) -> dict[str, list[Any]]:
    """A file store's models and versions one directory at a time: its searches fail whole on one
    damaged ``meta.yaml``, and one version's damage should cost that version only."""
    from tracklet.importers.mlflow import _short

    found: dict[str, list[Any]] = {}
    models: dict[str, Any] = {}
    directory = source.root / "models"
    with reading(source):
        for model_dir in sorted(path for path in directory.iterdir() if (path / "meta.yaml").is_file()):
            name = model_dir.name
            try:
                models[name] = source.client.get_registered_model(name)
            except Exception:  # noqa: BLE001 - (one damaged version fails it) its versions are still read one by one
                models[name] = _aliases_only(model_dir)
            versions: list[Any] = []
            numbers = sorted(int(path.name[8:]) for path in model_dir.glob("version-*") if path.name[8:].isdigit())
            for number in numbers:
                try:
                    version = source.client.get_model_version(name, str(number))
                except Exception as error:  # noqa: BLE001 - this version only
                    versions.append(Unreadable(name, str(number), f"MLflow can't read it: {_short(error)}"))
                    continue
                if version.current_stage != "Deleted_Internal":  # deleted: kept on disk, marked
                    versions.append(version)
            found[name] = versions
    source.registered_models = models
    return found


def _aliases_only(model_dir: Path) -> Any:
    """A file store's model whose ``RegisteredModel`` MLflow can't read (it reads every version for
    it): its aliases, read from ``aliases/<alias>`` (each file holds a version number), without its
    description and tags; None when they can't be read either."""
    from types import SimpleNamespace

    aliases: dict[str, int] = {}
    try:
        for path in sorted((model_dir / "aliases").glob("*")):
            with open(path, "rb") as file:
                aliases[path.name] = int(file.read(32).strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return None
    return SimpleNamespace(aliases=aliases, description=None, tags={})


def download_uri(source: Any, version: Any) -> str:
    """Where the version's files are (a logged model's artifact location, or the run's artifact
    path the version was registered from)."""
    with reading(source):
        try:
            return str(source.client.get_model_version_download_uri(version.name, version.version))
        except Exception:  # noqa: BLE001 - an older store: the source as registered
            return str(version.source or "")


def _under(location: str, root: str) -> str | None:
    """``location``'s path below ``root`` ("" for ``root`` itself), None when it isn't below it."""
    location, root = _normal(location).rstrip("/"), _normal(root).rstrip("/")
    if not root:
        return None
    if location == root:
        return ""
    if location.startswith(root + "/"):
        return location[len(root) + 1:]
    return None


def _in_run(location: str, run_id: str, artifact_uri: str) -> str | None:
    """The path among the run's artifact files that ``location`` names (``runs:/<run id>/<path>``,
    or a location under the run's artifact URI); None when it is outside them."""
    prefix = f"runs:/{run_id}"
    if location == prefix or location.startswith(prefix + "/"):
        return location[len(prefix):].strip("/")
    return _under(location, artifact_uri)


def _normal(location: str) -> str:
    """A local location as an absolute path (MLflow writes ``file:///x`` and ``/x`` for one place)."""
    parsed = urlparse(location)
    if parsed.scheme == "file" or (not parsed.scheme and location.startswith("/")):
        return str(Path(unquote(parsed.path) if parsed.scheme else location).resolve())
    return location


@contextlib.contextmanager
def _local_files(source: Any, location: str, what: str) -> Iterator[Path]:
    """A local directory holding the files at ``location`` (read in place when local and inside the
    source's ``artifact_roots``, else downloaded through MLflow to a temporary directory, removed
    afterwards: a server's own ``mlflow-artifacts:``, any other remote location only with
    ``--fetch-remote-artifacts``); ``what`` names the version in a refusal."""
    from tracklet.importers.mlflow_artifacts import check_fetchable, is_local, local_path, repository, through_the_store

    location = through_the_store(source, location, what)
    if is_local(location):
        if not local_path(location).is_dir():
            raise FileNotFoundError(f"{redact_url(location)} is not a directory")
        # only inside the allowed roots, links followed (a crafted version's source: ~)
        yield source.artifact_roots.confine(location, what)
        return
    check_fetchable(source, location, what)  # a remote location only with --fetch-remote-artifacts
    with tempfile.TemporaryDirectory(prefix="tracklet-mlflow-model-") as temp, reading(source):
        yield Path(repository(source, location).download_artifacts("", dst_path=temp))


# ---------------------------------------------------------------- the artifact version a version links


def run_version(root: Path, run: RunInImport, run_id: str, sub_path: str) -> Any:
    """The run's ``mlflow-<run id>`` version (the run import committed it), checked to hold files
    under ``sub_path``."""
    from tracklet.artifacts.storage import open_store
    from tracklet.errors import ArtifactNotFound
    from tracklet.importers.mlflow import tracklet_run_id

    store = open_store(root)
    try:
        info = store.registry.version(run.project, f"mlflow-{tracklet_run_id(run_id)}")
    except ArtifactNotFound:
        raise LookupError(f"run {run.run_path} has no artifact files in tracklet (they were not imported)") from None
    prefix = f"{sub_path}/" if sub_path else ""
    if not any(entry.path.startswith(prefix) for entry in store.manifest(info)):
        raise LookupError(f"{info.qualified_name} holds no files under {sub_path!r}")
    return info


def model_version(root: Path, source: Any, run: RunInImport, location: str, mlflow_version: Any) -> Any:
    """A version of ``mlflow-<model id>`` holding the files at ``location`` (a logged model's,
    outside the run's artifacts), logged by the run: the existing one when there is one (a
    logged model's files don't change), else committed from the files."""
    from tracklet.artifacts.entries import LocalFile
    from tracklet.artifacts.storage import open_store
    from tracklet.errors import ArtifactNotFound
    from tracklet.importers.mlflow import ARTIFACT_TYPE

    match = _MODEL_ID.fullmatch(str(mlflow_version.source or ""))
    model_id = match.group(1) if match else "model-" + hashlib.sha256(location.encode()).hexdigest()[:16]
    name = f"mlflow-{model_id}"
    store = open_store(root)
    with contextlib.suppress(ArtifactNotFound):
        return store.registry.version(run.project, name)
    from tracklet.importers.mlflow_artifacts import regular_files

    what = f"model {mlflow_version.name!r} version {mlflow_version.version}"
    with _local_files(source, location, what) as directory:
        files = {path: LocalFile(str(directory / path)) for path, _ in regular_files(directory)}
        if not files:
            raise LookupError(f"{redact_url(location)} holds no files")
        committed = store.commit(
            name, ARTIFACT_TYPE, dict(files), project=run.project, aliases=["latest"],
            description=f"the files of MLflow model {mlflow_version.name!r} version {mlflow_version.version}",
            metadata={"mlflow_model_location": redact_url(location), "mlflow_run_id": mlflow_version.run_id,
                      **({"mlflow_model_id": match.group(1)} if match else {})},
            logged_by=run.run_path)
    return committed.info


# ---------------------------------------------------------------- cards


def card_text(version: Any, model: Any, aliases: dict[str, int], run: RunInImport, sub_path: str | None) -> str:
    """The version's model card: MLflow's fields as YAML front matter (JSON flow values, as
    ``registry/cards.py`` writes them), the description as its Markdown body."""
    fields: dict[str, Any] = {
        "model": version.name, "version": int(version.version), "run_id": version.run_id,
        "tracklet_run": run.run_path, "source": redact_url(str(version.source or "")), "status": version.status,
        "stage": version.current_stage,
        "aliases": sorted(alias for alias, number in aliases.items() if number == int(version.version)),
        "tags": dict(sorted((version.tags or {}).items())), "run_link": version.run_link or None,
        "user_id": version.user_id or None, "created_at_ms": version.creation_timestamp,
        "model_description": (model.description or None) if model is not None else None,
        "model_tags": dict(sorted(((model.tags or {}) if model is not None else {}).items())),
    }
    if sub_path is not None:
        fields["path_in_artifact"] = sub_path
    lines = ["---", f"{CARD_KEY}:"]
    lines += [f"  {key}: {json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)}"
              for key, value in fields.items()]
    lines += ["---", "", f"# {version.name} version {version.version} (imported from MLflow)", ""]
    if version.description:
        lines += [version.description, ""]
    return "\n".join(lines)


def save_card(registry: Any, collection: str, number: int, text: str) -> None:
    """Save ``text`` as the version's card when it has none, or when its newest is one an import
    wrote and the source changed since; a card someone edited after the import stays the card."""
    from tracklet.registry.service import default_actor

    current = registry.card(REGISTRY, collection, number)
    if current is not None and (current.text == text or f"\n{CARD_KEY}:\n" not in current.text):
        return
    registry.save_card(REGISTRY, collection, number, text, author=default_actor())


# ---------------------------------------------------------------- importing


def import_registry(source: Any, root: Path, runs: dict[str, RunInImport]) -> list[ImportedModelVersion]:
    """Import the registered models of ``source`` (an ``MlflowSource``) whose versions' runs are in
    ``runs`` (MLflow run id → the run the import made or found) into data root ``root``'s registry.
    A version that can't be imported is reported (``skipped``) and the rest imported; a model whose
    collection can't take it (another type's collection of that name) is reported version by version."""
    from tracklet.importers.mlflow import _short

    if not registry_exists(source):
        return []
    try:
        versions = model_versions(source)
    except Exception as error:  # noqa: BLE001 - a store without a registry (an old server): the runs stand
        return [ImportedModelVersion(REGISTRY, "registered models", source.location, "skipped",
                                     warnings=[f"can't list the registered models: {_short(error)}"])]
    names = collection_names(sorted(versions))
    results: list[ImportedModelVersion] = []
    for model_name in sorted(versions):
        try:
            results.extend(_import_model(source, root, runs, model_name, names[model_name], versions[model_name]))
        except Exception as error:  # noqa: BLE001 - this model (its collection can't be read, say): the others go on
            results.append(ImportedModelVersion(f"{REGISTRY}/{names[model_name]}", model_name,
                                                f"{source.location} model {model_name!r}", "skipped",
                                                warnings=[f"{type(error).__name__}: {_short(error)}; model skipped"]))
    return results


def _import_model(source: Any, root: Path, runs: dict[str, RunInImport], model_name: str, collection: str,
                  versions: list[Any]) -> list[ImportedModelVersion]:
    from tracklet.importers.mlflow import _short
    from tracklet.registry.service import default_actor, open_local

    registry = open_local(root)
    assert registry is not None  # create=True
    model = getattr(source, "registered_models", {}).get(model_name)
    actor = default_actor()
    results: list[ImportedModelVersion] = []
    numbers: dict[int, tuple[int, ImportedModelVersion]] = {}  # MLflow version → tracklet version
    linked_from: dict[int, int] = {}  # tracklet version → the first MLflow version linked to it
    for version in versions:
        label = f"{model_name} version {version.version}"
        where = f"{source.location} model {model_name!r} version {version.version}"
        result = ImportedModelVersion(f"{REGISTRY}/{collection}", label, where, "skipped")
        results.append(result)
        if isinstance(version, Unreadable):
            result.warnings.append(f"{version.why}; version skipped")
            continue
        run = runs.get(version.run_id or "")
        if run is None:
            why = "it names no run" if not version.run_id else \
                f"its run {version.run_id} is not in this import (another experiment, deleted, or unreadable)"
            result.warnings.append(f"{why}; version skipped")
            continue
        try:
            location = download_uri(source, version)
            sub_path = _in_run(location, version.run_id, run.artifact_uri)
            if sub_path is not None:
                info = run_version(root, run, version.run_id, sub_path)
            else:
                info = model_version(root, source, run, location, version)
            before = any((link.registry, link.collection) == (REGISTRY, collection)
                         for link in registry.links_to(info.project, info.name, info.version))
            link = registry.link(REGISTRY, collection, info, [], actor=actor,
                                 reason=f"{REASON}: {model_name!r} version {version.version}")
        except ArtifactRootRefused as error:  # its files outside the allowed directories: whole, with the option
            result.warnings.append(f"{error}; version skipped")
            continue
        except Exception as error:  # noqa: BLE001 - this version's files or collection: the rest still import
            result.warnings.append(f"{type(error).__name__}: {_short(error)}; version skipped")
            continue
        result.path, result.status = link.path, "unchanged" if before else "imported"
        if link.version in linked_from:
            result.warnings.append(f"the same files as MLflow version {linked_from[link.version]}: both are "
                                   f"{link.path} (a tracklet collection links an artifact version once)")
        linked_from.setdefault(link.version, int(version.version))
        numbers[int(version.version)] = (link.version, result)
        try:
            save_card(registry, collection, link.version,
                      card_text(version, model, source_aliases(model, versions), run, sub_path))
        except Exception as error:  # noqa: BLE001 - the card only
            result.warnings.append(f"its model card was not saved: {type(error).__name__}: {_short(error)}")
    if numbers and model is None:
        results[0].warnings.append(f"MLflow can't read registered model {model_name!r} itself: its aliases "
                                   "were not imported and the registry's were left as they are")
    elif numbers:
        try:
            _follow_aliases(registry, collection, source_aliases(model, versions), versions, numbers, actor)
        except Exception as error:  # noqa: BLE001 - the versions stand; the aliases are as they were
            results[0].warnings.append(f"aliases not imported: {type(error).__name__}: {_short(error)}")
    return results


def source_aliases(model: Any, versions: list[Any]) -> dict[str, int]:
    """MLflow's aliases of a registered model (alias → version): the model's own list (MLflow 2.3+;
    its versions as searched don't carry them), else each version's."""
    given = getattr(model, "aliases", None) or {}
    found = {str(alias): int(number) for alias, number in given.items()} if isinstance(given, dict) else \
        {alias.alias: int(alias.version) for alias in given}
    if not found:
        for version in versions:
            found.update({alias: int(version.version) for alias in (getattr(version, "aliases", None) or [])})
    return found


def wanted_aliases(aliases: dict[str, int], versions: list[Any], imported: set[int]) -> tuple[dict[str, int], list[str]]:
    """The aliases the source gives (alias → MLflow version) among ``imported`` versions, and what
    could not be kept: MLflow's aliases (``aliases``) first, then ``staging``/``production`` on the
    newest version in that stage when no MLflow alias has that name."""
    from tracklet.artifacts.names import check_alias
    from tracklet.errors import ArtifactNameError

    wanted: dict[str, int] = {}
    problems: list[str] = []
    for alias, number in sorted(aliases.items()):
        try:
            check_alias(alias)
        except ArtifactNameError as error:
            problems.append(f"MLflow alias {alias!r} of version {number} not kept: {error}")
            continue
        if number in imported:
            wanted[alias] = number
    for stage, alias in STAGE_ALIASES.items():
        staged = [int(v.version) for v in versions
                  if getattr(v, "current_stage", None) == stage and int(v.version) in imported]
        if not staged:
            continue
        if alias in wanted:
            if wanted[alias] != max(staged):
                problems.append(f"stage {stage} (version {max(staged)}) is not alias {alias!r}: MLflow alias "
                                f"{alias!r} names version {wanted[alias]}, and wins")
            continue
        wanted[alias] = max(staged)
    return wanted, problems


def _follow_aliases(registry: Any, collection: str, aliases: dict[str, int], versions: list[Any],
                    numbers: dict[int, tuple[int, ImportedModelVersion]], actor: str) -> None:
    """Point each alias the source gives where it points there, and remove the aliases an earlier
    import set that the source no longer gives; aliases set by hand are left alone. Each problem
    is a warning on the version it concerns (protected aliases: a promotion request is opened)."""
    from tracklet.errors import PromotionRequired
    from tracklet.importers.mlflow import _short

    wanted, problems = wanted_aliases(aliases, versions, set(numbers))
    first = next(iter(numbers.values()))[1]
    first.warnings.extend(problems)
    current: dict[str, int] = {}
    for link in registry.versions(REGISTRY, collection):
        for alias in link.aliases:
            if alias != "latest" and alias != f"v{link.version}":
                current[alias] = link.version
    for alias, mlflow_number in sorted(wanted.items()):
        number, result = numbers[mlflow_number]
        result.aliases.append(alias)
        if current.get(alias) == number:
            continue
        try:
            registry.set_alias(REGISTRY, collection, alias, f"v{number}", actor=actor,
                               reason=f"{REASON}: MLflow gives {alias!r} to version {mlflow_number}")
        except PromotionRequired as error:
            result.warnings.append(f"alias {alias!r} not moved: {_short(error)}")
        except Exception as error:  # noqa: BLE001 - this alias only
            result.warnings.append(f"alias {alias!r} not set: {type(error).__name__}: {_short(error)}")
    for alias, number in sorted(current.items()):
        if alias in wanted:
            continue
        events = registry.history(REGISTRY, collection, alias)
        if not events or not events[-1].reason.startswith(REASON):
            continue  # set (or moved last) by someone, not by an import
        try:
            registry.remove_alias(REGISTRY, collection, alias, expected=number, actor=actor,
                                  reason=f"{REASON}: MLflow no longer gives {alias!r}")
        except Exception as error:  # noqa: BLE001 - a protected alias, say
            first.warnings.append(f"alias {alias!r} (no longer in MLflow) not removed: {_short(error)}")


__all__ = ["ImportedModelVersion", "RunInImport", "collection_names", "import_registry", "model_versions",
           "registry_exists", "wanted_aliases"]
