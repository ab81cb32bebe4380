"""Keeping the server's store up to date with its record log copies.

One ``Indexer`` per server, used under one lock: the store has exactly one writer. A run is
indexed right after each append to it, so a read that follows an acknowledged upload sees it.
A failure to index is logged, never turned into a failed upload: the copy is durable and the
run is indexed again at its next append or when the server starts.

No client process holds a lock on the server's copies, so a run without an exit record is
``running`` while its copy keeps growing (uploads are its heartbeat) and ``crashed`` once it
hasn't for ``HEARTBEAT_LAPSE`` seconds; ``index_all()``, run periodically, applies that to runs
whose clients went quiet, and tells ``on_crashed`` (the automations: a ``run.crashed`` event) of
each run it found crashed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Callable, Iterator

from tracklet.core.layout import RunPaths
from tracklet.store import LOCK_FILE, Store
from tracklet.store.logsource import LogSource, heartbeat_liveness

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("tracklet.server")

HEARTBEAT_LAPSE = 120.0


class StoreIndexer:
    """Serialized ingestion of record log copies into ``store``."""

    def __init__(self, store: Store, root: Path, *, heartbeat_lapse: float = HEARTBEAT_LAPSE,
                 liveness: Callable[[Path], bool | None] | None = None, shared_root: bool = False,
                 source: LogSource | None = None) -> None:
        """``liveness`` overrides the heartbeat rule (``tracklet ui`` over a local data root passes
        ``writer_alive``: there, the writer's lock says whether a run is alive). ``shared_root``:
        other processes index this root too (``tracklet index``, ``tracklet.Api``), so each
        ``index_all`` pass takes the root's ``store.lock`` and is skipped while another holds it."""
        self.store = store
        self.heartbeat_lapse = heartbeat_lapse  # also the rule by which a shared run's primary is live (primaries.py)
        self._root_lock = Path(root) / LOCK_FILE if shared_root else None
        self._indexer = store.indexer(liveness=liveness or heartbeat_liveness(heartbeat_lapse),
                                      source=source)  # source: segments in shared storage (segments.py)
        self._lock = threading.Lock()
        # Called with (project, run_id) of each run a pass found crashed (it was running before).
        self.on_crashed: Callable[[str, str], None] | None = None

    @property
    def read_only(self) -> bool:
        """Whether the store can't be written here (``store.engine.is_read_only``): nothing is indexed."""
        return self.store.read_only

    @property
    def source(self) -> LogSource:
        """Where the record logs are read from (files under the root, or ``--logs`` segments)."""
        return self._indexer.source

    def index_all(self) -> None:
        """Ingest everything new under the data root, and mark runs whose clients went quiet
        crashed (at startup, then periodically), telling ``on_crashed`` of each."""
        if self.read_only:
            return  # a data root this user can't write: shown as it was last indexed
        with self._lock, self._root_locked() as held:
            if not held:
                return  # another process is indexing this root right now; the next pass catches up
            known = self._known_runs()
            running = [key for key, (_, state) in known.items() if state == "running"]
            changed: list[RunPaths] = []
            shared: list[RunPaths] = []  # runs whose own log is unchanged: their parts may have grown
            for paths in self._indexer.run_dirs():
                (shared if self._unchanged(paths, known) else changed).append(paths)
            # Runs with new bytes, many per transaction (a sweep's runs: one commit per group, not
            # per run); a run that fails is logged by the indexer and doesn't stop the others.
            self._indexer.index_runs(changed)
            # Of the others' parts (a shared run's secondary writers' logs), only those that grew
            # or whose writer died: a stat per part, and one read query per 500 shared runs.
            for paths, labels in self._indexer.parts_to_index(shared):
                self._indexer.index_parts(paths, labels)  # a part that fails is logged by the indexer
            if self.on_crashed is not None:
                self._report_crashed(running)

    def _report_crashed(self, running: list[tuple[str, str]]) -> None:
        """``on_crashed`` for each of the runs that were ``running`` before this pass and are
        ``crashed`` now (the few live runs are read again, not every run)."""
        assert self.on_crashed is not None
        for project, run_id in running:
            try:
                found = self.store.run(project, run_id, fields=("state",))
                if found is not None and found.get("state") == "crashed":
                    self.on_crashed(project, run_id)
            except Exception:  # one run's event is lost, not the pass
                log.exception("reporting %s/%s crashed failed", project, run_id)

    def _known_runs(self) -> dict[tuple[str, str], tuple[int, str]]:
        """Every indexed run's (log offset, state), by (project, run id): one query per pass."""
        try:
            return self.store.indexed_runs()
        except Exception:  # index every run, as without this shortcut
            log.exception("listing indexed runs failed")
            return {}

    def _unchanged(self, paths: RunPaths, known: dict[tuple[str, str], tuple[int, str]]) -> bool:
        """Whether ``index_run`` would do nothing with the run's own log: it is indexed up to its size and isn't
        ``running`` (a running run's writer may have died without the log growing: ``index_run``
        checks its liveness). Costs a ``stat`` instead of a transaction per run."""
        entry = known.get((paths.project, paths.run_id))
        if entry is None or entry[1] == "running":
            return False
        try:  # (a shared run's parts are not looked at here: ``index_all`` asks ``parts_to_index``)
            if self._indexer.source.size(paths) != entry[0]:
                return False
            # A row its parts made (its primary never started: nothing of a log indexed) whose
            # primary's log is here now, empty (killed as it created it): index_run makes the run
            # the primary's (its state). One query, for such runs only.
            return not (entry[0] == 0 and paths.log_file.exists() and self._made_by_parts(paths))
        except Exception:
            return False

    def _made_by_parts(self, paths: RunPaths) -> bool:
        """Whether the store's row of run ``paths`` was made by its parts (``metadata.no_primary``)."""
        found = self.store.run(paths.project, paths.run_id, fields=("metadata",))
        return bool(found is not None and (found.get("metadata") or {}).get("no_primary"))

    @contextlib.contextmanager
    def _root_locked(self) -> Iterator[bool]:
        if self._root_lock is None or fcntl is None:
            yield True
            return
        with open(self._root_lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True  # closing the file releases the lock

    def index_run(self, paths: RunPaths) -> None:
        with self._lock:
            self._index(paths)

    def index_parts(self, paths: RunPaths, label: str | None = None) -> None:
        """Ingest what a shared run's part ``label`` gained, or every part's (docs/shared-runs.md;
        none: those its log source has, a ``scandir`` or a query)."""
        labels = [label] if label is not None else self._indexer.source.parts(paths)
        if not labels:
            return
        with self._lock:
            report = self._indexer.index_parts(paths, labels)
        for failure in report.failed:
            log.warning("indexing %s failed", failure)

    def _index(self, paths: RunPaths) -> None:
        try:
            self._indexer.index_run(paths)
        except Exception:  # the upload stays acknowledged; the next append retries
            log.exception("indexing %s/%s failed", paths.project, paths.run_id)
