"""A panel's run set, resolved against a store (a data root's, or a server's: the same ``Store``):
which runs it shows and their bucketed history.

Live (no ``frozen``): the project's runs matching ``filter``, in ``sort`` order (newest first by
default), at most ``limit``: the runs list's query (``Store.runs``). Frozen: exactly the pinned
run ids (those still there, in the pinned order), and only their points at steps up to
``max_step``, so runs logged since, or steps logged since, change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracklet.errors import ReportError, RunNotIndexed

# heartbeat_at and updated_at: the store moves them whenever it ingests more of a run (cache.run_stamp).
_FIELDS = ("run_id", "name", "group_name", "config", "summary", "last_step", "state", "heartbeat_at", "updated_at")
_ARRAYS = ("x", "steps", "values", "first_steps", "min", "max", "last", "count", "nonfinite")


def panel_project(runs: dict[str, Any], report_project: str) -> str:
    """The project a panel's runs come from: its own ``runs.project``, else the report's."""
    return runs.get("project") or report_project


def select_runs(store: Any, runs: dict[str, Any], report_project: str) -> list[dict[str, Any]]:
    """The store rows of the runs the run set names now (``ReportError`` for a filter or sort
    the store refuses)."""
    project = panel_project(runs, report_project)
    frozen = runs.get("frozen")
    try:
        if frozen:
            pinned = list(frozen.get("run_ids") or [])
            if not pinned:
                return []
            rows = {row["run_id"]: row for row in store.runs(project, fields=_FIELDS, run_ids=pinned)}
            return [rows[run_id] for run_id in pinned if run_id in rows]
        return store.runs(project, filter=runs.get("filter") or None, order_by=runs.get("sort") or None,
                          limit=int(runs.get("limit") or 10), fields=_FIELDS)
    except ValueError as problem:  # a filter or sort the store can't compile (FilterSyntaxError)
        raise ReportError(f"the run set's query failed: {problem}") from None


def freeze_pins(store: Any, runs: dict[str, Any], report_project: str) -> tuple[list[str], int | None]:
    """(run ids, max step) that freezing ``runs`` pins: the runs it matches now and the highest
    step any of them logged (None if none logged a step)."""
    rows = select_runs(store, runs, report_project)
    steps = [row["last_step"] for row in rows if row.get("last_step") is not None]
    return [row["run_id"] for row in rows], (max(steps) if steps else None)


def group_value(row: dict[str, Any], group: str | None) -> Any:
    """The value a run has for the run set's ``group`` (``config.model``, ``summary.x``, a run
    field such as ``group`` or ``job_type``); None when it has none."""
    if not group:
        return None
    head, _, rest = group.partition(".")
    if head in ("config", "summary") and rest:
        value = (row.get(head) or {}).get(rest)
        return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
    return row.get("group_name" if group == "group" else group)


def run_entries(rows: list[dict[str, Any]], project: str, group: str | None) -> list[dict[str, Any]]:
    """What the panel data route answers per run: id, name, project (and group, if grouped)."""
    entries = []
    for row in rows:
        entry = {"id": row["run_id"], "name": row.get("name") or row["run_id"], "project": project}
        if group:
            entry["group"] = group_value(row, group)
        entries.append(entry)
    return entries


def clip(history: Any, max_step: int) -> Any:
    """``history`` (a ``SeriesHistory``) without its points past ``max_step``."""
    keep = np.asarray(history.steps) <= max_step
    if keep.all():
        return history
    for name in _ARRAYS:
        value = getattr(history, name, None)
        if value is not None:
            setattr(history, name, np.asarray(value)[keep])
    return history


def panel_history(store: Any, project: str, run_ids: list[str], keys: list[str], *, x: str = "step",
                  max_step: int | None = None, start: float | None = None, end: float | None = None,
                  buckets: int | None = 1000) -> list[Any]:
    """``Store.history`` of ``keys`` for the runs (``SeriesHistory`` per run and key with points),
    up to ``max_step`` when frozen: on the step axis the window ends there (buckets stay as fine),
    on another axis the points past it are dropped. Runs not in the store are left out."""
    if not run_ids or not keys:
        return []
    if max_step is not None and x == "step":
        end = max_step if end is None else min(end, max_step)
    paths = [f"{project}/{run_id}" for run_id in run_ids]
    try:
        histories = store.history(paths, keys, x=x, start=start, end=end, buckets=buckets)
    except RunNotIndexed:  # a pinned run deleted since: show the others
        known = {row["run_id"] for row in store.runs(project, fields=("run_id",), run_ids=run_ids)}
        paths = [f"{project}/{run_id}" for run_id in run_ids if run_id in known]
        histories = store.history(paths, keys, x=x, start=start, end=end, buckets=buckets) if paths else []
    if max_step is not None and x != "step":
        histories = [clip(history, max_step) for history in histories]
    return [history for history in histories if len(history)]


def compact(history: Any, by_step: bool) -> dict[str, Any]:
    """One series as ``GET /projects/{p}/history`` answers it, for answers made without a server."""
    return history.as_json(by_step)


def answer(access: str, error: str | None, runs: list[dict[str, Any]] | None = None,
           series: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"access": access, "error": error, "runs": runs or [], "history": {"series": series or []}}


@dataclass
class ResolvedPanel:
    """A panel whose runs are known: what its history is drawn for."""

    project: str
    rows: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    max_step: int | None


def resolve_panel(store: Any, panel: Any, report_project: str, may_read: Callable[[str], bool], *,
                  memo: dict[str, Any] | None = None) -> dict[str, Any] | ResolvedPanel:
    """The panel's final answer when it draws nothing (``access: "denied"``, its spec's error, a
    query error, no matching runs), else its runs (``ResolvedPanel``). ``memo`` (a dict kept for
    one request) resolves each distinct run set once: a report's panels often share one."""
    project = panel_project(panel.runs, report_project) if panel.runs else report_project
    if not may_read(project):
        return answer("denied", f"no access to project {project!r}")
    if panel.error is not None:
        return answer("ok", panel.error)
    key = json.dumps([project, panel.runs], sort_keys=True, default=str)
    try:
        rows = memo[key] if memo is not None and key in memo else select_runs(store, panel.runs, report_project)
    except ReportError as error:
        return answer("ok", str(error))
    if memo is not None:
        memo[key] = rows
    frozen = panel.runs.get("frozen") or {}
    if not rows:
        return answer("ok", "none of the frozen runs is there any more" if frozen
                      else f"the run set matches no runs in project {project!r}")
    return ResolvedPanel(project, rows, run_entries(rows, project, panel.runs.get("group")), frozen.get("max_step"))


def resolved_data(store: Any, panel: Any, resolved: ResolvedPanel, *, start: float | None = None,
                  end: float | None = None, buckets: int | None = 1000,
                  series_json: Callable[[Any, bool], dict[str, Any]] = compact) -> dict[str, Any]:
    """The answer of a panel whose runs are resolved: the runs and their history (or why not)."""
    x = panel.spec.get("x", "step")
    try:
        histories = panel_history(store, resolved.project, [row["run_id"] for row in resolved.rows],
                                  panel.spec["keys"], x=x, max_step=resolved.max_step, start=start, end=end,
                                  buckets=buckets)
    except (ValueError, RunNotIndexed) as error:
        return answer("ok", f"the history query failed: {error}", resolved.entries)
    return answer("ok", None, resolved.entries, [series_json(history, x == "step") for history in histories])


def panel_data(store: Any, panel: Any, report_project: str, may_read: Callable[[str], bool], *,
               start: float | None = None, end: float | None = None, buckets: int | None = 1000,
               series_json: Callable[[Any, bool], dict[str, Any]] = compact) -> dict[str, Any]:
    """What a panel (a ``document.PanelBlock``) draws: ``{access, error, runs, history}``.

    ``access`` is "denied" when ``may_read(project)`` says the viewer may not read the panel's
    project (nothing else is said); ``error`` is the panel's spec error, a failed query, or that
    the run set matches no runs. Never raises for the panel's content: one panel's trouble is its
    own, and the rest of the report draws."""
    resolved = resolve_panel(store, panel, report_project, may_read)
    if not isinstance(resolved, ResolvedPanel):
        return resolved
    return resolved_data(store, panel, resolved, start=start, end=end, buckets=buckets, series_json=series_json)
