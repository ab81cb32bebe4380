"""A shared run's parts: what secondary writers recorded, merged into the run as readers show it.

A run written by several processes (distributed training: W&B's shared mode) has the primary's
record log ``run.tlog`` and one log per secondary writer, ``parts/<label>.tlog`` (same format, its
own writer lock), so no two processes ever write one file. Readers (``core/api.py``'s
``RecordedRun``) and the store (``store/ingest.py``) apply the same rules, in docs/shared-runs.md:

- history: every writer's keys keep their names (an evaluator's ``eval/acc`` is the run's
  ``eval/acc``), rows merged by step. A key logged by more than one writer belongs to one of them,
  its **owner**: the primary if it logs the key, else the secondary first in label order; every
  other writer's values of that key are the run's ``<key>/l:<label>`` (``loss/l:rank_1``), so no
  series mixes two processes' values and each rank's curve stays whole;
- summary: every writer's value of a summary key is kept, one under the key, the others under
  ``<key>/l:<label>``. The key's value is its **summary owner**'s (``summary_owner``): the primary
  if it logs the key or its summary has it; else the key's history owner (a secondary that logs
  it, the first in label order); else the first secondary in label order whose summary has it.
  History first: a secondary's summary-only value of a key another secondary logs is labelled, and
  a secondary's last value of a history key whose summary entry the primary set is
  ``<key>/l:<label>`` (its series keeps the key's name). A writer's ``del run.summary[key]`` takes
  its own value away (``summary_claim``): the key's owner that logs it keeps it (no value shows),
  one that only set it hands it on to the next writer's value. The same whatever order the
  writers are read or indexed in;
- system metrics: a secondary's metric ``m`` is ``m/l:<label>`` (``gpu.0.gpu/l:rank_1``, W&B's
  per-label form), so each node's GPUs show beside the primary's;
- console: a secondary's lines read ``[<label>] text``, in time order with the primary's;
- config: the primary's, then each key the primary's config has not (now: a key it removed
  included) from the first secondary in label order whose config has it (``merged_config``);
- media and tables: under their keys (items of several writers under one key list together, by
  step); artifacts a secondary logged or used, and its traces (``@tracklet.op`` spans), are the run's;
- identity, state and exit code: the primary's (W&B's ``x_update_finish_state=False``, a
  secondary's default); each part's own state is listed in ``RecordedRun.parts``. A secondary
  started with ``update_finish_state`` (W&B's ``x_update_finish_state=True``) sets the run's
  state too, and a run whose primary never started takes its state from its parts
  (``run_state``): running while any of those writers runs, then crashed if one crashed, failed
  if one failed, else finished (a failure is never hidden by another writer's later exit). Such a
  run's name, tags, ... are its first part's (label order) until its primary starts.
"""

from __future__ import annotations

from typing import Any, Collection, Iterable, Mapping

from tracklet.core.layout import SETS_STATE_KEY, RunPaths
from tracklet.proto import records_pb2 as pb

SYSTEM_LABEL_SEPARATOR = "/l:"
PRIMARY = ""  # the owner of a key the primary logs


def merged_config(primary: Mapping[str, Any], parts: Mapping[str, Mapping[str, Any]]
                  ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The run's config: the primary's ``primary``, then each key it has not from the first label
    (in order) whose part's config (``parts[label]``) has it; and the keys each label gave."""
    config = dict(primary)
    given: dict[str, list[str]] = {}
    for label in sorted(parts):
        for key, value in parts[label].items():
            if key not in config:
                config[key] = value
                given.setdefault(label, []).append(key)
    return config, given


def sets_state(info: Mapping[str, Any]) -> bool:
    return bool(info.get("sets_state"))


def run_state(primary: tuple[str, int | None] | None, parts: Mapping[str, Mapping[str, Any]]
              ) -> tuple[str, int | None]:
    """A shared run's state and exit code from its state writers: the primary (``(state,
    exit_code)``, None when it never started) and the parts that set the run's state
    (``sets_state``), or every part when the primary never started and none does: running while
    any of them runs, then crashed if one crashed, failed if one failed (the primary's exit code,
    else the first such label's), else finished."""
    writers = [primary] if primary is not None else []
    chosen = [label for label in sorted(parts) if sets_state(parts[label])]
    if primary is None and not chosen:
        chosen = sorted(parts)
    writers += [(str(parts[label].get("state") or ""), parts[label].get("exit_code")) for label in chosen]
    states = [state for state, _ in writers if state in ("running", "finished", "failed", "crashed")]
    if not states or ("crashed" in states and "running" not in states):
        return "crashed", None
    if "running" in states:
        return "running", None
    failed = [code for state, code in writers if state == "failed"]
    if failed:
        return "failed", failed[0]
    return "finished", 0


def labelled(label: str, name: str) -> str:
    """Writer ``label``'s copy of a name another writer owns (a history key), or of a system
    metric: ``<name>/l:<label>``."""
    return f"{name}{SYSTEM_LABEL_SEPARATOR}{label}"


system_key = labelled


def owner(key: str, primary: Collection[str], parts: Mapping[str, Collection[str]]) -> str | None:
    """Who owns history key ``key``: ``PRIMARY`` if the primary logs it, else the first label (in
    order) whose part logs it; None when no writer does."""
    if key in primary:
        return PRIMARY
    return min((label for label, keys in parts.items() if key in keys), default=None)


def part_key(label: str, key: str, primary: Collection[str], parts: Mapping[str, Collection[str]]) -> str:
    """The run's name for history key ``key`` logged by secondary writer ``label``."""
    return key if owner(key, primary, parts) in (label, None) else labelled(label, key)


def summary_claim(writer: str, logs: bool, has_value: bool) -> tuple[int, str] | None:
    """How writer ``writer`` (``PRIMARY`` or a label) claims a summary key, the lowest claim owning
    it (``summary_owner``): the primary (``(0, "")``) if it logs the key or its summary has it; a
    secondary that logs it as a history key (``(1, label)``); a secondary whose summary has it
    (``(2, label)``); None: no claim. The one rule the log reader and the store apply, also to
    a removal (``del run.summary[key]``): it takes the writer's own value away, so a writer that
    logs the key keeps its claim (the key then shows no value; the others' stay labelled), one
    that only had it in its summary gives it up (the next claim's value shows as the key)."""
    if writer == PRIMARY:
        return (0, PRIMARY) if logs or has_value else None
    if logs:
        return (1, writer)
    return (2, writer) if has_value else None


def first_claim(claims: Iterable[tuple[int, str] | None]) -> str | None:
    """The writer whose claim (``summary_claim``) ranks first, None when there is none."""
    best = min((claim for claim in claims if claim is not None), default=None)
    return None if best is None else best[1]


def summary_owner(key: str, primary: Collection[str], primary_summary: Collection[str],
                  parts: Mapping[str, Collection[str]], part_summaries: Mapping[str, Collection[str]]) -> str | None:
    """Whose value summary key ``key`` is in the run (the others' are ``<key>/l:<label>``), by
    ``summary_claim``: ``PRIMARY`` if the primary logs it or its summary has it; else the owner of
    history key ``key`` (the first label whose part logs it, with a value or not); else the first
    label whose part's summary has it; None when no writer has it. Writers: the primary's history
    keys ``primary`` and summary keys ``primary_summary`` (removed keys absent), each part's history
    keys ``parts`` and summary keys ``part_summaries``."""
    # (first_claim of every writer's summary_claim, without a claim made per writer: the reader asks
    # this of every part's every summary key)
    if key in primary or key in primary_summary:
        return PRIMARY
    logged = owner(key, (), parts)
    if logged is not None:
        return logged
    return min((label for label, keys in part_summaries.items() if key in keys), default=None)


class Ownership:
    """Who owns each key of a shared run, by ``owner``, ``part_key`` and ``summary_owner``'s rule,
    from indexes built once (one pass over every writer's keys): a merge asks for every part's
    every key, where those functions, each a scan of every part, would cost parts² x keys.
    Writers as ``summary_owner`` takes them."""

    def __init__(self, primary: Collection[str], primary_summary: Collection[str],
                 parts: Mapping[str, Collection[str]], part_summaries: Mapping[str, Collection[str]]) -> None:
        self.primary = primary
        self.primary_summary = primary_summary
        self.first_logger = self._first_label(parts)  # key -> the first label whose part logs it
        self.first_setter = self._first_label(part_summaries)  # key -> the first whose summary has it

    @staticmethod
    def _first_label(keys_of: Mapping[str, Collection[str]]) -> dict[str, str]:
        first: dict[str, str] = {}
        for label in sorted(keys_of):
            for key in keys_of[label]:
                first.setdefault(key, label)
        return first

    def owner(self, key: str) -> str | None:
        """``owner`` of history key ``key``."""
        return PRIMARY if key in self.primary else self.first_logger.get(key)

    def part_key(self, label: str, key: str) -> str:
        """``part_key``: the run's name for history key ``key`` logged by secondary writer ``label``."""
        return key if self.owner(key) in (label, None) else labelled(label, key)

    def summary_owner(self, key: str) -> str | None:
        """``summary_owner`` of summary key ``key``."""
        if key in self.primary or key in self.primary_summary:
            return PRIMARY
        logged = self.first_logger.get(key)
        return logged if logged is not None else self.first_setter.get(key)


def console_text(label: str, text: str) -> str:
    """A console line of secondary writer ``label`` as the run shows it."""
    return f"[{label}] {text}"


def part_state_label(exit: Any, alive: bool | None) -> str:
    """``finished``/``failed`` from a part's exit record, else ``running`` or ``crashed``."""
    if exit is not None:
        return "finished" if exit.exit_code == 0 else "failed"
    return "running" if alive in (True, None) else "crashed"


def last_record_time(state: Any) -> float | None:
    """The last time one writer's log (a ``RunState``) recorded: its last session's start, its last
    history row or its exit, whichever is latest; None for a log without any."""
    times = [session.start_time for session in state.sessions[-1:]]
    last_rows = next((batch.times for batch in reversed(state.batches) if batch.times), None)
    if last_rows:
        times.append(last_rows[-1])
    if state.exit is not None:
        times.append(state.exit.end_time)
    return max(times, default=None)


def merge_parts(state: Any, paths: RunPaths) -> None:
    """Fold the parts of run ``paths`` into ``state`` (the primary's ``RunState``), by the rules
    above. A part that can't be read is named in ``state.parts`` and skipped."""
    from tracklet.core.reader import damage_summary, replay
    from tracklet.core.recordlog import writer_alive

    labels = paths.parts()
    if not labels:
        return
    read: dict[str, Any] = {}
    for label in labels:
        part_paths = paths.part_paths(label)
        try:
            part = read[label] = replay(part_paths.log_file)
        except OSError as error:
            state.parts[label] = {"state": "unreadable", "error": str(error.strerror or error)}
            continue
        start = part.start
        state.parts[label] = {
            "state": part_state_label(part.exit, writer_alive(part_paths.log_file) if part.exit is None else None),
            "exit_code": part.exit.exit_code if part.exit is not None else None,
            "host": start.host if start is not None else "",
            "pid": start.pid if start is not None else 0,
            "start_time": start.start_time if start is not None else None,
            "last_step": part.last_step,
        }
        damage = damage_summary(part, live=state.parts[label]["state"] == "running")
        if damage is not None:  # what of the part could not be read (the rest is merged)
            state.parts[label]["damage"] = damage
    state.merged_updated_at = max((found for found in [last_record_time(state), *map(last_record_time, read.values())]
                                   if found is not None), default=None)
    for label, part in read.items():
        if part.config.pop(SETS_STATE_KEY, None):
            state.parts[label]["sets_state"] = True
    if state.start is None:  # the primary never started: the run is its first part's, by label
        first = next((part for part in read.values() if part.start is not None), None)
        if first is not None:
            state.start, state.identity = first.start, dict(first.identity)
    primary_keys = set(state.key_names.values())
    part_keys = {label: set(part.key_names.values()) for label, part in read.items()}
    # who owns each key, indexed once: asking owner/summary_owner per key would scan every part each time
    owners = Ownership(primary_keys, set(state.summary), part_keys,
                       {label: set(part.summary) for label, part in read.items()})
    next_id = max(state.key_names, default=-1) + 1
    ids_by_name = {name: key_id for key_id, name in state.key_names.items()}
    console_before = len(state.console)
    stats_before = len(state.stats)
    for label, part in read.items():
        # history: the part's key ids become the run's, under the names the ownership rule gives
        remap: dict[int, int] = {}
        for key_id, name in part.key_names.items():
            merged = owners.part_key(label, name)
            if merged not in ids_by_name:
                ids_by_name[merged] = next_id
                state.key_names[next_id] = merged
                next_id += 1
            remap[key_id] = ids_by_name[merged]
        for batch in part.batches:
            copy = pb.HistoryBatch()
            copy.CopyFrom(batch)
            del copy.new_keys[:]
            for column in copy.columns:
                column.key = remap[column.key]
            state.batches.append(copy)
        for key, value in part.summary.items():  # (summary_owner: the same whatever order parts are read in)
            if owners.summary_owner(key) == label:
                state.part_summary[key] = value
            else:
                state.part_summary[labelled(label, key)] = value
        for key, value in part.config.items():
            state.config.setdefault(key, value)
        for line in part.console:
            line.text = console_text(label, line.text)
            state.console.append(line)
        for window in part.stats:
            renamed = pb.SystemStats()
            renamed.CopyFrom(window)
            for entry in renamed.values:
                entry.name = system_key(label, entry.name)
            state.stats.append(renamed)
        state.media.extend(part.media)  # media and tables under their keys: items list together
        state.tables.extend(part.tables)
        for span in part.spans:  # its traces are the run's (trace and span ids are random: no two writers share one)
            state._span_at.setdefault(span.trace_id + span.span_id, len(state.spans))
            state.spans.append(span)
        state.artifacts_used.extend(part.artifacts_used)  # the run's lineage: every writer's
        state.artifacts_logged.extend(part.artifacts_logged)
    if len(state.console) > console_before:
        state.console.sort(key=lambda line: line.time)  # stable: one writer's lines keep their order
    if len(state.stats) > stats_before:
        state.stats.sort(key=lambda window: window.time)


class MergedStepIndex:
    """``history.StepIndex`` for a shared run: every writer's rows at one step are one row, in
    step order (each writer's steps are its own ``log()`` calls'; they interleave across writers).
    A merged row's time is the latest of its rows'."""

    def __init__(self, batches: Any) -> None:
        import numpy as np

        per_batch = []
        for batch in batches:
            size = min(len(batch.steps), len(batch.times))
            per_batch.append((np.array(batch.steps[:size], dtype=np.int64),
                              np.array(batch.times[:size], dtype=np.float64)))
        all_steps = np.concatenate([s for s, _ in per_batch]) if per_batch else np.zeros(0, dtype=np.int64)
        all_times = np.concatenate([t for _, t in per_batch]) if per_batch else np.zeros(0, dtype=np.float64)
        self.steps = np.unique(all_steps)
        positions = np.searchsorted(self.steps, all_steps)
        self.times = np.full(len(self.steps), -np.inf, dtype=np.float64)
        np.maximum.at(self.times, positions, all_times)
        self.positions = []
        at = 0
        for steps, _ in per_batch:
            self.positions.append(positions[at : at + len(steps)])
            at += len(steps)
        self.batch_count = len(per_batch)

    def __len__(self) -> int:
        return len(self.steps)
