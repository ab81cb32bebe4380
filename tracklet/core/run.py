"""The run API: ``Run.log``, ``Run.config``, ``Run.summary``, ``Run.define_metric``, ``Run.finish``.

``log()`` is the hot path. It copies the caller's dict, stamps the wall time and the step, and
appends one tuple to the sender's queue; nothing else happens on the caller's thread unless a value
is unusual (a nested dict, a tensor, an array), in which case nested dicts are flattened into the
copy. Conversion, encoding and disk I/O happen on the sender's worker thread.

Starting a run is kept cheap too: this module imports neither protobuf nor the encoder, and the
records a run starts with (``RunStart``, the config) are built on the worker, which imports them
(``init()`` then costs a run directory, a file and a few threads). ``tracklet.core.values`` is
imported on first need (a config, an unusual value, an error message).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import warnings
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from tracklet.core import forksafe
from tracklet.core import hostinfo, identity, lifecycle, threads
from tracklet.core.console import ConsoleCapture
from tracklet.core.layout import SETS_STATE_KEY, RunPaths
from tracklet.core.logged import LoggedObject, logged_items, start_worker
from tracklet.core.recordlog import RecordLogWriter
from tracklet.core.sender import ROW_ENTRIES, BatchSender, ConsoleChunk, DefineMetric, RowKeys, SummarySet
from tracklet.core.settings import Settings
from tracklet.core.stack import user_stacklevel
from tracklet.core.warn import TrackletWarning

if TYPE_CHECKING:
    from tracklet.core.filehash import HashedBytes
    from tracklet.core.wire import Message
    from tracklet.proto import records_pb2 as pb

INT64_MAX = 2**63 - 1  # the largest step a record can hold (tracklet.core.values.INT64_MAX)
_PLAIN_TYPES = frozenset({float, int, bool, str})
# Key sets remembered as plain or not; a run logging ever-new key sets just starts over.
_MAX_KEYSETS = 4096
_LOGGED_LOCK = forksafe.lock()
_WORKER_LOCK = forksafe.lock()  # one artifact worker per run: the environment thread may make it too
_time = time.time

_ADJECTIVES = (
    "amber", "bold", "brisk", "calm", "crisp", "dapper", "eager", "fancy", "gentle", "glad", "golden", "hazy",
    "icy", "jolly", "keen", "lively", "lucky", "mellow", "misty", "noble", "proud", "quiet", "rapid", "royal",
    "silent", "sleek", "solar", "steady", "swift", "tidy", "vivid", "warm", "wild", "witty", "young", "zesty",
)
_NOUNS = (
    "aurora", "breeze", "brook", "canyon", "cedar", "cloud", "comet", "dawn", "delta", "dune", "ember", "fern",
    "field", "forest", "frost", "glade", "grove", "harbor", "lake", "leaf", "meadow", "mesa", "moon", "night",
    "ocean", "peak", "pine", "plains", "rain", "river", "shadow", "sky", "snow", "star", "sun", "wave",
)


_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _random_digits(bases: tuple[int, ...]) -> list[int]:
    """One random digit per base, from 64 bits of ``os.urandom`` (``secrets`` costs an import of
    ``hashlib`` and ``random`` that ``init()`` need not pay). Bias: below 1e-6 for the bases used."""
    number = int.from_bytes(os.urandom(8), "big")
    digits = []
    for base in bases:
        number, digit = divmod(number, base)
        digits.append(digit)
    return digits


def new_run_id() -> str:
    """8 random characters from ``[a-z0-9]``."""
    return "".join(_ID_ALPHABET[digit] for digit in _random_digits((len(_ID_ALPHABET),) * 8))


def new_run_name() -> str:
    """``adjective-noun-number``, e.g. ``swift-river-42``."""
    adjective, noun, number = _random_digits((len(_ADJECTIVES), len(_NOUNS), 1000))
    return f"{_ADJECTIVES[adjective]}-{_NOUNS[noun]}-{number}"


def _values() -> Any:
    """``tracklet.core.values``, imported on first need rather than with this module."""
    from tracklet.core import values

    return values


class Config(MutableMapping):
    """The run's configuration: ``config["lr"]``, ``config.lr``, ``config.update({...})``.

    Values are stored as plain data (see ``tracklet.core.values.to_plain``): dataclasses and
    argparse Namespaces become dicts, nested dicts stay nested. Every change is recorded.
    """

    def __init__(self, run: "Run") -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_data", {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._run._record_config({}, [key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def update(self, other: Any = None, /, allow_val_change: bool = True, **kwargs: Any) -> None:
        """Set several keys at once from a dict, a dataclass, an argparse Namespace or keywords.

        With ``allow_val_change=False`` a key that already has a different value raises ValueError.
        """
        items: dict[str, Any] = {}
        cuts: list[tuple[str, str]] = []
        report = _collector(cuts)
        values = _values()
        if other is not None:
            plain = values.to_plain(other, report)
            if not isinstance(plain, dict):
                raise TypeError(f"config.update() takes a dict, dataclass or Namespace; got {values.type_name(other)}")
            items.update(plain)
        items.update({str(k): values.to_plain(v, _under(report, str(k))) for k, v in kwargs.items()})
        self._run._report_cuts("config", cuts)
        if not allow_val_change:
            changed = [k for k, v in items.items() if k in self._data and self._data[k] != v]
            if changed:
                raise ValueError(
                    f"config key(s) {', '.join(map(repr, changed))} already set to another value; "
                    "pass allow_val_change=True to change them"
                )
        self._data.update(items)
        if items:
            self._run._record_config(items, [])

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


class Summary(MutableMapping):
    """The run's summary: the last logged value of every key (or the ``define_metric`` aggregate),
    overridable with ``summary[key] = value``. Reading waits for the sender to catch up, so it
    reflects every ``log()`` call made before it."""

    def __init__(self, run: "Run") -> None:
        self._run = run

    def _values(self) -> dict[str, Any]:
        return self._run._summary_values()

    def __getitem__(self, key: str) -> Any:
        return _fresh(self._values()[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self._values():
            raise KeyError(key)
        self._run._set_summary({}, (key,))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values()))

    def __len__(self) -> int:
        return len(self._values())

    def update(self, other: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:  # type: ignore[override]
        cuts: list[tuple[str, str]] = []
        report = _collector(cuts)
        to_plain = _values().to_plain
        items = {str(k): to_plain(v, _under(report, str(k))) for k, v in {**(other or {}), **kwargs}.items()}
        self._run._report_cuts("summary", cuts)
        self._run._set_summary(items, ())

    def as_dict(self) -> dict[str, Any]:
        return {key: _fresh(value) for key, value in self._values().items()}

    def __repr__(self) -> str:
        return f"Summary({self._values()!r})"


def _fresh(value: Any) -> Any:
    """A summary value as the caller gets it: lists and dicts copied at every level, none shared
    (the recorded value shares one empty list among its ``[[], [], ...]`` items, and changing what
    the caller got must change neither the run's summary nor another item)."""
    if type(value) is list:
        return [_fresh(item) for item in value]
    if type(value) is dict:
        return {key: _fresh(item) for key, item in value.items()}
    return value


def _collector(cuts: list[tuple[str, str]]) -> Any:
    """A cut report (see ``values.to_plain``) that keeps ``(where, why)`` for one warning later."""
    return lambda where, why: cuts.append((where, why))


def _under(report: Any, key: str) -> Any:
    """A cut report for a value stored under ``key``: paths then start with the key."""
    return lambda where, why: report(f"{key}/{where}" if where != "(the value)" else key, why)


_FORKED = (
    "tracklet: this process was forked from the one that called tracklet.init(), and a run's "
    "background sender does not survive fork (e.g. inside DataLoader workers). Log from the parent "
    "process, return values to it, or call tracklet.init() in this process to start a run of its own."
)
_FINISHED = "tracklet: this run has finished; start a new one with tracklet.init()"


class _NoQueue:
    """Stands in for the sender's queue when there is none to take items: before start (items are
    discarded), after finish and in a forked child (appending raises ``message``)."""

    def __init__(self, message: str | None) -> None:
        self._message = message

    def append(self, item: Any) -> None:
        if self._message is not None:
            raise RuntimeError(self._message)

    def extend(self, items: Any) -> None:
        self.append(items)

    def __len__(self) -> int:
        return 0


def _no_backlog() -> None:
    pass


class RunUploader(Protocol):
    """What streams a live run's record log to a tracking server in online mode."""

    def start(self) -> None: ...

    def finish(self, timeout: float) -> bool: ...

    def cut_wait(self, seconds: float) -> None: ...


# Makes an online run's uploader from its paths, settings and warning reporter. The layer above
# the core injects it (``tracklet.init`` passes ``tracklet.client.uploader.online_uploader``), so
# recording imports no HTTP client.
UploaderFactory = Callable[[RunPaths, Settings, Callable[[Any, str], None]], RunUploader]


class Run:
    """One tracked run. Create it with :func:`tracklet.init`."""

    _exit_item: Any = None  # the exit record's queue item once finish() built it (``_queue_exit``)
    _exit_fields: dict[str, Any] | None = None  # the exit record's fields (``_queue_exit``; core/launchexit.py)
    _sweep_trial = False  # the run of this process's sweep trial (``init()`` sets it): an agent's prune tags it
    _sweep_id: str | None = None  # that trial's sweep (``init()`` sets it): W&B's ``run.sweep_id``

    def __init__(
        self,
        settings: Settings,
        *,
        project: str,
        run_id: str,
        name: str,
        paths: RunPaths | None,
        tags: list[str],
        group: str,
        job_type: str,
        notes: str,
        uploader: UploaderFactory | None = None,
    ) -> None:
        self.settings = settings
        self.project = project
        self.id = run_id
        self._identity: dict[str, Any] = {"name": name, "tags": list(tags), "group": group, "job_type": job_type,
                                          "notes": notes}
        self._paths = paths
        self.start_time = _time()
        self._step = 0
        self._strict = settings.strict
        self._finished = False
        self._pid = os.getpid()
        self.config = Config(self)
        self.summary = Summary(self)
        self.resumed = False
        self._sender: BatchSender | None = None
        self._console: ConsoleCapture | None = None
        self._environment: Any = None  # an EnvironmentCapture
        self._monitor: Any = None
        self._seeds: Any = None  # core/seeds.RunSeeds, once started
        self._checkpoints: Any = None
        self._artifacts: Any = None  # a tracklet.artifacts.worker.ArtifactWorker, made on first use
        self._logged: Any = None  # the logged-object worker (core/logged.py), made on first use
        self._uploader_factory = uploader
        self._uploader: RunUploader | None = None
        self._warned: set[Any] = set()
        self._keysets: dict[tuple, tuple[bool | None, tuple, RowKeys]] = {}
        self._queue: Any = _NoQueue(None)
        self._chunk_entries = settings.batch_size * ROW_ENTRIES  # the sender's, once it exists (see sender.put)
        self._backlog = _no_backlog
        self._nudge = _no_backlog
        self._reproduces = ""  # "project/run_id" this run reproduces (tracklet reproduce)
        self._artifact_pins: dict[str, int] = {}  # "project/name" -> the version a reproduction uses

    # ------------------------------------------------------------ identity

    def _get_identity(self, field: str) -> Any:
        value = self._identity[field]
        return list(value) if field == "tags" else value

    def _set_identity(self, field: str, value: Any) -> None:
        """``run.name = ...`` (and tags, notes, group, job_type) after ``init()``: recorded in the
        log as a ``RunUpdate``, which readers, the store and the dashboard apply."""
        self._update_identity({field: value})

    def _update_identity(self, changes: dict[str, Any]) -> None:
        """Change identity fields together, in one ``RunUpdate`` record."""
        changes = identity.checked_changes(changes)
        self._identity.update(changes)
        if self._sender is None or self._finished:
            return  # disabled mode, or a finished run: nothing records any more
        at = _time()
        recorded = self._recordable(changes)
        self._enqueue(lambda: identity.update_record(recorded, at))
        self._nudge()

    def _recordable(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` as a record's strings can hold them (``hostinfo.recordable_text``: lone
        surrogates become U+FFFD or "?", rather than the whole record being lost). A field the user
        gave (name, tags, notes, group, job_type) that had to change is named in a warning, once
        per field for this run, with what was replaced: the run goes on and records the rest."""
        text = hostinfo.recordable_text
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, str):
                out[key] = text(value)
            elif isinstance(value, list):
                out[key] = [text(item) if isinstance(item, str) else item for item in value]
            else:
                out[key] = value
            if key in identity.FIELDS and out[key] != value:
                replaced = hostinfo.unrecordable_characters(" ".join(value) if isinstance(value, list) else value)
                self._warn_once(("unrecordable", key), (
                    f"tracklet: run {key} {value!r} holds {', '.join(replaced)} (lone surrogates: not text, which a "
                    f"record can't store); recorded as {out[key]!r}"))
        return out

    def mark_preempting(self) -> None:
        """Record that this run expects to be stopped (preempted) and resumed: readers show it
        (``RecordedRun.preempting``; ``wandb.Api`` state ``preempting``, then ``preempted`` if it
        ends other than finished) until a resumed session of the run starts."""
        if self._sender is None or self._finished:
            return
        at = _time()
        self._enqueue(lambda: identity.update_record({}, at, preempting=True))
        self._nudge()

    name = property(lambda self: self._get_identity("name"), lambda self, v: self._set_identity("name", v),
                    doc="The run's display name; assigning it records the change.")
    tags = property(lambda self: self._get_identity("tags"), lambda self, v: self._set_identity("tags", v),
                    doc="The run's tags (a copy); assigning a list records the change.")
    group = property(lambda self: self._get_identity("group"), lambda self, v: self._set_identity("group", v),
                     doc="The run's group; assigning it records the change.")
    job_type = property(lambda self: self._get_identity("job_type"),
                        lambda self, v: self._set_identity("job_type", v),
                        doc="The run's job type; assigning it records the change.")
    notes = property(lambda self: self._get_identity("notes"), lambda self, v: self._set_identity("notes", v),
                     doc="The run's notes; assigning them records the change.")

    @property
    def path(self) -> str:
        """``project/run_id``: what :meth:`tracklet.Api.run` and the CLI take."""
        return f"{self.project}/{self.id}"

    @property
    def dir(self) -> str | None:
        """The run's directory (record log and ``files/``); None in disabled mode."""
        return str(self._paths.run_dir) if self._paths else None

    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` records at."""
        return self._step

    @property
    def finished(self) -> bool:
        return self._finished

    def set_step(self, step: int) -> None:
        """Move the current step forward to ``step`` without logging anything (never back): what
        a framework hook does so later ``log()`` calls land in its step's row."""
        if type(step) is not int:
            step = self._check_step(step)
        if step > INT64_MAX:
            self._refuse_step(step)
            return
        if step > self._step:
            self._step = step

    def __repr__(self) -> str:
        return f"<tracklet.Run {self.path} name={self.name!r}>"

    def __copy__(self) -> Run:
        """The run itself: a run is a handle on what this process records (its step, its writer),
        so an object holding one that is copied (``copy.copy``, ``copy.deepcopy``: a config, a
        callback, a trainer's arguments) holds the same run, as W&B's copy of a run attaches to it.
        (``copy`` would otherwise go through ``__reduce_ex__``, which is for another process.)"""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Run:
        """The run itself (``__copy__``)."""
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        """A run sent to another process (multiprocessing's ``spawn`` and ``forkserver`` start
        methods and a ``Pool``'s arguments pickle it) records there as a secondary writer of this
        run, joined on its first use (``tracklet.core.childrun``; docs/shared-runs.md)."""
        from tracklet.core import childrun

        return (childrun.unpickle, (childrun.spec_of(self, for_a_child=childrun.pickling_for_a_child()),))

    # ------------------------------------------------------------ recording

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Record ``data`` (``{name: value}``) at ``step``.

        Without ``step`` the row goes to the current step and, unless ``commit=False``, the step
        then advances. With ``step`` the row goes to that step and the step advances only with
        ``commit=True``; several calls at one step merge into one row. A step lower than the
        current one is refused with a warning (steps never go back).
        """
        if step is None:
            step = self._step
            advance = commit is not False
        else:
            if type(step) is not int:
                step = self._check_step(step)
            if step != self._step:
                if step < self._step:
                    self._warn_step(step)
                    return
                if step > INT64_MAX:
                    self._refuse_step(step)
                    return
                self._step = step
            advance = commit is True
        if type(data) is not dict and not isinstance(data, Mapping):
            raise TypeError(f"log() takes a dict of {{name: value}}; got {_values().type_name(data)}")
        keys = tuple(data)
        values = tuple(data.values())  # the copy
        known = self._keysets.get(keys)
        if known is None or self._strict:
            known = self._classify(keys, values)
        # Each branch builds what it queues before it loads the open chunk, and calls nothing between
        # that load and the append: the sender may seal the chunk at any switch point (sender.put).
        if known[0]:
            # One entry per value, after the key set's marker, step and time, in one atomic extend:
            # nothing queued is a GC-tracked object (see sender.RowKeys), so log() triggers no
            # collections. The temporary tuples are freed before this returns.
            entries = (known[2], step, _time()) + values
            queue = self._queue
            queue.extend(entries)
        elif known[0] is None and self._logged is not None and self._logged.submit_row(step, keys, values):
            # Logged objects only (``log({"img": Image(x)})``): the worker took them, the history
            # row is empty. None of the general path's per-call dicts and scans (see _classify).
            entry = (step, _time(), (), ())
            queue = self._queue
            queue.append(entry)
        else:
            row = self._prepare(dict(zip(keys, values)))
            if any(map(_holds_logged, row.values())):
                row = self._take_logged(row, step)
            entry = (step, _time(), tuple(row), tuple(row.values()))
            queue = self._queue
            queue.append(entry)
        if len(queue) >= self._chunk_entries:
            self._backlog()
        if advance:
            self._step = step + 1

    def _classify(self, keys: tuple, values: tuple) -> tuple[bool | None, tuple, RowKeys]:
        """First sight of a key set: are its values plain builtins? Plain key sets skip the type
        scan on later calls (a key whose value later becomes a dict is still flattened, on the
        worker) and are queued flat, after their marker; others take :meth:`_prepare` every
        time. A key set first seen holding logged objects only (media) says None: later calls
        hand its values straight to the logged-object worker, which takes them when each still is
        one (``submit_row``). Strict mode always checks. Returns (plain, the keys, the key set's
        marker)."""
        plain: bool | None = _PLAIN_TYPES.issuperset(map(type, values))
        if not plain and all(isinstance(value, LoggedObject) for value in values):
            plain = None
        marker = RowKeys(keys)
        if self._strict:
            return False, keys, marker
        if len(self._keysets) >= _MAX_KEYSETS:
            self._keysets.clear()
        self._keysets[keys] = known = (plain, keys, marker)
        return known

    def _prepare(self, row: dict) -> dict:
        """The caller-side slow path: flatten nested mappings (copying them; a dict that contains
        itself or nests too deep is cut there, with a warning), copy lists, tuples and sets
        (``values.snapshot_containers``: changing one after ``log()`` doesn't change what is recorded), turn
        matplotlib and plotly figures into the media they are recorded as (:meth:`_take_figures`) and, in strict mode,
        reject unsupported values before anything from this call is queued."""
        values = _values()
        if any(map(values.is_mapping, row.values())):
            cuts: list[tuple[str, str]] = []
            row = values.flatten(row, report=lambda where, why: cuts.append((where, why)))
            for where, why in cuts:
                key = where.partition("/")[0]
                if self._strict:
                    raise ValueError(
                        f"tracklet (strict mode): key {key!r}: {why} at {where!r}; nothing from this call was recorded"
                    )
                self._warn_once(
                    ("nesting", key), f"tracklet: key {key!r}: {why} at {where!r}; cut there, the rest is recorded"
                )
        if values.holds_container(row.values()):  # copied now: the caller may change them after log()
            values.snapshot_containers(row)
        if "matplotlib" in sys.modules or "plotly" in sys.modules:  # else no value can be a figure
            if _figures().holds_figure(row.values()):
                row = self._take_figures(row)
        if self._strict:
            bad = [(k, v) for k, v in row.items() if not values.is_supported_type(v) or not isinstance(k, str)]
            if bad:
                key, value = bad[0]
                type_name = values.type_name
                if not isinstance(key, str):
                    what = f"key {key!r} is a {type_name(key)}, not a str"
                elif type(value) is values.Oversized:  # a container too large to copy (snapshot_containers)
                    what = f"key {key!r}: {value.why}"
                elif isinstance(value, (list, tuple, set, frozenset)):
                    what = f"key {key!r} has a {type_name(value)} that can't be recorded ({values.structured_problem(value)})"
                else:
                    what = f"key {key!r} has a value of type {type_name(value)}"
                raise TypeError(f"tracklet (strict mode): {what}, which can't be logged; nothing from this call was recorded")
        return row

    def _take_figures(self, row: dict) -> dict:
        """The row with matplotlib and plotly figures (and lists of them) as the media they are
        recorded as (``tracklet.media.figures.as_logged``: a matplotlib figure is drawn now, on
        the caller, since figures aren't thread-safe). A figure that can't be drawn is left out
        with a warning; the rest of the row is recorded."""
        as_logged = _figures().as_logged
        taken = {}
        for key, value in row.items():
            try:
                taken[key] = as_logged(value)
            except Exception as error:
                if self._strict:
                    raise
                self._warn_once(("figure", key), f"tracklet: the figure logged under {key!r} could not be recorded "
                                f"({error!r}); it is left out of the row, the rest is recorded")
        return taken

    def _take_logged(self, row: dict, step: int) -> dict:
        """Hand the row's logged objects (media, tables; lists of them) to the run's
        logged-object worker (a type check and an append each: their constructors took the
        copy) and return the rest of the row for history."""
        rest = {}
        when = _time()
        for key, value in row.items():
            items = logged_items(value)
            if items is None:
                rest[key] = value
            elif not self._finished and self._sender is not None:  # else the queue's append says why
                # A table is snapshotted now (it changes after it is logged); media are themselves.
                items = [item._at_log(key, step) if isinstance(item, LoggedObject) else item for item in items]
                self._logged_worker().submit(step, when, key, items)
        return rest

    def _logged_worker(self) -> Any:
        if self._logged is None:
            with _LOGGED_LOCK:  # the sender's thread may ask too (_logged_in_history)
                if self._logged is None:
                    assert self._paths is not None
                    self._logged = start_worker(self._paths.root, self._enqueue, self._warn_logged,
                                                workers=self.settings.media_workers,
                                                max_pending=self.settings.media_queue, paths=self._paths)
        return self._logged

    def _logged_in_history(self, step: int, key: str, value: Any) -> Callable[[], None] | None:
        """On the sender's thread: a logged object that reached history because its row's key set
        was first seen with plain values (the fast path skips the type scan). Recorded as if the
        slow path had taken it: returns its submission, which the encoder makes once the record
        holding its row is written (a record cut and encoded again must not submit it twice);
        None if it isn't one."""
        items = logged_items(value)
        if items is None:
            return None
        when = _time()
        return lambda: self._logged_worker().submit(step, when, key, items)

    def _warn_logged(self, token: Any, message: str) -> None:
        """Warnings of the logged-object worker's threads: once per token, like the sender's."""
        if self._sender is not None:
            self._sender.warn(token, message)

    def _refuse_step(self, step: int) -> None:
        message = (
            f"tracklet: log(step={step}) is beyond the largest step a run can record (2**63 - 1); "
            "this call was not recorded"
        )
        if self._strict:
            raise ValueError(message)
        self._warn_once("step-range", message + " (further such calls are dropped silently)")

    def _warn_once(self, token: Any, message: str) -> None:
        """A ``TrackletWarning`` on the caller's thread, once per ``token`` for this run (shared with
        the sender's warnings, so a problem seen on either side is reported once)."""
        if self._sender is not None:
            self._sender.warn(token, message, stacklevel=user_stacklevel() + 1)  # + the sender's warn frame
        elif token not in self._warned:
            self._warned.add(token)
            warnings.warn(message, TrackletWarning, stacklevel=user_stacklevel())

    def _report_cuts(self, what: str, cuts: list[tuple[str, str]]) -> None:
        """One warning per top-level key of ``what`` (config, summary) where a value was cut."""
        for where, why in cuts:
            key = where.partition("/")[0]
            self._warn_once((what, "cut", key), f"tracklet: {what} key {key!r}: {why} (at {where!r})")

    def _check_step(self, step: Any) -> int:
        try:
            return int(step.__index__())
        except (AttributeError, TypeError):
            raise TypeError(f"step must be an int; got {_values().type_name(step)} {step!r}") from None

    def _warn_step(self, step: int) -> None:
        if "step" not in self._warned:
            self._warned.add("step")
            warnings.warn(
                f"tracklet: log(step={step}) is lower than the current step {self._step}; steps must not "
                "decrease, so this call was not recorded (further such calls are dropped silently)",
                TrackletWarning,
                stacklevel=user_stacklevel(),
            )

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | list[str] | None = None,
        hidden: bool = False,
        *,
        summary_as_dict: bool = False,
    ) -> None:
        """Say how a metric (or a glob like ``"val/*"``) is summarised and which key is its x axis.

        ``summary`` is ``"min"``, ``"max"``, ``"mean"``, ``"last"`` or ``"none"``, or several joined
        with commas. With one mode, ``summary[name]`` holds that aggregate; with several, a dict
        ``{mode: value}``. ``summary_as_dict=True`` gives the dict even with one mode
        (``{"min": 0.02}``: W&B's shape, which the W&B compatibility layer and importer use).
        """
        if not isinstance(name, str) or not name:
            raise ValueError("define_metric() needs a metric name or glob pattern")
        from tracklet.core.encoder import SUMMARY_MODES, summary_modes
        from tracklet.proto import records_pb2 as pb

        modes = summary_modes(summary)
        record = pb.Record()
        definition = record.metric_definition
        definition.name = name
        definition.step_metric = step_metric or ""
        definition.summary.extend(SUMMARY_MODES[m] for m in modes)
        definition.hidden = hidden
        definition.summary_as_dict = bool(summary_as_dict)
        self._enqueue(DefineMetric(record, name, modes, summary_as_dict))

    def alert(self, title: str, text: str = "", level: str = "INFO") -> None:
        """Record an alert (shown on the run's page). A tracking server the run reports to (online
        mode, or ``tracklet sync``) delivers it to its ``run.alert`` automations: webhooks and chat
        messages (docs/audit.md)."""
        from tracklet.proto import records_pb2 as pb

        levels = {"INFO": pb.Alert.LEVEL_INFO, "WARN": pb.Alert.LEVEL_WARN, "ERROR": pb.Alert.LEVEL_ERROR}
        if level.upper() not in levels:
            raise ValueError(f"alert level must be one of {', '.join(levels)}; got {level!r}")
        record = pb.Record()
        record.alert.title = str(title)
        record.alert.text = str(text)
        record.alert.level = levels[level.upper()]
        record.alert.time = _time()
        self._enqueue(record)

    def log_checkpoint(
        self,
        path: str | os.PathLike,
        *,
        step: int | None = None,
        score: float | None = None,
        monitor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a checkpoint file (or directory): path, size and SHA-256, computed off this
        thread, with the step (default: the current one) and the monitored score when known."""
        if self._finished:
            raise RuntimeError(_FINISHED)
        if self._checkpoints is None:
            from tracklet.core.checkpoints import CheckpointRecorder

            self._checkpoints = CheckpointRecorder(self._enqueue)
        self._checkpoints.submit(
            path, step=self._step if step is None else int(step), score=score, monitor=monitor,
            metadata=dict(metadata) if metadata else None,
        )

    def log_artifact(self, artifact_or_path: Any, name: str | None = None, type: str | None = None,
                     aliases: list[str] | None = None) -> Any:
        """Log a ``tracklet.Artifact`` (or a file or directory path, made into one) as a version
        of ``project/name`` and return it at once: hashing and storing happen on a background
        thread (``artifact.wait()`` blocks until the version is committed; ``finish()`` waits for
        pending artifacts within its timeout). Identical content returns the latest version.
        See docs/artifacts.md."""
        if self._finished:
            raise RuntimeError(_FINISHED)
        artifact = _artifacts().prepare(artifact_or_path, name, type)
        pending = artifact._freeze(self.project, list(aliases or []))
        artifact._history_step = max(0, self._step - 1)  # W&B's history_step: the last step logged
        self._artifact_worker().log(artifact, pending)
        return artifact

    def use_artifact(self, artifact_or_name: Any, type: str | None = None, aliases: Any = None) -> Any:
        """Record that this run uses an artifact version: ``"name"`` (latest), ``"name:v3"``,
        ``"name:alias"``, ``"project/name:alias"``, or an Artifact. Returns the committed version
        (``download()`` it); ``ArtifactNotFound`` if there is none. A name no artifact has but a
        run's logged table does, as W&B names it (``run-<run id>-<key>:v<n>`` or ``:latest``,
        type ``run_table``), is that table: the use is recorded the same way (lineage shows
        producer run -> table -> this run) and a ``RunTableVersion`` returned (``.table()``)."""
        from tracklet.errors import ArtifactNotFound

        if self._finished:
            raise RuntimeError(_FINISHED)
        artifacts = _artifacts()
        if isinstance(artifact_or_name, artifacts.Artifact):
            artifact = artifact_or_name
            if artifact._state in ("pending", "failed"):  # not .state: wandb.Artifact says W&B's
                self._artifact_worker().use(artifact)
                return artifact
            artifact._committed_info("version to use")
        else:
            assert self._paths is not None
            if self._artifact_pins and isinstance(artifact_or_name, str):  # a reproduction: the original's version
                from tracklet.core.reproduction import pinned

                artifact_or_name = pinned(artifact_or_name, self.project, self._artifact_pins)
            # A registry collection ("model/mnist:production", "models:/mnist@production") first.
            artifact = _registry().resolve(self._paths.root, artifact_or_name, type=type,
                                           remote=self._artifact_remote())
            if artifact is None:
                if self._artifacts is not None:  # this run's own versions of that name first
                    ref = artifacts.parse_ref(artifact_or_name)
                    self._artifacts.settle(ref.project or self.project, ref.name)
                try:
                    artifact = artifacts.resolve(self._paths.root, artifact_or_name, default_project=self.project,
                                                 type=type, remote=self._artifact_remote())
                except ArtifactNotFound:  # a run's logged table, as W&B names it: run-<id>-<key>:v<n>
                    table = (artifacts.resolve_run_table(self._paths.root, artifact_or_name, self.project,
                                                         self._artifact_remote())
                             if type in (None, "run_table") else None)
                    if table is None:
                        raise
                    artifact = table
        self._enqueue(_deferred(_artifact_used_record, {"info": artifact._info, "time": _time()}))
        return artifact

    def link_artifact(self, artifact: Any, target_path: str, aliases: list[str] | None = None) -> Any:
        """Link a logged artifact version into a registry collection, ``"registry/collection"``
        (or W&B's ``"wandb-registry-model/name"``), without copying it, giving it ``aliases`` in
        the collection. Waits until the version is stored (and, online, uploaded). Returns the
        version as read through the collection. A draft not logged yet is logged by this run
        first, as W&B's ``run.link_artifact`` does. See docs/registry.md."""
        if self._finished:
            raise RuntimeError(_FINISHED)
        if getattr(artifact, "_state", None) == "draft":  # tracklet.artifacts.artifact.DRAFT
            artifact = self.log_artifact(artifact)
        linked = _registry().link_artifact(artifact, target_path, aliases=list(aliases or []),
                                           reason=f"linked by run {self.path}", remote=self._artifact_remote())
        self._enqueue(_deferred(_artifact_linked_record, {"linked": linked, "time": _time()}))
        return linked

    def link_model(self, path: Any, registered_model_name: str, name: str | None = None,
                   aliases: list[str] | None = None) -> Any:
        """Log ``path`` (a file or directory) as a ``model`` artifact (``name``, default its base
        name) and link it into the registry: ``registered_model_name`` is a collection of the
        ``model`` registry, or a ``"registry/collection"``. Returns the linked version."""
        if self._finished:
            raise RuntimeError(_FINISHED)
        target = _registry().model_target(registered_model_name)
        artifact = self.log_artifact(path, name=name, type="model")
        return self.link_artifact(artifact, target, aliases=aliases)

    def _artifact_worker(self) -> Any:
        if self._artifacts is None:
            assert self._paths is not None and self._sender is not None
            with _WORKER_LOCK:
                if self._artifacts is None:
                    self._artifacts = _artifacts().ArtifactWorker(self._paths.root, self._enqueue, self._sender.warn,
                                                                  self.path, remote=self._artifact_remote(),
                                                                  exit_timeout=self.settings.finish_timeout)
        return self._artifacts

    def _log_code_snapshot(self, files: dict[str, HashedBytes], program: str) -> None:
        """Log the code snapshot (the untracked files the program imported) as a ``code``
        artifact, on the environment thread: content-addressed, so a sweep's runs of the same
        code share its blobs (and its version, when it is the collection's latest)."""
        from tracklet.core.reproduction import code_artifact

        artifact = code_artifact(_artifacts().Artifact, files, program)
        self._artifact_worker().log(artifact, artifact._freeze(self.project, []))

    def _artifact_remote(self) -> tuple[str, str | None] | None:
        """An online run's server (URL, API key): where its artifacts go and are looked up."""
        if self.settings.mode != "online" or not self.settings.base_url:
            return None
        return self.settings.base_url, self.settings.api_key

    def flush(self, timeout: float | None = None, fsync: bool = False) -> bool:
        """Wait until everything logged so far is in the record log (handed to the OS: it survives
        the process being killed); with ``fsync``, on disk too (a power cut keeps it). False on
        timeout. ``finish()`` always fsyncs; nothing else does (docs/architecture.md)."""
        if self._sender is None or self._finished:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._logged is not None:  # media and tables queue their records once stored
            if not self._logged.flush(None if deadline is None else max(0.0, deadline - time.monotonic())):
                return False
        if self._seeds is not None:
            self._seeds.tick(deferred=True)  # the seeds set so far (their record is built on the worker)
        return self._sender.force_flush(None if deadline is None else max(0.0, deadline - time.monotonic()),
                                        fsync=fsync)

    def _record_config(self, items: dict[str, Any], removed: list[str]) -> None:
        """Queue a ``ConfigUpdate`` of already-plain ``items``; the worker builds the record."""
        self._enqueue(lambda: self._config_record(items, removed))
        self._nudge()  # written at the worker's next turn, not its next tick: a killed run keeps it

    def _config_record(self, items: dict[str, Any], removed: list[str]) -> Message:
        from tracklet.core import wire

        record = wire.Record()
        update = record.config
        update.SetInParent()
        _values().fill_entries(update.items, items, self._config_failed)
        update.removed.extend(removed)
        return record

    def _config_failed(self, key: str, error: Exception) -> None:
        self._warn_once(
            ("config-error", key), f"tracklet: config key {key!r} could not be recorded ({error!r}); left out"
        )

    def _set_summary(self, items: dict[str, Any], removed: tuple[str, ...]) -> None:
        self._enqueue(SummarySet(items, removed))

    def _summary_values(self) -> dict[str, Any]:
        if self._sender is None:
            return {}
        if not self._finished:
            self._sender.force_flush(self.settings.finish_timeout)
        return dict(self._sender.summary.values)

    def _enqueue(self, item: Any) -> None:
        """Queue a non-history item (config, summary, alert, console lines, records)."""
        queue = self._queue
        queue.append(item)
        if len(queue) >= self._chunk_entries:
            self._backlog()

    # ------------------------------------------------------------ lifecycle

    def _start(self, config: Any, resume_state: Any = None) -> None:
        assert self._paths is not None
        paths = self._paths
        paths.files_dir.mkdir(parents=True, exist_ok=True)
        writer = RecordLogWriter(paths.log_file, resume=resume_state is not None)
        if writer.recovery is not None and writer.recovery.damaged:
            warnings.warn("tracklet: " + writer.recovery.describe(), TrackletWarning, stacklevel=user_stacklevel())
        key_ids = summary = None
        # The worker and the capture threads start their heavy imports (protobuf, psutil, NVML)
        # once this is set, as init() returns, instead of taking the GIL from it while it still runs.
        gate = threading.Event()
        if resume_state is not None:
            self.resumed = True
            self._step = resume_state.next_step
            self.config._data.update(resume_state.config)
            self.config._data.pop(SETS_STATE_KEY, None)  # a restarted secondary's mark: never in its config
            key_ids, summary = resume_state.key_ids, resume_state.summary
        self._sender = BatchSender(
            [writer],
            flush_interval=self.settings.flush_interval,
            max_queue=self.settings.max_queue,
            batch_size=self.settings.batch_size,
            key_ids=key_ids,
            summary_values=summary,
            name=f"tracklet-sender-{self.id}",
            start_gate=gate,
        )
        try:
            self._sender.bind(self)  # self._queue: the open chunk, kept on it by the sender
            self._chunk_entries = self._sender.chunk_entries
            self._backlog = self._sender.backlog
            self._nudge = self._sender.nudge
            self._sender.logged_hook = self._logged_in_history
            # The first record of the log (readers take a run's identity from it), written before
            # init() returns: a process killed before the sender's first turn is still a run.
            self._write_start(writer)
            self._start_capture(config, gate)
            lifecycle.register(self)
        finally:
            gate.set()

    def _write_start(self, writer: RecordLogWriter) -> None:
        """Write the ``RunStart`` record now, on the caller's thread, before the sender's worker
        touches the log (it waits for the gate). Costs a cold ``init()`` the ``wire`` and ``redact``
        imports the worker would make moments later anyway, and one ``writev`` (no fsync: a killed
        process's writes are in the page cache). A write cut short (a full disk) stays pending in
        the writer, for the sender's first flush; a record that can't be built is left to the
        worker, which reports why."""
        fields = self._run_start_fields()
        try:
            payload = _run_start_record(fields).SerializeToString()
        except Exception:
            self._enqueue(_deferred(_run_start_record, fields))
            return
        writer.write(payload)
        try:
            writer.flush()
        except OSError:
            pass

    def _start_capture(self, config: Any, gate: threading.Event) -> None:
        """The rest of ``_start``: the config, console capture, environment, system monitor, uploader."""
        paths = self._paths
        assert paths is not None and self._sender is not None
        if config is not None:
            self.config.update(config)
        if not self.settings.primary and self.settings.update_finish_state:  # its end sets the run's state too
            self._record_config({SETS_STATE_KEY: True}, [])  # the readers' mark, never in the run's config
        if self.settings.console == "wrap":
            self._console = ConsoleCapture(self._sender.put, ConsoleChunk)
            self._console.start()
            console, age = self._console, self.settings.flush_interval / 2
            self._sender.add_tick_hook(lambda: console.stale_chunks(age))
        from tracklet.core import seeds

        # Recorded as the program sets them; a seeding call wakes the worker to write them.
        self._seeds = seeds.RunSeeds(self._sender.put, self._sender.wake)  # never the open chunk's append
        self._sender.add_tick_hook(self._seeds.tick)
        if self.settings.capture_environment:
            from tracklet.core.environment import EnvironmentCapture

            self._environment = EnvironmentCapture(os.getcwd(), paths.files_dir, self._sender.put_soon, self._sender.warn,
                                                   cache_dir=paths.root / "cache",
                                                   gpu_names=not self.settings.system_metrics,
                                                   log_code=self._log_code_snapshot)
            self._environment.start(gate)
        if self.settings.system_metrics:
            from tracklet.core.system import SystemMonitor, default_samplers

            samplers = default_samplers(paths.run_dir, per_core=self.settings.system_per_core, report=self._sender.warn,
                                       pcie=self.settings.system_pcie)
            self._monitor = SystemMonitor(
                samplers,
                self._sender.put,
                interval=self.settings.system_interval,
                window=self.settings.system_window,
                report=self._sender.warn,
            )
            self._monitor.start(gate)
        if self.settings.mode == "online":
            assert self._uploader_factory is not None  # init() refuses online mode without one
            self._uploader = self._uploader_factory(paths, self.settings, self._sender.warn)
            self._uploader.start()

    def _run_start_fields(self) -> dict[str, Any]:
        """What the ``RunStart`` record says, taken now (on the caller's thread); strings the
        record can't hold as they are (an undecodable cwd, argument or user name; a name, notes or tags
        given with lone surrogates, which ``_recordable`` warns of) are made readable
        (``hostinfo.recordable_text``) rather than losing the whole record."""
        from tracklet import __version__

        fields = dict(
            run_id=self.id,
            project=self.project,
            name=self.name,
            tags=list(self.tags),
            group=self.group,
            job_type=self.job_type,
            notes=self.notes,
            start_time=self.start_time,
            host=hostinfo.hostname(),
            pid=os.getpid(),
            python_version=hostinfo.python_version(),
            platform=hostinfo.platform_string(),
            command=[sys.executable, *sys.argv],
            cwd=os.getcwd(),
            tracklet_version=__version__,
            resumed=self.resumed,
            reproduces=self._reproduces,
            username=hostinfo.os_user_name(),
        )
        return self._recordable(fields)

    def finish(self, exit_code: int | None = None, *, error: BaseException | None = None) -> None:
        """End the run: record its exit, write everything queued, fsync the record log.

        ``exit_code`` 0 (the default) marks the run finished, anything else failed. Waits at most
        ``settings.finish_timeout`` seconds for the background sender.
        """
        if self._finished:
            return
        # A Ctrl-C ends finish()'s waits (_FinishBudget), never what it does between them (the exit
        # record): one arriving there is held for the next wait, or raised once the run is ended.
        release = lifecycle.hold_ctrl_c()
        # No garbage collection while finish() waits: one started by the worker's last drain or by
        # the environment capture (which unmarshals the package inventory: thousands of containers)
        # held the GIL for milliseconds of a short script's finish(). Resumed as finish() returns.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._finish(exit_code, error)
        except BaseException:
            if release is not None:
                release()
            raise
        finally:
            if collecting:
                gc.enable()
        if release is not None and release():
            raise KeyboardInterrupt  # held since finish()'s last wait: the run is ended, the caller's Ctrl-C goes on

    def _finish(self, exit_code: int | None, error: BaseException | None) -> None:
        """``finish()``'s steps, in one loop: an exception a signal handler raises (a SIGTERM's
        ``sys.exit``: a sweep trial's stop) landing on any line once the run is marked finished is
        held (``_FinishBudget``) like one that ends a wait: the waits left are cut short, the exit
        and the rows still written, then it is raised; one landing before leaves the run live
        (ended at exit). (Ctrl-C is held between waits by ``lifecycle.hold_ctrl_c`` already.)"""
        budget = _FinishBudget(self.settings.finish_timeout)
        steps: list[Callable[[], Any]] = [
            self._begin_finish,
            lambda: self._finish_waits(budget),  # cut short, not begun again, by an interrupt
            lambda: self._queue_exit(exit_code, error),
            lambda: budget.wait(self._shut_down_sender, essential=True),
            lambda: self._uploader is None or budget.wait(self._uploader.finish, cap=self.settings.upload_timeout),
        ]
        step = 0
        while True:
            try:
                while step < len(steps) and (step < 2 or self._sender is not None):
                    steps[step]()
                    step += 1
                break
            except (KeyboardInterrupt, SystemExit) as caught:
                if not self._finished:
                    raise
                budget._interrupted_by(caught)
                if step == 1:
                    step = 2
            except Exception as caught:
                # A sweep agent's prune (``TrialPruned``, raised into a function trial's thread:
                # sweeps/agent.py) landing once the run is ending is too late: the run ends as it
                # was ending (the step it cut is done again), the prune ignored, as a command
                # trial's late SIGTERM is (core/sweeptrial.py). Raised on, it left the run crashed.
                if not self._finished or not _is_trial_pruned(caught):
                    raise
        if budget.caught is not None:  # the run is ended; the caller's Ctrl-C (or SIGTERM's exit) goes on
            raise budget.caught

    def _stop_logging(self, stop: Callable[..., None]) -> None:
        """A sweep agent's prune of a function trial (``sweeps/agent.py``): until the run
        finishes, ``log()`` is ``stop``, which raises ``TrialPruned`` at the call's entry, before
        anything is recorded: a clean point the prune reaches in any loop that logs. An instance
        attribute in front of the method, so ``log()``'s own path has no check for it."""
        self.__dict__["log"] = stop

    def _cut_upload_wait(self, seconds: float) -> None:
        """Make ``finish()`` (under way or later) wait at most ``seconds`` from now for the online
        upload; what is left stays in the record log for ``tracklet sync`` (core/childrun.py: a
        pool worker whose pool is torn down). Safe in a signal handler."""
        if self._uploader is not None:
            self._uploader.cut_wait(seconds)

    def _begin_finish(self) -> None:
        self._finished = True
        self.__dict__.pop("log", None)  # a pruned trial's stop (_stop_logging): a finished run's log() again
        lifecycle.unregister(self)

    def _shut_down_sender(self, left: float) -> bool:
        assert self._sender is not None
        return self._sender.shutdown(left, budget=f"finish()'s {self.settings.finish_timeout:g} s "
                                                  "(settings.finish_timeout, TRACKLET_FINISH_TIMEOUT; "
                                                  "everything finish() waits for shares it)")

    def _finish_waits(self, budget: "_FinishBudget") -> None:
        """``finish()``'s waits before the exit: capture, checkpoints, monitor, rows, media, artifacts."""
        if self._sender is None:
            return
        # The environment capture still running is waited for at most capture_wait: what is ready
        # then is recorded, the rest named as incomplete, with the reason.
        capture_cap = self.settings.capture_wait
        # The worker starts on what is queued now (the rows), while capture is waited for.
        self._sender.wake(finishing=True)
        if self._monitor is not None:  # its last sample is taken while the rest below goes on
            self._monitor.request_stop()
        if self._console is not None:
            self._console.stop()
        if self._environment is not None:
            budget.wait(self._environment.finish, cap=capture_cap)
        if self._checkpoints is not None and not budget.wait(self._checkpoints.close):
            print("tracklet: checkpoint digests still running at finish were not recorded", file=sys.stderr)
        if self._monitor is not None:  # one that has not taken its first sample is not waited for
            budget.wait(self._monitor.stop, cap=5.0)
        # Rows still queued may hold media the sender hands to the logged-object worker: first them.
        budget.wait(self._sender.force_flush, essential=True)
        if self._logged is not None and not budget.wait(self._logged.close, notice=self._logged_notice):
            print("tracklet: media or tables still being stored at finish were not recorded (each is recorded "
                  "whole or not at all)", file=sys.stderr)
        if self._artifacts is not None and not budget.wait(self._artifacts.close, notice=self._artifacts_notice):
            why = ("interrupted (Ctrl-C)" if budget.interrupted
                   else f"after finish_timeout, {self.settings.finish_timeout:g} s")
            print(f"tracklet: artifacts still being stored at finish ({why}) are not recorded in the run's log (a "
                  "version is committed whole or not at all)" + (
                      "; `tracklet sync` uploads the versions it committed to the server" if self._artifact_remote()
                      else "") + "".join(f"\n  {line}" for line in self._artifacts.unfinished()), file=sys.stderr)

    def _logged_notice(self) -> str | None:
        """What ``finish()`` says once its wait for media and tables lasts (``_FinishBudget.wait``)."""
        pending = self._logged.pending if self._logged is not None else 0
        return f"{pending} media item(s) or table log(s) still being stored" if pending else None

    def _artifacts_notice(self) -> str | None:
        """What ``finish()`` says once its wait for artifacts lasts (``_FinishBudget.wait``)."""
        lines = self._artifacts.unfinished() if self._artifacts is not None else []
        return "artifacts still being stored" + "".join(f"\n  {line}" for line in lines) if lines else None

    def _queue_exit(self, exit_code: int | None, error: BaseException | None) -> None:
        """Queue the exit record (the run's last) and close the queue to ``log()``; done already
        (this step run again after an interrupt landed at its end): nothing."""
        assert self._sender is not None
        if isinstance(self._queue, _NoQueue):
            return
        if self._exit_item is None:
            if exit_code is None:
                exit_code = 0 if error is None else 1
            end_time = _time()
            fields: dict[str, Any] = dict(exit_code=int(exit_code), end_time=end_time,
                                          runtime=end_time - self.start_time)
            if error is not None:
                import traceback

                fields["error"] = f"{type(error).__name__}: {error}"
                fields["traceback"] = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            if self._seeds is not None:
                self._seeds.close()  # the seeds set since the last tick, before the exit
            self._exit_fields = fields
            self._exit_item = _Once(_deferred(_exit_record, fields))
        # Queued again when an interrupt landed after it was queued and before the queue was
        # closed (nothing tells the two apart): the worker writes the one exit record once.
        self._sender.put_last(self._exit_item)
        self._queue = _NoQueue(_FINISHED)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if error is None or _is_trial_pruned(error):  # pruned: stopped by its sweep, not failed (tagged pruned)
            self.finish()
        else:
            self.finish(130 if isinstance(error, KeyboardInterrupt) else 1, error=error)

    def _after_fork_in_child(self) -> None:
        """In a child made by fork: the parent's writer (its threads, lock and buffers) is not the
        child's, so it is dropped, and the object becomes a ``ChildRun`` that records into the run
        as a secondary writer on first use (``tracklet.core.childrun``): ``log()`` itself pays
        nothing for it."""
        self._queue = _NoQueue(_FORKED)
        self._finished = True
        self.__dict__.pop("log", None)  # the parent's prune (_stop_logging) is not the child's
        self._after_fork_abandon()
        from tracklet.core import childrun

        childrun.become_child(self)

    def _after_fork_abandon(self) -> None:
        if self._console is not None:
            self._console.disable()
        if self._sender is not None:
            self._sender.abandon_after_fork()
            for sink in self._sender.sinks:
                abandon = getattr(sink, "abandon_after_fork", None)
                if abandon is not None:
                    abandon()


def _is_trial_pruned(caught: BaseException) -> bool:
    from tracklet.errors import TrialPruned

    return isinstance(caught, TrialPruned)


class _FinishBudget:
    """``finish()``'s ``finish_timeout``, shared by everything it waits for, and what a Ctrl-C
    (or a signal handler's ``sys.exit``) during those waits does: it ends the optional ones
    (capture, media, artifacts, uploads: each says what it left), while the run's own records (the
    rows, the exit) are still written within the budget (a further Ctrl-C ends that wait too); then
    ``finish()`` raises it again. Without this, a second Ctrl-C (the usual "stop waiting") escaped
    ``finish()`` with a traceback and left the run without its exit record: read back as crashed,
    its last rows possibly unwritten."""

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds
        # A Ctrl-C (or a signal handler's sys.exit: a sweep trial's SIGTERM) that ended one of this
        # finish()'s waits: raised again once the run is ended.
        self.caught: BaseException | None = None

    @property
    def interrupted(self) -> bool:
        """Whether a Ctrl-C ended a wait of this finish(), or interpreter exit's wait before it."""
        return self.caught is not None or lifecycle.waiting_stopped_at_exit()

    def wait(self, wait: Callable[[float], Any], *, cap: float = float("inf"), essential: bool = False,
             notice: Callable[[], str | None] | None = None) -> Any:
        """``wait(seconds left)``'s result, or None if a Ctrl-C ended it. After a Ctrl-C, a wait
        that isn't ``essential`` gets 0 seconds. An ``essential`` one (the rows, the exit) that the
        first Ctrl-C lands in is waited for again (``wait`` is called again: it must take that),
        and a further one ends it: a single Ctrl-C in the sender's shutdown ended it, and a script
        ending then lost the exit and the rows not yet written. ``notice()``: what is waited for
        (None: nothing), said on stderr with how to stop waiting once the wait lasts
        ``WAIT_NOTICE_AFTER`` seconds: a silent wait after a Ctrl-C read as a hang."""
        left = max(0.0, min(cap, self._deadline - time.monotonic()))
        if self.interrupted and not essential:
            left = 0.0
        timer = None
        try:
            try:
                if lifecycle.open_wait():  # a Ctrl-C that arrived since the last wait
                    self._interrupted_by(KeyboardInterrupt())
                    left = left if essential else 0.0
                if notice is not None and left > WAIT_NOTICE_AFTER and notice():  # (nothing pending: no thread)
                    timer = _notice_later(notice, left)
                return wait(left)
            finally:
                if timer is not None:
                    timer.cancel()
                lifecycle.close_wait()
        except (KeyboardInterrupt, SystemExit) as error:
            first = not self.interrupted
            self._interrupted_by(error)
            if not (essential and first):
                return None
        try:
            try:
                lifecycle.open_wait()
                return wait(max(0.0, min(cap, self._deadline - time.monotonic())))
            finally:
                lifecycle.close_wait()
        except (KeyboardInterrupt, SystemExit):
            return None

    def _interrupted_by(self, error: BaseException) -> None:
        if not self.interrupted:
            lifecycle.say_interrupted()
        self.caught = self.caught or error


WAIT_NOTICE_AFTER = 1.5  # seconds a wait of finish() for what a run is still storing goes on before it says so


def _notice_later(notice: Callable[[], str | None], left: float) -> threading.Timer:
    """A timer saying, after ``WAIT_NOTICE_AFTER`` seconds, what ``finish()`` still waits for
    (``notice()``; None: nothing any more) and that Ctrl-C stops waiting (a second one, when the
    script was ended by one)."""
    def say() -> None:
        try:
            what = notice()
        except Exception:  # noqa: BLE001 - a notice never breaks finish()
            return
        if what:
            escaped, _ = lifecycle.exit_reason()
            again = " again" if isinstance(escaped, KeyboardInterrupt) else ""
            print(f"tracklet: finishing the run: waiting up to {left:.0f} s for {what}; press Ctrl-C{again} to stop "
                  "waiting (what is not stored by then is not recorded)", file=sys.stderr, flush=True)

    return threads.later(WAIT_NOTICE_AFTER, say)


def _holds_logged(value: Any) -> bool:
    """A logged object (``tracklet.Image``, ...) or a non-empty list/tuple starting with one."""
    return isinstance(value, LoggedObject) or (type(value) in (list, tuple) and bool(value)
                                               and isinstance(value[0], LoggedObject))


class _Once:
    """A deferred queue item whose record is built and written at most once however often it is
    queued (the sender's one worker calls it; None after the first call: nothing written)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build: Callable[[], Any] | None = build

    def __call__(self) -> Any:
        build, self._build = self._build, None
        return None if build is None else build()


def _deferred(build: Callable[[dict[str, Any]], Any], fields: dict[str, Any]) -> Callable[[], Any]:
    """A queue item the sender's worker calls to get the record (see ``BatchSender._handle``)."""
    return lambda: build(fields)


def _run_start_record(fields: dict[str, Any]) -> Message:
    """The ``RunStart`` record, built on the worker from ``Run._run_start_fields`` (without protobuf)."""
    from tracklet.core import wire
    from tracklet.core.redact import redact_command

    record = wire.Record()
    start = record.run_start
    start.schema_version = wire.SCHEMA_VERSION_1
    for name in ("run_id", "project", "name", "group", "job_type", "notes", "start_time", "host", "pid",
                 "python_version", "platform", "cwd", "tracklet_version", "resumed", "reproduces", "username"):
        setattr(start, name, fields[name])
    start.tags.extend(fields["tags"])
    start.command.extend(redact_command(fields["command"]))  # no --api-key X, no tokens
    return record


def _artifact_used_record(fields: dict[str, Any]) -> pb.Record:
    """The ``ArtifactUsed`` record, built on the worker."""
    return _artifacts().used_record(fields["info"], fields["time"])


def _artifact_linked_record(fields: dict[str, Any]) -> pb.Record:
    """The ``ArtifactLinked`` record (proto field 23), built on the worker."""
    return _registry().linked_record(fields["linked"], fields["time"])


def _figures() -> Any:
    """``tracklet.media.figures``, plugged in by the package (``core/extensions.py``) and kept
    after the first call: ``log()``'s slow path asks it about every row while matplotlib or
    plotly is imported."""
    global _FIGURES
    if _FIGURES is None:
        from tracklet.core.extensions import load

        _FIGURES = load("figures")
    return _FIGURES


_FIGURES: Any = None


def _artifacts() -> Any:
    """``tracklet.artifacts.run_hooks``, plugged in by the package (``core/extensions.py``)."""
    from tracklet.core.extensions import load

    return load("artifacts")


def _registry() -> Any:
    """``tracklet.registry.service``, plugged in by the package (``core/extensions.py``)."""
    from tracklet.core.extensions import load

    return load("registry")


def _exit_record(fields: dict[str, Any]) -> Message:
    """The ``RunExit`` record, built on the worker from what ``Run.finish`` took (without protobuf)."""
    from tracklet.core import wire

    record = wire.Record()
    end = record.exit
    end.SetInParent()
    for name, value in fields.items():
        setattr(end, name, value)
    return record


class DisabledRun(Run):
    """``mode="disabled"``: every call returns at once; config and summary live in memory only."""

    def __init__(self, settings: Settings, **identity: Any) -> None:
        super().__init__(settings, paths=None, **identity)
        self._summary: dict[str, Any] = {}

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        return None

    def log_checkpoint(self, path: Any, **kwargs: Any) -> None:
        return None

    def log_artifact(self, artifact_or_path: Any, name: str | None = None, type: str | None = None,
                     aliases: list[str] | None = None) -> Any:
        return _artifacts().prepare(artifact_or_path, name, type)  # not stored: the run is disabled

    def use_artifact(self, artifact_or_name: Any, type: str | None = None, aliases: Any = None) -> Any:
        from tracklet.core.settings import data_root

        if not isinstance(artifact_or_name, str):
            return artifact_or_name
        from tracklet.errors import ArtifactNotFound

        found = _registry().resolve(data_root(self.settings), artifact_or_name, type=type)
        if found is not None:
            return found
        try:
            return _artifacts().resolve(data_root(self.settings), artifact_or_name, default_project=self.project,
                                        type=type)
        except ArtifactNotFound:  # a run's logged table (run-<id>-<key>:v<n>): read, not recorded
            table = (_artifacts().resolve_run_table(data_root(self.settings), artifact_or_name, self.project)
                     if type in (None, "run_table") else None)
            if table is None:
                raise
            return table

    def link_artifact(self, artifact: Any, target_path: str, aliases: list[str] | None = None) -> Any:
        return artifact  # not linked: the run is disabled

    def link_model(self, path: Any, registered_model_name: str, name: str | None = None,
                   aliases: list[str] | None = None) -> Any:
        return _artifacts().prepare(path, name, "model")  # not stored: the run is disabled

    def _set_summary(self, items: dict[str, Any], removed: tuple[str, ...]) -> None:
        self._summary.update(items)
        for key in removed:
            self._summary.pop(key, None)

    def _summary_values(self) -> dict[str, Any]:
        return self._summary

    def finish(self, exit_code: int | None = None, *, error: BaseException | None = None) -> None:
        self._finished = True
        self.__dict__.pop("log", None)  # see Run._begin_finish
        lifecycle.unregister(self)

