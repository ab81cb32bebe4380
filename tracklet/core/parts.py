"""A shared run's parts: what secondary writers recorded, merged into the run as readers show it.

A run written by several processes (distributed training: W&B's shared mode) has the primary's
record log ``run.tlog`` and one log per secondary writer, ``parts/<label>.tlog`` (same format, its
own writer lock), so no two processes ever write one file. Readers (``core/api.py``'s
``RecordedRun``) and the store (``store/ingest.py``) apply the same rules, in docs/shared-runs.md:

- history and summary: a secondary's key ``k`` is the run's key ``<label>/k`` (``rank_1/loss``);
  its rows merge with the primary's by step, as rows at one step always do. No key is written
  by two processes, so nothing is overwritten and each rank's curve stays whole;
- system metrics: a secondary's metric ``m`` is ``m/l:<label>`` (``gpu.0.gpu/l:rank_1``, W&B's
  per-label form), so each node's GPUs show beside the primary's;
- console: a secondary's lines read ``[<label>] text``, in time order with the primary's;
- config: a secondary's keys are added where the primary's config has no such key (the
  primary's value wins);
- media and tables: under ``<label>/key`` too; artifacts a secondary logged or used are the run's;
- identity, state and exit code: the primary's only (W&B's ``x_update_finish_state=False``);
  each part's own state is listed in ``RecordedRun.parts``.
"""

from __future__ import annotations

from typing import Any

from tracklet.core.layout import RunPaths
from tracklet.proto import records_pb2 as pb

SYSTEM_LABEL_SEPARATOR = "/l:"


def history_key(label: str, key: str) -> str:
    """The run's name for key ``key`` logged by secondary writer ``label``."""
    return f"{label}/{key}"


def system_key(label: str, name: str) -> str:
    """The run's name for system metric ``name`` sampled by secondary writer ``label``."""
    return f"{name}{SYSTEM_LABEL_SEPARATOR}{label}"


def console_text(label: str, text: str) -> str:
    """A console line of secondary writer ``label`` as the run shows it."""
    return f"[{label}] {text}"


def part_state_label(exit: Any, alive: bool | None) -> str:
    """``finished``/``failed`` from a part's exit record, else ``running`` or ``crashed``."""
    if exit is not None:
        return "finished" if exit.exit_code == 0 else "failed"
    return "running" if alive in (True, None) else "crashed"


def merge_parts(state: Any, paths: RunPaths) -> None:
    """Fold the parts of run ``paths`` into ``state`` (the primary's ``RunState``), by the rules
    above. A part that can't be read is named in ``state.parts`` and skipped."""
    from tracklet.core.reader import damage_summary, replay
    from tracklet.core.recordlog import writer_alive

    labels = paths.parts()
    if not labels:
        return
    next_id = max(state.key_names, default=-1) + 1
    ids_by_name = {name: key_id for key_id, name in state.key_names.items()}
    console_before = len(state.console)
    stats_before = len(state.stats)
    for label in labels:
        part_paths = paths.part_paths(label)
        try:
            part = replay(part_paths.log_file)
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
        # history: the part's key ids become the run's, under the label's prefix
        remap: dict[int, int] = {}
        for key_id, name in part.key_names.items():
            merged = history_key(label, name)
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
        state.part_summary.update((history_key(label, key), value) for key, value in part.summary.items())
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
        for message in part.media:  # media and tables: under the label's prefix, like history keys
            media = pb.MediaLogged()
            media.CopyFrom(message)
            media.key = history_key(label, message.key)
            state.media.append(media)
        for logged in part.tables:
            table = pb.TableLogged()
            table.CopyFrom(logged)
            table.key = history_key(label, logged.key)
            state.tables.append(table)
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
