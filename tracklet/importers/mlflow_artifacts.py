"""Where ``tracklet import mlflow`` may read a run's (or a registered model's) artifact files from
this machine's disk (docs/import.md, "Artifact files on this machine's disk").

An MLflow store names each run's artifact location itself (``runs.artifact_uri`` in a database, a
server's answer, ``meta.yaml`` in a file store): a store handed over from elsewhere can name any
directory of the importing machine (``file:///home/me/.ssh``), and the import would copy it into a
tracklet run (and ``tracklet sync`` on to a server). So a local location is read only inside an
allowed root, with every symbolic link resolved first (a link can't lead out of a root):

- a file store: the store's directory (where MLflow writes every run's files);
- an MLflow database: the database's directory (``mlflow ui``/``mlflow server`` in a project
  directory keep ``mlflow.db`` and the default artifact root ``./mlruns`` or ``./mlartifacts`` side
  by side); the experiments' ``artifact_location`` is not trusted: it is in the same file as the
  runs' locations, so a crafted database names both;
- a tracking server: none (its local paths are the server's, and a server's answer is no reason to
  read this machine's files); ``mlflow-artifacts:`` locations go through the server's artifact API;
- plus every ``--artifact-root DIR`` the user names.

A location outside them is refused with a warning that names the run, the directory and the option
that allows it; the run is imported without those files.

A remote location (``s3://``, ``gs://``, ``http(s)://``, ``wasbs://``, an ``mlflow-artifacts://`` URL naming
another host than the server read from, ...) is not fetched unless the user passes
``--fetch-remote-artifacts`` (``fetch_remote_artifacts=True``): a store can name any URL, an internal
host's or a bucket that this machine's credentials reach. Skipped, the run imports without those files,
with a warning that names the run, the location and the option, and the import's marker records the
location (``files/import.json``). A tracking server's own ``mlflow-artifacts:`` locations are fetched
through that server (the source the user named): that is no remote location of the store's choosing."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlparse

from tracklet.core.redact import redact_url
from tracklet.errors import ArtifactRootRefused, SourceError

LOCAL_SCHEMES = ("", "file")
FETCH_OPTION = "--fetch-remote-artifacts"


class RemoteNotFetched(ArtifactRootRefused):
    """A remote artifact location the import does not fetch (no ``--fetch-remote-artifacts``)."""


def is_local(location: str) -> bool:
    """Whether an MLflow artifact location names this machine's disk (a path or ``file://``)."""
    return urlparse(location).scheme in LOCAL_SCHEMES


def local_path(location: str) -> Path:
    """The path a local artifact location names (``file:///x%20y`` → ``/x y``), not yet resolved."""
    parsed = urlparse(location)
    return Path(unquote(parsed.path) if parsed.scheme else location).expanduser()


class ArtifactRoots:
    """The directories (resolved) an import reads local artifact files from: the source's own
    (``default``: described by ``default_label``) and the user's ``--artifact-root`` ones."""

    def __init__(self, default: Path | None, default_label: str,
                 given: str | os.PathLike | Iterable[str | os.PathLike] = ()) -> None:
        self.roots: list[Path] = []
        self.labels: list[str] = []
        if default is not None:
            self.roots.append(default.resolve())
            self.labels.append(default_label)
        for entry in [given] if isinstance(given, (str, os.PathLike)) else given:  # one directory, not its letters
            text = os.fspath(entry)
            path = local_path(text) if is_local(text) else None
            if path is None or not path.is_dir():
                raise SourceError(f"--artifact-root {text}: not a directory of this machine")
            self.roots.append(path.resolve())
            self.labels.append("--artifact-root")

    def allows(self, path: Path) -> bool:
        """Whether ``path``, every link in it followed, is inside one of the roots."""
        resolved = path.resolve()
        return any(resolved.is_relative_to(root) for root in self.roots)

    def confine(self, location: str, what: str, experiment_location: str = "", run_id: str = "") -> Path:
        """The resolved directory of local ``location`` when inside a root; else ``ArtifactRootRefused``
        naming ``what`` (``run <id>``) and how to allow it: ``--artifact-root`` the experiment's location
        when the run's is MLflow's ``<experiment location>/<run id>/artifacts`` (one option for every
        run of the experiment; the artifact root above it for MLflow's ``<root>/<experiment id>``),
        else the location itself."""
        path = local_path(location)
        resolved = path.resolve()
        if self.allows(resolved):
            return resolved
        suggest = resolved
        if experiment_location and run_id and is_local(experiment_location):
            base = local_path(experiment_location).resolve()
            if resolved == base / run_id / "artifacts":
                # MLflow's default experiment location is <artifact root>/<experiment id>: allow that root
                suggest = base.parent if base.name.isdigit() else base
        shown = redact_url(location)
        via = "" if str(resolved) == str(path) else f" (links followed: {resolved})"
        allowed = ", ".join(f"{root}: {label}" for root, label in zip(self.roots, self.labels)) or "none"
        raise ArtifactRootRefused(
            f"{what}: artifact files not imported: {shown}{via} is outside the directories this import reads "
            f"artifact files from ({allowed}); if this store keeps its artifacts there, allow it with "
            f"--artifact-root {suggest} (artifact_roots=[...] in Python)")


def through_the_store(source: Any, location: str, what: str) -> str:
    """``location`` (a run's artifact location, a model version's) as the place it names:
    ``runs:/<id>/<path>`` is the place under that run's artifact location (read through the source,
    a server's too), which the caller then confines or checks like any (MLflow's own download follows
    another run's row, one deleted or of an experiment not imported, to wherever it points: a crafted
    database's ``file:///home/me/.ssh``, a server's local path, any bucket). ``models:/`` (a registered
    version's files), or a run's location that is itself one of these, is refused
    (``ArtifactRootRefused``): a store's own rows name their files directly."""
    scheme = urlparse(location).scheme.lower()
    if scheme not in ("runs", "models"):
        return location
    refused = ArtifactRootRefused(f"{what}: artifact files not imported: {redact_url(location)} names another "
                                  f"{'registered model' if scheme == 'models' else 'run'}'s files, which MLflow "
                                  "would resolve through the store")
    if scheme == "models":
        raise refused
    run_id, _, path = location[len("runs:"):].lstrip("/").partition("/")
    base = str(source.client.get_run(run_id).info.artifact_uri or "")
    if not base or urlparse(base).scheme.lower() in ("runs", "models"):
        raise refused
    path = path.strip("/")
    return base.rstrip("/") + (f"/{path}" if path else "")


def check_fetchable(source: Any, location: str, what: str) -> None:
    """Raise ``RemoteNotFetched`` unless the files at ``location`` (not local: those are confined
    by ``ArtifactRoots``) may be fetched: a tracking server's own ``mlflow-artifacts:`` location
    (through the server the user named), or any remote location when the user passed
    ``--fetch-remote-artifacts`` (``source.fetch_remote``)."""
    parsed = urlparse(location)
    scheme = parsed.scheme.lower()
    host = parsed.netloc.lower()
    if scheme == "mlflow-artifacts" and not host and source.kind != "http":
        # MLflow would ask whichever server the process's tracking URI names: not this store's
        raise ArtifactRootRefused(f"{what}: artifact files not imported: {redact_url(location)} names a tracking "
                                  "server's artifact store without naming the server; import from that server "
                                  "(tracklet import mlflow http://HOST:PORT) to fetch them through it")
    if scheme in LOCAL_SCHEMES or getattr(source, "fetch_remote", False):
        return
    allow = f"if you trust this store with that, pass {FETCH_OPTION} (fetch_remote_artifacts=True in Python)"
    if scheme == "mlflow-artifacts" and source.kind == "http":
        if not host or host == urlparse(source.uri).netloc.lower():
            return  # through the server this import reads from
        raise RemoteNotFetched(f"{what}: artifact files not imported: {redact_url(location)} names another server "
                               f"than {redact_url(source.uri)} (MLflow would fetch them from there); not fetched "
                               f"by default: {allow}")
    raise RemoteNotFetched(
        f"{what}: artifact files not imported: {redact_url(location)} is a remote location ({scheme}:), not fetched "
        f"by default (an MLflow store can name any URL: an internal host, a bucket this machine's credentials "
        f"reach); {allow}")


def repository(source: Any, location: str) -> Any:
    """MLflow's artifact repository for a remote ``location`` checked by ``check_fetchable``
    (``mlflow-artifacts:`` resolved against the source server). A scheme whose client library is
    missing (``s3://`` without ``boto3``) raises ``ImportError`` here or when it is used."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    tracking_uri = source.uri if source.kind == "http" else None
    return get_artifact_repository(location, tracking_uri=tracking_uri)


def remote_files(repo: Any, limit: int = 1_000_000) -> list[tuple[str, int]]:
    """``(path, size)`` of every file in a remote artifact repository, listed directory by directory
    (nothing downloaded); at most ``limit`` files (a ``ValueError`` past it)."""
    found: list[tuple[str, int]] = []
    pending = [""]
    while pending:
        directory = pending.pop()
        for info in repo.list_artifacts(directory or None):
            path = str(info.path).strip("/")
            if not path or path == directory:
                continue
            if info.is_dir:
                pending.append(path)
            else:
                found.append((path, int(info.file_size or 0)))
                if len(found) > limit:
                    raise ValueError(f"more than {limit:,} artifact files")
    return sorted(found)


def files_digest(files: list[tuple[str, int]]) -> str:
    """What an import compares a run's artifact files by: their paths and sizes."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()


def regular_files(directory: Path) -> list[tuple[str, int]]:
    """``(path relative to directory, size)`` of every regular file under ``directory``, no link
    followed: a link (to a file or a directory), a FIFO or a device is not an artifact file MLflow
    wrote, and a link could lead out of an allowed root."""
    found = []
    for where, directories, names in os.walk(directory, followlinks=False):
        directories.sort()
        for name in sorted(names):
            path = Path(where, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                found.append((path.relative_to(directory).as_posix(), info.st_size))
    return sorted(found)


__all__ = ["ArtifactRoots", "RemoteNotFetched", "check_fetchable", "files_digest", "is_local", "local_path",
           "regular_files", "remote_files", "repository", "through_the_store"]
