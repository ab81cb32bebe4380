"""What the server reads out of record logs for routes the store doesn't answer (table versions,
histograms, history strings and structured values), folded record by record and kept with the byte offset reached, so a log that grew
(a live run the dashboard polls every 2 s) is read from there on, not again from its start.

A log that shrank or was replaced (``resume`` moves an unreadable tail aside) is read again from
the start. Records pass the same ``RecordDecoder`` checks as every reader's; a record a fold fails
on is skipped alone. The folds of the ``size`` logs asked for last are kept.

A shared run (docs/shared-runs.md) is folded whole (``LogFolds.get_run``): its own log and every
part's, each copy's fold kept with its own offset in one entry per run, so a request reads only
what each writer's log gained (a run may have thousands of parts: none is read again from its
start while the run stays kept). The run's copies and their sizes are listed in one go
(``LogSource.copy_sizes`` where the source has it: one query on a ``--logs`` server, finding the
parts the store indexed by their keys: ``run_fold``). The folds of
one run share what ``shared()`` makes, so a fold can bound its memory per run, not per copy; a
copy that shrank, was replaced or went away starts the run's fold over. On local disk a run's
listing is made again only once the kernel reported a change in its directory or ``parts/``
(``copy_watch.py``): a request on an unchanged run whose copies were read to their sizes lists
nothing and passes over no writer (``_listing``, ``RunFold.caught_up``). ``run_keys`` names each
writer's keys as every reader of a shared run names them (``core/parts.Ownership``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Generic, Mapping, TypeVar

from tracklet.core.parts import PRIMARY

if TYPE_CHECKING:
    from tracklet.core.layout import RunPaths
    from tracklet.store.logsource import LogSource

State = TypeVar("State")
View = TypeVar("View")


class _Entry(Generic[State]):
    def __init__(self, state: State) -> None:
        self.lock = threading.Lock()
        self.state = state
        self.offset = 0
        self.identity: tuple[int, int] | None = None  # (device, inode)
        self.decoder: Any = None
        self.paths: Any = None  # the copy's RunPaths (get_run's)


WINDOW_BYTES = 8 << 20  # read a log this much at a time: a request holds one window, not the whole log


class RunFold(Generic[State]):
    """One run's folds: ``writers`` maps ``parts.PRIMARY`` (its own log) and each part's label to
    that copy's fold, the run's own first, then the parts in label order."""

    def __init__(self, shared: Any) -> None:
        self.lock = threading.Lock()
        self.shared = shared
        self.entries: dict[str, _Entry[State]] = {}
        self.memo: dict[str, tuple[Any, Any]] = {}  # a view's cache: name -> (signature, value)
        self.kept = 0  # bytes its folds and views keep, as LogFolds' measure and memo_measure account them
        self.folds_kept = 0  # of which its folds'
        # One signature of every writer's fold together: moved on whenever any fold may have
        # changed (a copy read on, added, or the run's folds started over), so a view kept with it
        # (``run_keys``) knows its run unchanged in O(1), not by a pass over the writers.
        self.generation = 0
        # The last listing of the run's copies on local disk and the ``copy_watch`` token it was
        # made after: reused while no event for the run came since (``_listing``).
        self.listing: tuple[Any, dict[str, tuple[int, tuple[int, int] | None]]] | None = None
        self.caught_up = False  # every copy read to the size its listing says (nothing to check again)
        self.measured = -1  # the generation ``kept`` was measured at

    @classmethod
    def single(cls, state: State) -> "RunFold[State]":
        """The folds of a run that is one log, folded already into ``state``."""
        from tracklet.core.parts import PRIMARY

        run: RunFold[State] = cls(None)
        run.entries[PRIMARY] = _Entry(state)
        return run

    @property
    def writers(self) -> dict[str, State]:
        return {label: entry.state for label, entry in self.entries.items()}

    def remember_while_unchanged(self, name: str, signature: Callable[[], Any], compute: Callable[[], Any]) -> Any:
        """``compute()``, kept under ``name`` while ``signature()`` stays what it was: asked only
        once the run's folds moved on (``generation``), so an unchanged run costs O(1)."""
        kept = self.memo.get(name)
        if kept is not None and kept[0][0] == self.generation:
            return kept[1]
        now = signature()
        if kept is not None and kept[0][1] == now:
            self.memo[name] = ((self.generation, now), kept[1])
            return kept[1]
        value = compute()
        self.memo[name] = ((self.generation, now), value)
        return value


class LogFolds(Generic[State]):
    """``get(source, paths, view)``: ``view(state)`` of the fold of every record of the run's log,
    where ``make()`` starts a state and ``apply(state, record)`` folds one record into it. The log
    is read through the server's ``LogSource`` (its files, or segments in shared storage with
    ``--logs``) ``WINDOW_BYTES`` at a time."""

    def __init__(self, make: Callable[..., State], apply: Callable[..., None], size: int = 32,
                 shared: Callable[[], Any] | None = None, *, located: bool = False,
                 measure: Callable[[State], int] | None = None, run_bytes: int | None = None,
                 total_bytes: int | None = None, memo_measure: Callable[[RunFold[State]], int] | None = None) -> None:
        """``shared``: made once per run by ``get_run`` and given to ``make`` (``make(shared)``)
        for each of the run's copies; without it ``make()``. ``size``: logs (``get``) or runs
        (``get_run``) kept. ``located``: ``apply(state, record, where)`` with ``where`` the
        record's frame ``(offset, length, crc32 of its payload)`` in the copy's log, so a fold may keep where a record
        is rather than the record. ``measure(state)``: the bytes a copy's fold keeps; with it,
        ``get_run`` keeps a run only while its copies' folds keep at most ``run_bytes`` (a run
        past it is answered, then not kept: its next request reads its logs again), and drops
        the runs asked for least recently while all kept runs together keep over
        ``total_bytes`` (``kept_bytes()``). ``memo_measure(run)``: the bytes a run's views keep
        beyond its folds (``RunFold.memo``: an index's copies of the folds' maps, views made of
        them), counted with them; O(1), as it is asked after every request and by ``charge``."""
        self._memo_measure = memo_measure
        self._make = make
        self._apply = apply
        self._size = size
        self._shared = shared
        self._located = located
        self._measure = measure
        self._run_bytes = run_bytes
        self._total_bytes = total_bytes
        self._entries: OrderedDict[str, _Entry[State]] = OrderedDict()
        self._runs: OrderedDict[str, RunFold[State]] = OrderedDict()
        self._lock = threading.Lock()

    def _new(self, shared: Any) -> State:
        return self._make() if self._shared is None else self._make(shared)

    def get(self, source: LogSource, paths: RunPaths, view: Callable[[State], View]) -> View:
        from tracklet.core.decode import RecordDecoder

        path = str(paths.log_file)
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = _Entry(self._new(self._shared() if self._shared is not None else None))
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(path)
        with entry.lock:
            size = source.size(paths)
            identity = _file_identity(paths.log_file)
            if entry.decoder is None or entry.identity != identity or size < entry.offset:
                entry.state, entry.offset, entry.identity, entry.decoder = (
                    self._new(self._shared() if self._shared is not None else None), 0, identity, RecordDecoder())
            self._read_on(source, paths, entry, size)
            return view(entry.state)

    def _read_on(self, source: LogSource, paths: RunPaths, entry: _Entry[State], size: int) -> None:
        """Fold what the copy holds past ``entry.offset`` (up to ``size``), a window at a time."""
        from tracklet.core.decode import RecordDecoder

        if entry.decoder is None:
            entry.decoder = RecordDecoder()
        state = entry.state
        while entry.offset < size:
            result = source.read_from(paths, entry.offset, limit=WINDOW_BYTES)
            if self._located:
                self._fold_located(entry.decoder, result.payloads, state)
            else:
                entry.decoder.fold(result.payloads, lambda record: self._apply(state, record))
            if result.end_offset <= entry.offset:
                break  # nothing intact further on yet (a frame still being written)
            entry.offset = result.end_offset

    def _fold_located(self, decoder: Any, payloads: Any, state: State) -> None:
        for offset, payload in payloads:
            record = decoder.decode(offset, payload)
            if record is None:
                continue
            try:
                self._apply(state, record, (offset, payload))
            except Exception as error:
                decoder.skipped(offset, error)

    def forget(self, key: str) -> None:
        """Drop run ``key``'s folds (``str(paths.run_dir)``): its next request reads it again."""
        with self._lock:
            self._runs.pop(key, None)

    def kept_bytes(self) -> int:
        """What the kept runs' folds keep, as ``measure`` accounts it (0 without one)."""
        with self._lock:
            return sum(run.kept for run in self._runs.values())

    def _account(self, key: str, run: RunFold[State]) -> None:
        """After a request: ``run``'s bytes measured again; a run over ``run_bytes`` is not kept,
        and the least recently asked for go while all together keep over ``total_bytes``."""
        if self._measure is None:
            return
        measure = self._measure
        if run.measured != run.generation:  # (an unchanged run's folds keep what they kept: O(1))
            run.folds_kept = sum(measure(entry.state) for entry in run.entries.values())
            run.measured = run.generation
        self._bound(key, run)

    def charge(self, key: str, run: RunFold[State]) -> None:
        """``run``'s views grew after its request's view was made (an index's view made as a
        request reads it, outside the run's lock): measured again with its folds as last measured,
        and the bounds kept as after a request (``_account``)."""
        if self._measure is not None:
            self._bound(key, run)

    def _bound(self, key: str, run: RunFold[State]) -> None:
        run.kept = run.folds_kept + (self._memo_measure(run) if self._memo_measure is not None else 0)
        with self._lock:
            if self._run_bytes is not None and run.kept > self._run_bytes:
                if self._runs.get(key) is run:
                    del self._runs[key]
            if self._total_bytes is not None:
                total = sum(kept.kept for kept in self._runs.values())
                while total > self._total_bytes and self._runs:
                    _, dropped = self._runs.popitem(last=False)
                    total -= dropped.kept

    def _follow(self, source: LogSource, paths: RunPaths, run: RunFold[State],
                copies: dict[str, tuple[int, tuple[int, int] | None]]) -> None:
        """Bring the run's folds to ``copies`` (its listing): start over where a copy shrank, was
        replaced or went; read each copy on to its size; add the new ones in label order."""
        if any(label not in copies or copies[label][0] < entry.offset or copies[label][1] != entry.identity
               for label, entry in run.entries.items()):
            # a copy shrank, was replaced or went: the run's folds start over (they share budgets)
            run.shared = self._shared() if self._shared is not None else None
            run.entries, run.memo = {}, {}
            run.generation += 1
        added = False
        caught_up = True
        for label, (size, identity) in copies.items():
            entry = run.entries.get(label)
            if entry is None:
                entry = run.entries[label] = _Entry(self._new(run.shared))
                entry.identity = identity
                entry.paths = paths if label == PRIMARY else paths.part_paths(label)
                added = True
            if entry.decoder is None or entry.offset < size:
                self._read_on(source, entry.paths, entry, size)
                run.generation += 1  # (even where nothing intact was added: a fold may keep a partial state)
                caught_up = caught_up and entry.offset >= size
        if added:
            run.generation += 1
            if list(run.entries) != list(copies):  # a part that came between others: in label order
                run.entries = {label: run.entries[label] for label in copies}
        run.caught_up = caught_up

    def get_run(self, source: LogSource, paths: RunPaths, view: Callable[[RunFold[State]], View], *,
                labels: Callable[[], list[str]] | None = None) -> View:
        """``view(run)`` of the folds of run ``paths``'s own log and each of its parts' (see the
        module's docstring): each copy read on from where the last request stopped. ``labels()``:
        the run's parts, for a source that finds copies by key (``copy_sizes``)."""
        key = str(paths.run_dir)
        with self._lock:
            run = self._runs.get(key)
            if run is None:
                run = self._runs[key] = RunFold(self._shared() if self._shared is not None else None)
                while len(self._runs) > self._size:
                    self._runs.popitem(last=False)
            self._runs.move_to_end(key)
        with run.lock:
            copies, reused = _listing(source, paths, labels, run)
            if not (reused and run.caught_up):  # (an unchanged listing of copies read to its sizes: O(1))
                self._follow(source, paths, run, copies)
            try:
                return view(run)
            finally:
                self._account(key, run)


def _listing(source: LogSource, paths: RunPaths, labels: Callable[[], list[str]] | None,
             run: RunFold[Any]) -> tuple[dict[str, tuple[int, tuple[int, int] | None]], bool]:
    """``_copies`` of the run, and whether it is the last one again: for copies on local disk
    (``copy_stats``) that one while the kernel reported no change in the run's directory or its
    ``parts/`` since it was made (``copy_watch``): an unchanged run's request then ``stat``s
    nothing, however many parts it has. The token is taken (the events so far read) before the
    listing is made."""
    if getattr(source, "copy_stats", None) is None:
        return _copies(source, paths, labels, run.entries), False
    from tracklet.server.copy_watch import copy_watch

    watch = copy_watch()
    kept = run.listing
    if kept is not None and watch.unchanged(paths.run_dir, kept[0]):
        return kept[1], True
    token = watch.since(paths.run_dir)
    copies = _copies(source, paths, labels, run.entries)
    run.listing = (token, copies) if token is not None else None
    return copies, False


def _copies(source: LogSource, paths: RunPaths, labels: Callable[[], list[str]] | None,
            known: Collection[str] = ()) -> dict[str, tuple[int, tuple[int, int] | None]]:
    """Run ``paths``'s copies as ``copy_sizes`` lists them (its own log, then each part's label
    in order), each with its size and identity (``_file_identity``): from ``source.copy_stats``
    where it has it (a data root's files: one listing and one ``stat`` per copy; ``known``:
    labels already checked), else one ``stat`` per copy for its identity (none for a source that
    finds copies by key: segments only grow)."""
    stats = getattr(source, "copy_stats", None)
    if stats is not None:
        found = stats(paths, known)
        return {label: found[label] for label in [PRIMARY, *sorted(label for label in found if label != PRIMARY)]}
    listed = getattr(source, "copy_sizes", None)
    if listed is not None:
        sizes: Mapping[str, int] = listed(paths, labels() if labels is not None else None)
        held = sorted(label for label in sizes if label != PRIMARY)
        return {PRIMARY: (sizes.get(PRIMARY, 0), None), **{label: (sizes[label], None) for label in held}}
    return {label: (size, _file_identity(copy.log_file)) for label, (copy, size) in copy_sizes(source, paths).items()}


def copy_sizes(source: LogSource, paths: RunPaths, labels: Callable[[], list[str]] | None = None
               ) -> dict[str, tuple[RunPaths, int]]:
    """Run ``paths``'s copies that hold bytes: ``parts.PRIMARY`` (its own log, always listed) and
    each part's label, in that order, with its paths and size: from ``source.copy_sizes`` in one
    go where the source has it (the parts ``labels()`` names, each found by its key; without it,
    by the run's prefix), else its parts' listing and each copy's size."""
    from tracklet.core.parts import PRIMARY

    listed = getattr(source, "copy_sizes", None)
    if listed is not None:
        sizes: Mapping[str, int] = listed(paths, labels() if labels is not None else None)
        held = sorted(label for label in sizes if label != PRIMARY)
        return {PRIMARY: (paths, sizes.get(PRIMARY, 0)),
                **{label: (paths.part_paths(label), sizes[label]) for label in held}}
    found = {PRIMARY: (paths, source.size(paths))}
    for label in sorted(source.parts(paths)):
        part = paths.part_paths(label)
        found[label] = (part, source.size(part))
    return found


def run_keys(run: RunFold[Any], names: Callable[[Any], Collection[str]]) -> dict[str, list[tuple[str, str]]]:
    """Each key of the run as its readers name it, with the writers' keys it holds (``(label,
    key)``, ``parts.PRIMARY`` for the run's own log): a part's key another writer owns is
    ``<key>/l:<label>`` (``core/parts.Ownership``, the rule the local reader and the store
    apply). ``names(fold)``: every key a writer's log defined (numbers' too: they decide the
    owner). Kept with the run while no writer defined a new key: checked (each writer's key count)
    only once a writer's log was read on (``RunFold.remember_while_unchanged``); a request on an
    unchanged run costs O(1) here, however many parts it has."""
    from tracklet.core.parts import PRIMARY, Ownership

    entries = run.entries

    def compute() -> dict[str, list[tuple[str, str]]]:
        defined = {label: names(entry.state) for label, entry in entries.items()}
        primary = defined.get(PRIMARY, ())
        parts = {label: keys for label, keys in defined.items() if label != PRIMARY}
        owners = Ownership(primary, (), parts, {})
        merged: dict[str, list[tuple[str, str]]] = {name: [(PRIMARY, name)] for name in primary}
        for label, keys in parts.items():
            for name in keys:
                merged.setdefault(owners.part_key(label, name), []).append((label, name))
        return merged

    def signature() -> tuple[tuple[str, int], ...]:  # (each writer's key count: keys are only ever added)
        return tuple((label, len(names(entry.state))) for label, entry in entries.items())

    # An unchanged run (no writer's log read on since): O(1), no pass over its writers.
    return run.remember_while_unchanged("keys", signature, compute)


def _file_identity(log_file: Path) -> tuple[int, int] | None:
    """(device, inode) of a log kept as a file, so a log replaced under the same name is read
    again; None for one kept as segments (it only grows)."""
    try:
        stat = log_file.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def run_log(request: Any, project: str, run_id: str) -> tuple[LogSource, RunPaths]:
    """The server's log source and the run's paths; 404 unless the server knows the run (its store
    has it: a log under the root alone is not enough, so access follows the project's members)."""
    from fastapi import HTTPException

    from tracklet.server.logs import run_paths

    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id)
    if app.store.run(project, run_id, fields=("run_id",)) is None:
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    return app.indexer.source, paths


def run_fold(folds: LogFolds[State], request: Any, project: str, run_id: str,
             view: Callable[[RunFold[State]], View]) -> View:
    """``folds.get_run`` of the run (``run_log``): a source that finds copies by key (``--logs``
    segments) is given the parts the store indexed, each found by its key (a run's parts are
    indexed right after each upload), rather than by a prefix scan of the project's heads."""
    source, paths = run_log(request, project, run_id)
    store = request.app.state.tracklet.store
    return folds.get_run(source, paths, view, labels=lambda: store.part_labels(project, run_id))
