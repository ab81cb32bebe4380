"""``tracklet import mlflow``: an MLflow tracking store → tracklet runs, read through MLflow's own
client (``MlflowClient``, from the ``mlflow-skinny`` package: ``pip install 'tracklet[mlflow]'``).

Sources: a file store directory (``mlruns/``), an MLflow database (``mlflow.db`` or a
``sqlite:///`` URI) or a tracking server (``http(s)://``). The source is only read: a path that
isn't an MLflow store is refused before MLflow sees it, because MLflow's stores create what they
don't find (a file store's root, a database's tables) or upgrade an older database in place.

What maps (docs/import.md, "MLflow: what maps to what"):

- experiment → project (its name made a valid project name; ``--project`` puts every run in one);
- run → run: its id, name, start and end time; status ``FINISHED`` → finished (exit 0),
  ``FAILED`` → failed (exit 1), ``KILLED`` → failed (exit 130, as a tracklet run stopped by
  Ctrl-C), ``RUNNING``/``SCHEDULED`` → no exit record (``crashed``, as a W&B run without one);
- params → config (a value that is exactly an int's, a float's or a bool's text becomes that);
- metrics → history: every point of every key with its step and time, read a page at a time per
  key and merged by step, so memory is bounded by the page size, not the history's length (a file
  store's metric files and an SQLite database's metrics table are read directly, read-only: MLflow's
  stores hold a key's whole file, or build an ORM object per point);
- tags: ``mlflow.user`` → the run's user (``metadata["username"]``, unverified), ``mlflow.note.content``
  → notes, ``mlflow.parentRunId`` → group, ``mlflow.source.name`` → command,
  ``mlflow.source.git.commit``/``branch``/``repoURL`` → the environment's git commit, branch, remote
  (``mlflow.source.type`` says how to read the source name: ``source_command``);
  other ``mlflow.*`` tags are not imported; the user's own tags → tags ``key=value`` (``key`` when empty);
- the run's artifact files → one version of the tracklet artifact ``mlflow-<run id>`` (type
  ``mlflow-artifacts``), logged by the run.

- registered models → collections of the ``model`` registry, their versions linked to the
  artifact versions holding their files (``mlflow_registry``).

Not imported: datasets/inputs, traces, logged models' metadata, deleted experiments and runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import io
import json
import math
import os
import re
import sqlite3
import stat
import struct
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote, urlparse

from tracklet.core.encoder import TrackletWarning
from tracklet.core.layout import MAX_NAME_CHARS, RunPaths, check_name, is_valid_name
from tracklet.core.redact import redact_command, redact_url
from tracklet.errors import ArtifactRootRefused
from tracklet.importers.writer import (
    ImportedRun,
    RunWriter,
    SourceError,
    SourceIdentity,
    base_run_start,
    check_existing,
    exit_record,
    read_marker,
    source_user_name,
    write_marker,
)
from tracklet.proto import records_pb2 as pb

Progress = Callable[[str, int, "int | None"], None]

# Points per page of one key's history; with many keys a page is smaller, so all pages held at
# once (one per key, for the merge by step) stay under POINTS_IN_MEMORY.
PAGE_POINTS = 10_000
MIN_PAGE_POINTS = 500
POINTS_IN_MEMORY = 100_000
ROWS_PER_CHUNK = 10_000  # rows handed to the writer at a time
RUNS_PER_PAGE = 1_000

# MLflow run status → (exit code, error text); statuses not here get no exit record.
EXIT_CODES = {"FINISHED": (0, ""), "FAILED": (1, "MLflow run status FAILED"),
              "KILLED": (130, "MLflow run status KILLED")}
ARTIFACT_TYPE = "mlflow-artifacts"
_SQLITE_HEADER = b"SQLite format 3\x00"
_MLFLOW_TABLES = {"experiments", "runs", "metrics", "params", "tags", "alembic_version"}
_RUN_ID = re.compile(r"[0-9a-f]{32}")
#: The most bytes of one file of a file store's run that MLflow reads whole (meta.yaml, a param, a
#: tag: MLflow writes at most a few KiB), and of one line of a metric file (``timestamp value step``).
MAX_RUN_FILE_BYTES = 1 << 20
MAX_METRIC_LINE = 64 << 10
_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")


def _mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError:
        raise SourceError("tracklet import mlflow reads MLflow stores with MLflow's own client: "
                          "pip install 'tracklet[mlflow]' (mlflow-skinny)") from None
    return mlflow


# ---------------------------------------------------------------- the source


class MlflowSource:
    """One MLflow tracking store, checked to be one, and a client on it. ``kind`` is ``file``,
    ``sql`` or ``http``; ``root`` is a file store's directory."""

    def __init__(self, location: str | os.PathLike, artifact_roots: str | os.PathLike | Iterable[str | os.PathLike] = (),
                 fetch_remote: bool = False) -> None:
        from tracklet.importers.mlflow_artifacts import ArtifactRoots

        self.location = str(location)
        # Whether remote artifact locations (s3://, https://, ...) the store names are fetched
        # (--fetch-remote-artifacts): mlflow_artifacts.check_fetchable.
        self.fetch_remote = bool(fetch_remote)
        self.kind, self.uri, self.root = _resolve(self.location)
        self.database = Path(self.uri.removeprefix("sqlite:///")) if self.uri.startswith("sqlite:///") else None
        # Where local artifact files may be read (mlflow_artifacts): the store's own directory, the
        # database's, none of a server's; and the user's --artifact-root directories.
        own = self.root if self.root is not None else self.database.parent if self.database is not None else None
        self.artifact_roots = ArtifactRoots(own, "the file store" if self.root is not None else "the database's directory",
                                            artifact_roots)
        self.experiment_locations: dict[str, str] = {}  # experiment id → artifact_location (refusals' hints)
        self._metric_keys: dict[str, list[str]] = {}  # a file store's runs' keys (their Run has no metrics)
        self._bad_metrics: dict[str, dict[str, str]] = {}  # a file store's metric files that aren't files
        _mlflow()
        from mlflow.tracking import MlflowClient

        with _file_store_allowed(self.kind == "file"):
            self.client = MlflowClient(tracking_uri=self.uri)
            try:
                self.store = self.client._tracking_client.store  # the paged metric history (not on MlflowClient)
            except Exception as error:
                raise SourceError(f"{self.location}: MLflow can't open it as a tracking store: {_short(error)}") from None

    def close(self) -> None:
        """Close the connections MLflow opened on a database: it keeps an engine (a pool of
        connections) per database URI and store kind (tracking, model registry) for the process's
        life, so a process importing many databases (a notebook, a test run) held the descriptors of
        each for ever. Their pools are emptied (``dispose``); the engines stay usable, by MLflow
        clients the caller has on the same database too."""
        if self.database is None:
            return
        import sys

        for name in ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store"):
            module = sys.modules.get(name)  # any state: read, never imported (not loaded: it opened nothing)
            engines = getattr(getattr(module, "SqlAlchemyStore", None), "_engine_map", None)
            engine = engines.get(self.uri) if isinstance(engines, dict) else None
            if engine is not None:
                engine.dispose()

    def experiments(self, only: Iterable[str] = ()) -> list[Any]:
        """Active experiments, oldest first; ``only``: names or ids to keep (each must exist)."""
        from mlflow.entities import ViewType

        found: list[Any] = []
        token = None
        try:
            while True:
                page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                                      page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    break
        except Exception as error:
            raise SourceError(f"{self.location}: can't list its experiments: {_short(error)}") from None
        wanted = list(only)
        if wanted:
            picked = [e for e in found if e.name in wanted or e.experiment_id in wanted]
            missing = [w for w in wanted if not any(w in (e.name, e.experiment_id) for e in picked)]
            if missing:
                raise SourceError(f"{self.location}: no active experiment named {', '.join(map(repr, missing))} "
                                  f"(it has: {', '.join(repr(e.name) for e in found[:20])})")
            found = picked
        self.experiment_locations.update((e.experiment_id, e.artifact_location or "") for e in found)
        return sorted(found, key=lambda e: (int(e.experiment_id) if e.experiment_id.isdigit() else 0,
                                            e.experiment_id))

    def runs(self, experiment_id: str) -> Iterator[tuple[str, Any, str | None]]:
        """``(run id, run, None)`` for each of the experiment's active runs, oldest first, and
        ``(run id, None, why)`` for each run of a file store or database that can't be read."""
        if self.root is not None:
            yield from self._file_store_runs(experiment_id)
            return
        if self.database is not None:
            yield from self._database_runs(experiment_id)
            return
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self.client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                                           max_results=RUNS_PER_PAGE, order_by=["attributes.start_time ASC"],
                                           page_token=token)
            for run in page:
                yield run.info.run_id, run, None
            token = page.token
            if not token:
                return

    def _database_runs(self, experiment_id: str) -> Iterator[tuple[str, Any, str | None]]:
        """An MLflow database's runs one at a time (``get_run``): MLflow's search fails whole on one
        run whose text isn't UTF-8 (a param's value, say), which lost every run of the database.
        The ids, oldest run first, through a read-only connection (the schema checked on opening)."""
        assert self.database is not None
        connection = sqlite3.connect(f"{self.database.as_uri()}?mode=ro", uri=True)
        connection.text_factory = lambda data: data.decode("utf-8", "replace")
        try:
            ids = [row[0] for row in connection.execute(
                "SELECT run_uuid FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active' "
                "ORDER BY start_time, run_uuid", (experiment_id,))]
        finally:
            connection.close()
        for run_id in ids:
            try:
                run = self.client.get_run(run_id)
            except Exception as error:
                yield run_id, None, f"MLflow can't read this run ({_short(error)})"
                continue
            yield run_id, run, None

    def _file_store_runs(self, experiment_id: str) -> Iterator[tuple[str, Any, str | None]]:
        """A file store's runs one directory at a time: its search fails whole on one damaged
        ``meta.yaml`` (and skips a missing one with a log line only)."""
        assert self.root is not None
        directory = self.root / experiment_id
        names = sorted(p.name for p in directory.iterdir() if p.is_dir() and _RUN_ID.fullmatch(p.name))
        found = []
        for name in names:
            if not (directory / name / "meta.yaml").is_file():
                yield name, None, "MLflow can't read this run: its meta.yaml is missing"
                continue
            try:
                _check_run_files(directory / name)
            except (OSError, ValueError) as error:
                yield name, None, f"not imported: {_short(error)}"
                continue
            try:
                run = self._file_store_run(name)
            except Exception as error:
                yield name, None, f"MLflow can't read this run ({_short(error)})"
                continue
            if run.info.lifecycle_stage == "active":
                found.append(run)
        for run in sorted(found, key=lambda run: (run.info.start_time or 0, run.info.run_id)):
            yield run.info.run_id, run, None

    def _file_store_run(self, run_id: str) -> Any:
        """The run without its metrics: MLflow's file store ``get_run`` reads every point of every
        key (to find the latest values), all of a key's at once. The file store's own readers of
        the rest (a store in maintenance mode since MLflow 3.7: its internals no longer change)."""
        from mlflow.entities import Run, RunData

        store = self.store
        info = store._get_run_info(run_id)
        if info is None:
            raise ValueError("its meta.yaml is empty")
        _, keys = store._get_run_files(info, "metric")
        assert self.root is not None
        folder = self.root / info.experiment_id / run_id / "metrics"
        self._metric_keys[run_id], self._bad_metrics[run_id] = [], {}
        for key in sorted(keys):
            if stat.S_ISREG(os.lstat(folder / key).st_mode):
                self._metric_keys[run_id].append(key)
            else:  # a link, a device, a FIFO: no metric file MLflow wrote (``_open_regular``)
                self._bad_metrics[run_id][f"metric {key!r}"] = f"{folder / key} is not a regular file"
        return Run(info, RunData(params=store._get_all_params(info), tags=store._get_all_tags(info)))

    def dropped_metrics(self, run: Any) -> dict[str, str]:
        """``{"metric 'key'": why}`` of a file store run's metric files that are not read at all."""
        return dict(self._bad_metrics.get(run.info.run_id, {}))

    def metric_keys(self, run: Any) -> list[str]:
        if self.root is not None:
            return self._metric_keys[run.info.run_id]
        return sorted(run.data.metrics)

    def metric_state(self, run: Any) -> list[Any]:
        """What changes when a run logs another point: each key's latest point, or (a file store,
        whose run here has no latest values) each metric file's size and last 4 KiB's digest."""
        if self.root is None:
            return sorted((m.key, m.step, m.timestamp, repr(m.value)) for m in run.data.to_proto().metrics)
        directory = self.root / run.info.experiment_id / run.info.run_id / "metrics"
        state = []
        for key in self.metric_keys(run):
            with _open_regular(directory / key) as file:
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - 4096))
                state.append((key, size, hashlib.sha256(file.read(4096)).hexdigest()))
        return state

    def history(self, run: Any, key: str, page: int, dropped: dict[str, str]) -> Iterator[tuple[int, float, float]]:
        """``(step, time in seconds, value)`` of every point of ``key``, in the store's order."""
        if self.root is not None:
            yield from self._file_history(run, key, dropped)
            return
        if self.database is not None:
            yield from self._sqlite_history(run, key, page)
            return
        token = None
        while True:
            points = self.store.get_metric_history(run.info.run_id, key, max_results=page, page_token=token)
            token = getattr(points, "token", None)
            if len(points) > page:  # a server that doesn't page metric history: the key's whole history
                yield from spooled(points, page)
            else:
                for metric in points:
                    yield int(metric.step), metric.timestamp / 1000.0, float(metric.value)
            if not token:
                return

    def _sqlite_history(self, run: Any, key: str, page: int) -> Iterator[tuple[int, float, float]]:
        """An MLflow SQLite database's points of ``key``, in MLflow's order, ``page`` rows at a time
        through a read-only connection: MLflow's store builds (and, on commit, expires) an ORM
        object per point, ~30 µs each. The schema is the installed MLflow's (checked on opening)."""
        assert self.database is not None
        connection = sqlite3.connect(f"{self.database.as_uri()}?mode=ro", uri=True)
        try:
            cursor = connection.execute(
                "SELECT step, timestamp, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
                "ORDER BY timestamp, step, value", (run.info.run_id, key))
            while True:
                rows = cursor.fetchmany(page)
                if not rows:
                    return
                for step, timestamp, value, is_nan in rows:
                    yield int(step), timestamp / 1000.0, math.nan if is_nan else float(value)
        finally:
            connection.close()

    def _file_history(self, run: Any, key: str, dropped: dict[str, str]) -> Iterator[tuple[int, float, float]]:
        """A file store's metric file, line by line (``timestamp value [step]``): MLflow's file store
        reads a key's whole history into memory for every page it returns. (Its ``get_run`` still
        reads each key's whole history once, a key at a time, for the latest value.)"""
        assert self.root is not None
        path = self.root / run.info.experiment_id / run.info.run_id / "metrics" / key
        bad = 0
        with _open_regular(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(_bounded_lines(lines), 1):
                if line is None:
                    bad += 1
                    if bad == 1:
                        dropped[f"metric {key!r}"] = (f"line {number} of {path} is longer than "
                                                      f"{MAX_METRIC_LINE:,} characters")
                    continue
                parts = line.split()
                if not parts:
                    continue
                try:
                    if len(parts) not in (2, 3, 5):  # 5: the step, then a dataset's name and digest
                        raise ValueError(f"{len(parts)} fields")
                    point = (int(parts[2]) if len(parts) > 2 else 0, int(parts[0]) / 1000.0, float(parts[1]))
                except ValueError as error:
                    bad += 1
                    if bad == 1:
                        dropped[f"metric {key!r}"] = f"line {number} of {path} is not 'timestamp value step' ({error})"
                    continue
                yield point
        if bad > 1:
            dropped[f"metric {key!r}"] += f" (and {bad - 1} more such line(s))"

    def run_artifacts(self, run: Any) -> RunArtifacts:
        """What the run's artifact files are, nothing downloaded: a local directory holding them (the
        store's own, inside ``artifact_roots``), or a remote repository and its listing (a server's
        ``mlflow-artifacts:``; any other remote location only with ``fetch_remote``); ``missing``
        says why they can't be read (refused, not fetched, unreachable)."""
        from tracklet.importers.mlflow_artifacts import (
            check_fetchable,
            is_local,
            local_path,
            regular_files,
            remote_files,
            repository,
            through_the_store,
        )

        info = run.info
        uri = info.artifact_uri or ""
        found = RunArtifacts(redact_url(uri))
        what = f"run {info.run_id}"
        if not uri:
            return found  # (a path "" would be the working directory)
        try:
            uri = through_the_store(self, uri, what)  # runs:/ and models:/: where they lead, or refused
            if is_local(uri):
                local = local_path(uri)
                if self.root is not None and (not local.is_dir() or not self.artifact_roots.allows(local)):
                    # A file store moved or copied from another machine: its runs' artifact_uri still
                    # names where it was; MLflow keeps a run's files in the run's own directory.
                    own = self.root / info.experiment_id / info.run_id / "artifacts"
                    if not local.is_dir() or own.is_symlink() or (own.is_dir() and any(own.iterdir())):
                        local, uri = own, str(own)
                if not os.path.lexists(local):
                    return found  # MLflow makes a run's artifact directory when it logs the first file
                directory = self.artifact_roots.confine(uri, what, self.experiment_locations.get(info.experiment_id, ""),
                                                        info.run_id)
                if directory.is_dir():
                    found.directory, found.files = directory, regular_files(directory)
                return found
            check_fetchable(self, uri, what)
            found.repository = repository(self, uri)
            found.files = remote_files(found.repository)
        except ArtifactRootRefused as error:  # refused or not fetched: the message says it all
            found.missing = str(error)
        except ImportError as error:  # MLflow's client of that store needs a library (gs:// without google-cloud-storage)
            found.missing = (f"artifact files ({found.location}) not imported: reading {urlparse(uri).scheme}: locations "
                             f"needs the Python module {error.name or _short(error)!r}, which is not installed")
        except Exception as error:  # an artifact store this machine can't reach
            found.missing = f"artifact files ({found.location}) not imported: {type(error).__name__}: {_short(error)}"
        if found.missing:
            found.directory, found.repository, found.files = None, None, []
        return found

    def fetch(self, found: RunArtifacts, scratch: Path) -> Path:
        """A local directory holding ``found``'s files: the one they are in, or a download into ``scratch``."""
        if found.directory is not None:
            return found.directory
        assert found.repository is not None
        return Path(found.repository.download_artifacts("", dst_path=str(scratch)))


class RunArtifacts:
    """A run's artifact files as ``MlflowSource.run_artifacts`` found them: ``files`` (path, size),
    read from ``directory`` (local) or ``repository`` (downloaded when imported); ``missing`` the
    reason they can't be read (then ``files`` is empty); ``location`` the run's location, shown."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.files: list[tuple[str, int]] = []
        self.directory: Path | None = None
        self.repository: Any = None
        self.missing = ""

    def state(self) -> dict[str, Any]:
        """What the import marker records of them (compared by the next import)."""
        from tracklet.importers.mlflow_artifacts import files_digest

        if self.missing:
            return {"missing": self.missing, "location": self.location}
        if not self.files:
            return {"none": True}
        return {"files": files_digest(self.files), "count": len(self.files)}


_POINT = struct.Struct("<qdd")  # step, time in seconds, value


def spooled(points: list[Any], page: int) -> Iterator[tuple[int, float, float]]:
    """``(step, time, value)`` of ``points`` (MLflow ``Metric`` objects, emptied here) read back
    ``page`` at a time from a temporary file: a server that answers a key's whole history at once
    (older MLflow servers ignore the page size) would otherwise keep every key's whole history in
    memory while the keys are merged by step; so only the key being fetched is held whole."""
    with tempfile.TemporaryFile(prefix="tracklet-mlflow-history-") as spool:
        for start in range(0, len(points), page):
            spool.write(b"".join(_POINT.pack(int(metric.step), metric.timestamp / 1000.0, float(metric.value))
                                 for metric in points[start:start + page]))
        points.clear()
        spool.seek(0)
        while True:
            chunk = spool.read(page * _POINT.size)
            if not chunk:
                return
            yield from _POINT.iter_unpack(chunk)


def _open_regular(path: Path) -> Any:
    """A file of the store opened for reading, refused (``ValueError``) unless it is a regular
    file and not a link: a crafted store's ``metrics/loss -> /dev/zero`` (or a FIFO, or a link to a
    file of this machine's) is no metric file MLflow wrote."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _bounded_lines(lines: Any) -> Iterator[str | None]:
    """The lines of a text file, each read at most ``MAX_METRIC_LINE`` characters at a time: a
    longer line is None (its rest skipped), never held whole in memory."""
    while True:
        line = lines.readline(MAX_METRIC_LINE)
        if not line:
            return
        if len(line) < MAX_METRIC_LINE or line.endswith("\n"):
            yield line
            continue
        while (rest := lines.readline(MAX_METRIC_LINE)) and not rest.endswith("\n"):
            pass
        yield None


def _check_run_files(run_dir: Path) -> None:
    """Raise ``ValueError`` naming the first file MLflow would read whole for a file store's run
    (``meta.yaml``, ``params/*``, ``tags/*``) that is not a regular file of at most
    ``MAX_RUN_FILE_BYTES`` (a link, a device, a FIFO: MLflow writes none): MLflow reads them with no
    bound, and a crafted store could make it read ``/dev/zero`` until memory runs out, block on a
    FIFO, or import a file of this machine's as a param. No folder of the run (``params``, ``tags``,
    ``metrics``, the run's own) may be or hold a link. (Metric files are checked one by one:
    ``MlflowSource._file_store_run``.)"""
    candidates = [run_dir / "meta.yaml"]
    if run_dir.is_symlink():
        raise ValueError(f"{run_dir} is a symbolic link")
    for folder in ("params", "tags", "metrics"):
        # A folder that is a link (or holds one) leads out of the store: a metric file checked on
        # its own (a regular file, not a link) under ``metrics -> ~/numbers`` was one of this
        # machine's, its lines imported as points.
        base = run_dir / folder
        if base.is_symlink():
            raise ValueError(f"{base} is a symbolic link")
        if base.is_dir():
            for where, directories, names in os.walk(base):
                for directory in directories:
                    if os.path.islink(os.path.join(where, directory)):
                        raise ValueError(f"{os.path.join(where, directory)} is a symbolic link")
                if folder != "metrics":  # metric files: checked one by one, read line by line (``_file_store_run``)
                    candidates += [Path(where, name) for name in names]
    for path in candidates:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_size > MAX_RUN_FILE_BYTES:
            raise ValueError(f"{path} holds {info.st_size:,} bytes; MLflow writes at most a few KiB there")


@contextlib.contextmanager
def _file_store_allowed(needed: bool) -> Iterator[None]:
    """MLflow 3.7+ refuses to open a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is true (it
    wants new runs in a database); reading one to move off it is what that switch is for."""
    if not needed or os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:400]


def _resolve(location: str) -> tuple[str, str, Path | None]:
    """``(kind, tracking URI, file store root)`` for a path or URI, checked to be an MLflow store."""
    parsed = urlparse(location)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        _check_server(location)
        return "http", location.rstrip("/"), None
    if scheme == "sqlite":
        db_path = location.split(":///", 1)[1] if ":///" in location else ""
        if not db_path or db_path.startswith("file:"):
            raise SourceError(f"{location}: not a sqlite:///PATH URI")
        return _sqlite(Path(db_path))
    if scheme == "file":
        return _file_store(Path(unquote(parsed.path)))
    if len(scheme) > 1 and "://" in location:
        raise SourceError(f"{location}: tracklet import mlflow reads a file store directory, an MLflow database "
                          f"(sqlite:///...) or a tracking server (http(s)://...); not {scheme}://")
    path = Path(location).expanduser()
    if not path.exists():
        raise SourceError(f"{location}: no such file or directory")
    if path.is_file():
        return _sqlite(path)
    return _file_store(path)


def _file_store(path: Path) -> tuple[str, str, Path | None]:
    if not path.is_dir():
        raise SourceError(f"{path}: no such directory" if not path.exists() else f"{path} is not a directory")
    path = path.resolve()
    if not any((child / "meta.yaml").is_file() for child in path.iterdir() if child.is_dir()):
        hint = " (it holds mlruns/: pass that)" if (path / "mlruns").is_dir() else ""
        raise SourceError(f"{path} is not an MLflow file store: no experiment directory (<id>/meta.yaml) in it{hint}")
    for child in path.iterdir():  # MLflow reads every experiment's meta.yaml and tags whole, to list any
        if child.is_dir() and not child.is_symlink() and os.path.lexists(child / "meta.yaml"):
            try:
                _check_run_files(child)
            except (OSError, ValueError) as error:
                raise SourceError(f"{path}: experiment {child.name} can't be read: {_short(error)}") from None
    return "file", path.as_uri(), path


def _sqlite(path: Path) -> tuple[str, str, Path | None]:
    """An MLflow SQLite database, checked read-only: MLflow's store would create its tables in any
    other database, and upgrade one an older MLflow wrote, in place."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    try:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise SourceError(f"{path}: can't read it ({error.strerror or error})") from None
    if header != _SQLITE_HEADER:
        raise SourceError(f"{path} is not an MLflow store: neither a directory (mlruns/) nor a SQLite database")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = (connection.execute("SELECT version_num FROM alembic_version").fetchone() or ("",))[0] \
                if "alembic_version" in tables else ""
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise SourceError(f"{path}: can't read it as a SQLite database ({error})") from None
    missing = _MLFLOW_TABLES - tables
    if missing:
        raise SourceError(f"{path} is a SQLite database but not an MLflow one (no {', '.join(sorted(missing))} "
                          f"table)")
    _mlflow()
    from mlflow.store.db.utils import _get_latest_schema_revision

    head = _get_latest_schema_revision()
    if revision != head:
        import mlflow

        raise SourceError(
            f"{path}: an MLflow database at schema revision {revision or '(none)'}, and the installed MLflow "
            f"({mlflow.__version__}) reads {head}; MLflow would migrate it in place, and an import never writes "
            f"to its source. Import a migrated copy: cp {path} /tmp/copy.db && mlflow db upgrade "
            f"sqlite:////tmp/copy.db, then tracklet import mlflow /tmp/copy.db")
    return "sql", f"sqlite:///{path.resolve()}", None


def _check_server(uri: str) -> None:
    """A tracking server answers its experiments route: one quick request, instead of MLflow's
    retries (minutes) against an address where none listens."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:  # noqa: S310 (http(s) only, checked above)
            body = response.read(1 << 20)
    except urllib.error.HTTPError as error:
        raise SourceError(f"{uri}: not an MLflow tracking server (GET {url} answered {error.code})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SourceError(f"{uri}: no MLflow tracking server answers there ({reason})") from None
    try:
        json.loads(body)
    except ValueError:
        raise SourceError(f"{uri}: not an MLflow tracking server (its experiments route didn't answer JSON)") from None


# ---------------------------------------------------------------- mapping


def project_name(experiment_name: str, experiment_id: str) -> str:
    """A valid project name for an experiment: runs of other characters become ``-``
    (``/Users/me/churn`` → ``Users-me-churn``); ``mlflow-<id>`` when nothing is left."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment_name).strip("-._")[:MAX_NAME_CHARS].rstrip("-._")
    return name if is_valid_name(name) else f"mlflow-{experiment_id}"


def tracklet_run_id(mlflow_id: str) -> str:
    """The MLflow run id (32 hex digits) when it is a valid tracklet run id, else a digest of it."""
    if is_valid_name(mlflow_id):
        return mlflow_id
    return "mlflow-" + hashlib.sha256(mlflow_id.encode()).hexdigest()[:12]


def param_value(text: str) -> Any:
    """MLflow keeps every param as text (``str(value)``): text that is exactly an int's, a
    float's or a bool's becomes that value again; anything else stays text."""
    if _INT.fullmatch(text):
        return int(text)
    if text in ("True", "False"):
        return text == "True"
    if text and text[0] in "-0123456789in" and len(text) < 40:
        try:
            number = float(text)
        except ValueError:
            return text
        if math.isfinite(number) and repr(number) == text:
            return number
    return text


def run_digest(run: Any, metrics: list[Any], artifacts: list[tuple[str, int]] | None = None) -> str:
    """What an unchanged run has the same of: status, times, name, params, tags and its metrics'
    state (``MlflowSource.metric_state``): a run that logged more since reads ``changed``. Its
    artifact files are compared apart (the marker's ``artifacts``, ``RunArtifacts.state``): whether
    they can be read depends on the import's options (``--artifact-root``, ``--fetch-remote-artifacts``),
    not on the source. ``artifacts``: the digest that markers of earlier imports hold (before session
    26), the files then imported included (read back to tell those runs unchanged)."""
    info, data = run.info, run.data
    content = {
        "run_id": info.run_id, "status": info.status, "start": info.start_time, "end": info.end_time,
        "name": info.run_name, "params": sorted(data.params.items()), "tags": sorted(data.tags.items()),
        "metrics": metrics,
    }
    if artifacts is not None:
        content["artifacts"] = sorted(artifacts)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _run_start(run: Any, run_id: str, project: str) -> pb.Record:
    info, tags = run.info, run.data.tags
    start_time = (info.start_time or 0) / 1000.0
    record = base_run_start(run_id, project, info.run_name or tags.get("mlflow.runName") or run_id, start_time)
    start = record.run_start
    start.notes = tags.get("mlflow.note.content", "")
    start.group = tags.get("mlflow.parentRunId", "")
    start.tags.extend(f"{key}={value}" if value else key
                      for key, value in sorted(tags.items()) if not key.startswith("mlflow."))
    start.command.extend(redact_command(source_command(tags)))
    start.username = source_user_name(tags.get("mlflow.user") or info.user_id or "")
    return record


def source_command(tags: dict[str, str]) -> list[str]:
    """What ran, from ``mlflow.source.name`` as ``mlflow.source.type`` says to read it: a script's or
    notebook's path (``LOCAL``, ``NOTEBOOK``, none) is the command; a ``PROJECT``'s is the project's
    URI, run again with ``mlflow run URI -e ENTRY_POINT``; a ``JOB``'s is a job id, not a program: none."""
    name = tags.get("mlflow.source.name", "")
    kind = tags.get("mlflow.source.type", "").upper()
    if not name or kind == "JOB":
        return []
    if kind == "PROJECT":
        entry = tags.get("mlflow.project.entryPoint", "")
        return ["mlflow", "run", redact_url(name), *(["-e", entry] if entry else [])]
    return [name]


def _environment(run: Any) -> pb.Record | None:
    tags = run.data.tags
    record = pb.Record()
    env = record.environment
    env.git_commit = tags.get("mlflow.source.git.commit", "")
    env.git_branch = tags.get("mlflow.source.git.branch", "")
    env.git_remote = redact_url(tags.get("mlflow.source.git.repoURL", ""))
    return record if env.ByteSize() else None


def merged_rows(streams: dict[str, Iterator[tuple[int, float, float]]], counts: dict[str, int]) -> Iterator[tuple]:
    """Rows ``(step, time, keys, values)`` from each key's points, merged by step: one row per
    step, at the latest time of its points (tracklet keeps one time per step). A key's points are
    expected in step order (MLflow's are, unless a step was logged after a later one: those stay
    in the order MLflow returned them). A key logged twice at one step keeps its last value
    (``counts["collapsed"]``)."""
    merged = heapq.merge(*(_tagged(index, stream) for index, stream in enumerate(streams.values())),
                         key=lambda point: point[0])
    names = list(streams)
    keysets: dict[tuple, tuple] = {}
    step: int | None = None
    row: dict[int, float] = {}
    latest = 0.0
    for point_step, when, index, value in merged:
        if point_step != step:
            if row:
                yield _row(step, latest, row, names, keysets)
            step, row, latest = point_step, {}, when
        elif index in row:
            counts["collapsed"] = counts.get("collapsed", 0) + 1
        row[index] = value
        if when > latest:
            latest = when
    if row:
        yield _row(step, latest, row, names, keysets)


def _tagged(index: int, points: Iterator[tuple[int, float, float]]) -> Iterator[tuple[int, float, int, float]]:
    for step, when, value in points:
        yield step, when, index, value


def _row(step: Any, when: float, row: dict[int, float], names: list[str], keysets: dict[tuple, tuple]) -> tuple:
    order = sorted(row)
    keys = tuple(names[index] for index in order)
    return step, when, keysets.setdefault(keys, keys), tuple(row[index] for index in order)


# ---------------------------------------------------------------- importing


def import_run(source: MlflowSource, run: Any, root: Path, project: str, progress: Progress | None = None,
               scratch: Path | None = None) -> ImportedRun:
    """Import one MLflow run (a ``mlflow.entities.Run``) into project ``project`` of the data root;
    a no-op when it was imported before and is unchanged. A run imported before without its artifact
    files (refused, not fetched, unreachable) that this import can read gets them now (``completed``)."""
    info = run.info
    run_id = tracklet_run_id(info.run_id)
    paths = RunPaths(root, project, run_id)
    name = info.run_name or run_id
    result = ImportedRun(f"{project}/{run_id}", name, f"{source.location} run {info.run_id}", "imported")
    found = source.run_artifacts(run)
    metrics = source.metric_state(run)
    identity = SourceIdentity("mlflow", info.run_id, (source.location,), run_digest(run, metrics),
                              {"artifacts": found.state()})
    existing = check_existing(paths, identity)
    if existing is not None:
        status, had_files = _again(paths, identity, found, run, metrics, root, project, run_id)
        if status == "completed":
            try:
                with tempfile.TemporaryDirectory(prefix="tracklet-mlflow-", dir=scratch) as temp:
                    record = _commit_artifacts(source, found, Path(temp), root, project, run_id, info)
            except Exception as error:  # a download that failed: the run stays as it was, and says so
                status, found.missing = "unchanged", (f"artifact files ({found.location}) not imported: "
                                                      f"{type(error).__name__}: {_short(error)}")
            else:
                _append(paths, record)
                write_marker(paths, identity.marker())
        result.status = status
        if found.missing and status != "changed" and not had_files:
            result.warnings.append(found.missing)  # still without its files: say so each time
            result.without_artifacts = True
        return result
    keys = source.metric_keys(run)
    page = max(MIN_PAGE_POINTS, min(PAGE_POINTS, POINTS_IN_MEMORY // max(1, len(keys))))
    dropped = source.dropped_metrics(run)
    counts: dict[str, int] = {}
    writer = RunWriter(paths)
    try:
        writer.record(_run_start(run, run_id, project))
        environment = _environment(run)
        if environment is not None:
            writer.record(environment)
        writer.config({key: param_value(value) for key, value in run.data.params.items()})
        streams = {key: source.history(run, key, page, dropped) for key in keys}
        chunk: list[tuple] = []
        for row in merged_rows(streams, counts):
            chunk.append(row)
            if len(chunk) >= ROWS_PER_CHUNK:
                writer.history(chunk)
                chunk = []
                if progress is not None:
                    progress(result.path, writer.points, None)
        writer.history(chunk)
        writer.finish_summary({})
        if found.files:
            try:
                with tempfile.TemporaryDirectory(prefix="tracklet-mlflow-", dir=scratch) as temp:
                    writer.record(_commit_artifacts(source, found, Path(temp), root, project, run_id, info))
            except Exception as error:  # a download that failed: the run imports without them, and says so
                found.missing = f"artifact files ({found.location}) not imported: {type(error).__name__}: {_short(error)}"
                identity.extra["artifacts"] = found.state()
        exit_code = EXIT_CODES.get(info.status)
        if exit_code is not None:
            start_time = (info.start_time or 0) / 1000.0
            end_time = (info.end_time or 0) / 1000.0 or start_time
            record = exit_record(exit_code[0], end_time, start_time)
            record.exit.error = exit_code[1]
            writer.record(record)
        writer.commit(identity)
    except BaseException:
        writer.abort()
        raise
    result.points, result.rows = writer.points, writer.rows
    if progress is not None:
        progress(result.path, writer.points, writer.points)
    if counts.get("collapsed"):
        result.warnings.append(f"{counts['collapsed']} metric point(s) shared a step with a later point of the same "
                               f"key; tracklet keeps one value per key and step: the later one")
    if found.missing:
        result.warnings.append(found.missing)
        result.without_artifacts = True
    if info.status not in EXIT_CODES:
        result.warnings.append(f"MLflow run status {info.status}: imported without an exit (it reads as crashed)")
    for key, why in dropped.items():
        result.warnings.append(f"{key}: {why}; not imported")
    return result


def _commit_artifacts(source: MlflowSource, found: RunArtifacts, scratch: Path, root: Path, project: str,
                      run_id: str, info: Any) -> Any:
    """Commit the run's artifact files (read in place, or downloaded into ``scratch``) as a version of
    ``mlflow-<run id>`` logged by the run; the ``ArtifactLogged`` record that says so."""
    from tracklet.artifacts.entries import LocalFile
    from tracklet.artifacts.storage import ArtifactStore
    from tracklet.artifacts.worker import logged_record
    from tracklet.importers.mlflow_artifacts import regular_files

    directory = source.fetch(found, scratch)
    pending: dict[str, Any] = {path: LocalFile(str(directory / path)) for path, _ in regular_files(directory)}
    if not pending:
        raise LookupError(f"no artifact files under {found.location}")
    committed = ArtifactStore(root).commit(
        f"mlflow-{run_id}", ARTIFACT_TYPE, pending, project=project, aliases=["latest"],
        description=f"the artifact files of MLflow run {info.run_id}",
        metadata={"mlflow_run_id": info.run_id, "mlflow_artifact_uri": found.location},
        logged_by=f"{project}/{run_id}")
    return logged_record(committed.info, ["latest"], committed.reused, committed.bytes_written,
                         (info.end_time or info.start_time or 0) / 1000.0 or time.time())


def _again(paths: RunPaths, identity: SourceIdentity, found: RunArtifacts, run: Any, metrics: list[Any], root: Path,
           project: str, run_id: str) -> tuple[str, bool]:
    """A run imported before: ``unchanged``, ``changed`` (the source run changed since: its metrics,
    params, tags, status or artifact files) or ``completed`` (unchanged, imported without its artifact
    files, which can be read now: the caller adds them); and whether tracklet has its files. Whether
    files could be read before and now (``--artifact-root``, ``--fetch-remote-artifacts`` given once
    and not the other time) is no change."""
    marker = read_marker(paths) or {}
    before = marker.get("artifacts")
    if marker.get("sha256") != identity.sha256 or not isinstance(before, dict):
        before = _legacy_artifacts(marker, run, metrics, root, project, run_id)
        if before is None:
            return "changed", False
    had_files = "files" in before
    if "missing" in before:
        return ("completed" if found.files else "unchanged"), had_files
    if found.missing:
        return "unchanged", had_files  # imported as they were then (or there were none); unreadable now
    same = found.state() == before or ("none" in before and not found.files)
    return ("unchanged" if same else "changed"), had_files


def _legacy_artifacts(marker: dict[str, Any], run: Any, metrics: list[Any], root: Path, project: str,
                      run_id: str) -> dict[str, Any] | None:
    """The artifact state of a marker written before the marker recorded it (its digest held the files
    then imported: those of the run's ``mlflow-<run id>`` version, or none), or None when its digest
    isn't this run's (it changed)."""
    from tracklet.importers.mlflow_artifacts import files_digest

    files: list[tuple[str, int]] = []
    with contextlib.suppress(Exception):  # no such version: imported without files
        from tracklet.artifacts.storage import open_store

        store = open_store(root)
        version = store.registry.version(project, f"mlflow-{run_id}")
        files = [(entry.path, int(entry.size)) for entry in store.manifest(version)]
    if marker.get("sha256") != run_digest(run, metrics, files):
        return None
    return {"files": files_digest(files), "count": len(files)} if files else {"missing": "", "location": ""}


def _append(paths: RunPaths, record: Any) -> None:
    """Append a record to an imported run's log (as ``tracklet`` appends updates to a finished run)."""
    from tracklet.core.recordlog import RecordLogWriter

    writer = RecordLogWriter(paths.log_file, resume=True)
    try:
        writer.write(record.SerializeToString())
    finally:
        writer.close()


class MlflowImport(list):
    """What ``import_mlflow`` did: the runs (``ImportedRun``, this list's items) and, in ``models``,
    the registered models' versions (``mlflow_registry.ImportedModelVersion``)."""

    def __init__(self) -> None:
        super().__init__()
        self.models: list[Any] = []


def import_mlflow(location: str | os.PathLike, root: str | os.PathLike | None = None, project: str | None = None,
                  experiments: Iterable[str] = (), progress: Progress | None = None,
                  models: bool = True, artifact_roots: str | os.PathLike | Iterable[str | os.PathLike] = (),
                  fetch_remote_artifacts: bool = False) -> MlflowImport:
    """Import every active run of every active experiment (or of ``experiments``: names or ids)
    of the MLflow store at ``location`` (a ``mlruns/`` directory, an MLflow SQLite database, a
    ``sqlite:///`` or ``http(s)://`` URI) into the data root (default: ``$TRACKLET_DIR`` or the
    per-user one). Each experiment's runs go to the project named after it, or all to
    ``project``. A run that can't be read is reported (``status="skipped"``) and the rest imported.
    Then (``models``) the registered models whose versions' runs were imported, into the data root's
    model registry (``mlflow_registry``): the result's ``models``. Artifact files on this machine's
    disk are read only inside the store's own directory (a file store's, a database's) and
    ``artifact_roots`` (``mlflow_artifacts``); a run's outside them imports without them, with a warning.
    Remote artifact locations (``s3://``, ``https://``, ...: any the store names) are fetched only with
    ``fetch_remote_artifacts``; a tracking server's own ``mlflow-artifacts:`` files always (through it).
    Importing again is a no-op for an unchanged run, whichever of these options either import had,
    except that a run imported without its files gets them once they can be read (``completed``)."""
    from tracklet.importers import data_root

    if project is not None:
        check_name("project", project)  # before reading anything
    target = data_root(root)
    source = MlflowSource(location, artifact_roots, fetch_remote_artifacts)
    try:
        return _import_from(source, target, project, experiments, progress, models)
    finally:
        source.close()


def _import_from(source: MlflowSource, target: Path, project: str | None, experiments: Iterable[str],
                 progress: Progress | None, models: bool) -> MlflowImport:
    from tracklet.importers.mlflow_registry import RunInImport, import_registry

    results = MlflowImport()
    in_import: dict[str, RunInImport] = {}
    for experiment in source.experiments(experiments):
        target_project = project or project_name(experiment.name, experiment.experiment_id)
        try:
            for run_id, run, why in source.runs(experiment.experiment_id):
                where = f"{source.location} run {run_id}" if source.root is None else \
                    f"{source.root / experiment.experiment_id / run_id}"
                if run is None:
                    results.append(_skipped(target_project, run_id, "", where, why))
                    continue
                try:
                    imported = import_run(source, run, target, target_project, progress)
                    results.append(imported)
                    in_import[run.info.run_id] = RunInImport(target_project, imported.path, run.info.artifact_uri or "")
                except SourceError:
                    raise
                except Exception as error:  # this run's data: reported, the others still imported
                    results.append(_skipped(target_project, run_id, run.info.run_name or "", where, error))
        except SourceError:
            raise
        except Exception as error:
            raise SourceError(f"{source.location}: can't list the runs of experiment {experiment.name!r}: "
                              f"{_short(error)}") from None
    if not results:
        raise SourceError(f"{source.location}: no runs to import (no active run in "
                          f"{'those experiments' if experiments else 'its active experiments'})")
    results.models = import_registry(source, target, in_import) if models else []
    return results


def _skipped(project: str, run_id: str, name: str, where: str, why: Any) -> ImportedRun:
    message = why if isinstance(why, str) else f"{type(why).__name__}: {_short(why)}"
    warnings.warn(f"tracklet: {where}: {message}; run skipped", TrackletWarning, stacklevel=3)
    return ImportedRun(f"{project}/{tracklet_run_id(run_id)}", name or run_id, where, "skipped",
                       warnings=[f"{message}; run skipped"])


__all__ = ["MlflowImport", "MlflowSource", "import_mlflow", "import_run", "merged_rows", "param_value", "project_name"]
