"""Reading the store: runs with filters and sorts, and metric histories at a chosen resolution.

A history query for B buckets over a window reads the coarsest pyramid level that still has at
least B entries in the window, so its cost follows B, not the number of points; a window with
no more points than buckets returns the exact points instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Sequence

import numpy as np
import sqlalchemy as sa

from tracklet.store import blocks as B
from tracklet.store.ingest import TIMESTAMP_KEY
from tracklet.store.schema import blocks, projects, runs, series
from tracklet.store.text import store_text, stored_key
from tracklet.store.windows import WindowReader, WindowRequest
from tracklet.errors import RunNotIndexed  # noqa: F401  (defined there; imported from here too)


@dataclasses.dataclass
class SeriesHistory:
    """One run's one key over the window.

    Exact (``exact`` is True): ``x``, ``steps`` and ``values`` (float64: what charts draw) per
    point, and ``logged``, how each was logged where some value was an int or a bool (None: all
    floats; ``as_logged()`` gives the values so, ints exact past 2**53). Bucketed: per bucket,
    ``x`` and ``steps`` at the bucket's last point, ``min``/``max`` over its finite values (NaN
    when it has none), ``last``, ``count`` (points) and ``nonfinite`` (NaN/inf points).
    ``stat`` is None for a metric; for a system metric, ``"mean"`` or ``"max"`` says which of the
    window's statistics the points are (``StoreQueries.system_history``).
    """

    run: str
    key: str
    exact: bool
    x: np.ndarray
    steps: np.ndarray
    values: np.ndarray | None = None
    first_steps: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    last: np.ndarray | None = None
    count: np.ndarray | None = None
    nonfinite: np.ndarray | None = None
    stat: str | None = None
    logged: B.Logged | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def as_logged(self) -> list[Any]:
        """The exact values as they were logged: an int for an int (exact, past 2**53 too), a
        bool for a bool, a float for a float (and for an int outside int64). Points an older
        tracklet indexed give floats (``tracklet index --rebuild``: their ints). A bucketed series
        has no values: ValueError."""
        if not self.exact or self.values is None:
            raise ValueError("a bucketed series has no values as logged (read it with buckets=None)")
        return B.as_logged(np.asarray(self.values), self.logged)

    def as_json(self, by_step: bool) -> dict[str, Any]:
        """The series as ``GET /projects/{p}/history`` answers it: the run id, strict-JSON floats,
        ``steps`` only when x isn't the step, exact ``values`` or per-bucket min/max/last."""
        from tracklet.core.jsonsafe import json_floats

        data: dict[str, Any] = {"run": self.run.split("/", 1)[1], "key": self.key, "exact": self.exact,
                                "x": json_floats(np.asarray(self.x))}
        if not by_step:
            data["steps"] = np.asarray(self.steps).tolist()
        if self.exact:
            data.update(logged_json(np.asarray(self.values), self.logged))
        else:
            for name in ("min", "max", "last"):
                data[name] = json_floats(np.asarray(getattr(self, name)))
        return data


def logged_json(values: np.ndarray, logged: B.Logged | None) -> dict[str, Any]:
    """Exact values as a history route answers them: ``values`` strict-JSON numbers, an int logged
    as an int as a JSON integer (exact past 2**53 too, for clients that parse them so), a bool as
    1 or 0 (charts read numbers) named in ``bools`` (the indices of the values logged as bools; left
    out when none is)."""
    from tracklet.core.jsonsafe import json_floats

    if logged is None:
        return {"values": json_floats(values)}
    exact = logged.kinds != B.FLOAT
    if exact.all():
        found = logged.ints.tolist()
    else:
        found = json_floats(values)
        at = np.flatnonzero(exact)
        for index, value in zip(at.tolist(), logged.ints[at].tolist()):
            found[index] = value
    bools = np.flatnonzero(logged.kinds == B.BOOL).tolist()
    return {"values": found, "bools": bools} if bools else {"values": found}


class HistoryReader:
    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.windows = WindowReader(connection)

    def series_rows(self, run_pks: Sequence[int], keys: Sequence[str], kind: str = "number") -> list[Any]:
        """Series of ``kind`` (a run's metrics by default; ``system``/``system_max``: its system
        metrics) for these runs and keys."""
        return list(self.connection.execute(
            sa.select(series).where(series.c.run_pk.in_(list(run_pks)), series.c.kind == kind,
                                    series.c.key.in_(list(keys)))
        ))

    def read(self, row: Any, start: int | None, end: int | None, buckets: int | None) -> tuple[bool, Any]:
        """(exact, (steps, values)) or (bucketed, merged entries) for one series row."""
        (answer,) = self.windows.read([WindowRequest(row, start, end)], buckets)
        return answer

    def read_many(self, requests: Sequence[WindowRequest], buckets: int | None, *,
                  logged: bool = False) -> list[tuple[bool, Any]]:
        """``read`` for many series at once, in a few statements (store/windows.py); ``logged``:
        exact points with how they were logged (``WindowReader.read``)."""
        return self.windows.read(requests, buckets, logged=logged)


STEP_LIMIT = 2**62  # beyond any step; keeps window bounds inside the databases' 64-bit integers
MERGED_TIME_POINTS = 65536  # a shared run's time axis: the points read of all its writers' times together


def _clamp_step(value: float) -> int:
    return int(min(max(value, -STEP_LIMIT), STEP_LIMIT))


def _as_history(run: str, key: str, exact: bool, data: Any) -> SeriesHistory:
    if exact:
        steps, values, *rest = data
        return SeriesHistory(run, key, True, steps.astype(np.float64), steps, values=values,
                             logged=rest[0] if rest else None)
    return SeriesHistory(
        run, key, False, data["last_step"].astype(np.float64), data["last_step"].copy(),
        first_steps=data["first_step"].copy(), min=data["min"].copy(), max=data["max"].copy(),
        last=data["last"].copy(), count=data["count"].astype(np.int64), nonfinite=data["nonfinite"].astype(np.int64),
    )


class StoreQueries:
    """The query side of a store (``tracklet.store.Store`` mixes it in)."""

    engine: sa.Engine

    def _run_pks(self, connection: sa.Connection, paths: Sequence[str]) -> dict[str, tuple[int, float | None]]:
        """Store keys of runs given as ``project/run_id``, in the order given; one query."""
        wanted = [tuple(store_text(p).split("/", 1)) for p in paths]
        if any(len(pair) != 2 for pair in wanted):
            raise ValueError(f"runs are given as project/run_id; got {paths!r}")
        rows = connection.execute(
            sa.select(projects.c.name, runs.c.run_id, runs.c.id, runs.c.created_at)
            .join(projects, projects.c.id == runs.c.project_id)
            .where(runs.c.run_id.in_({run_id for _, run_id in wanted}),
                   projects.c.name.in_({project for project, _ in wanted}), runs.c.deleted.is_(False))
        )
        known = {(row.name, row.run_id): (row.id, row.created_at) for row in rows}
        found: dict[str, tuple[int, float | None]] = {}
        for project, run_id in wanted:
            if (project, run_id) not in known:
                raise RunNotIndexed(f"run {project}/{run_id} is not in the store (run `tracklet index`)")
            found[f"{project}/{run_id}"] = known[(project, run_id)]
        return found

    def history(
        self,
        runs_: Sequence[str] | str,
        keys: Sequence[str] | str,
        *,
        x: str = "step",
        start: float | None = None,
        end: float | None = None,
        buckets: int | None = 1000,
    ) -> list[SeriesHistory]:
        """Histories of ``keys`` for each run (``project/run_id``) over the window [``start``,
        ``end``] (whole series by default): ``buckets`` buckets of min/max/last/count, or the
        exact points when the window holds no more points than buckets, or all points with
        ``buckets=None``.

        ``x`` says what ``SeriesHistory.x`` holds and what unit ``start``/``end`` are in:
        ``step``; ``time`` (epoch seconds) or ``relative_time`` (seconds since the run started),
        through the run's timestamps; or the name of another metric (``epoch``, ``tokens``), which
        should grow with the step: its value at each point's step, interpolated between the
        steps it was logged at. Buckets are always equal step ranges."""
        if buckets is not None and buckets < 1:
            raise ValueError(f"buckets must be a positive number or None; got {buckets!r}")
        if not isinstance(x, str) or not x:
            raise ValueError(f"x must be step, time, relative_time or a metric name; got {x!r}")
        axis_key = None if x == "step" else TIMESTAMP_KEY if x in ("time", "relative_time") else stored_key(x)
        paths = [runs_] if isinstance(runs_, str) else list(runs_)
        names = [stored_key(key) for key in ([keys] if isinstance(keys, str) else keys)]  # as stored: text.py
        results: list[SeriesHistory] = []
        with self.engine.connect() as connection:
            pks = self._run_pks(connection, paths)
            reader = HistoryReader(connection)
            wanted = names + ([axis_key] if axis_key else [])
            rows = {(r.run_pk, r.key): r for r in reader.series_rows([pk for pk, _ in pks.values()], wanted)}
            axes = {pk: rows.get((pk, axis_key)) for pk, _ in pks.values()} if axis_key else {}
            curves = self._curves(reader, {pk: row for pk, row in axes.items() if row is not None})
            if axis_key == TIMESTAMP_KEY:  # a shared run's row at a step: the latest time of any writer's there
                curves.update(self._writers_times(reader, [pk for pk, _ in pks.values()], curves))
            requests: list[WindowRequest] = []
            owners: list[tuple[str, str, tuple[np.ndarray, np.ndarray] | None, float]] = []
            for path, (pk, created) in pks.items():
                curve = curves.get(pk)
                offset = (created or 0.0) if x == "relative_time" else 0.0
                step_start, step_end = self._step_window(curve, offset, start, end, by_step=axis_key is None)
                for key in names:
                    row = rows.get((pk, key))
                    if row is not None:
                        requests.append(WindowRequest(row, step_start, step_end))
                        owners.append((path, key, curve, offset))
            for (path, key, curve, offset), (exact, data) in zip(owners, reader.read_many(requests, buckets, logged=True)):
                result = _as_history(path, key, exact, data)
                if axis_key is not None:
                    result.x = (np.interp(result.steps, *curve) - offset if curve is not None
                                else np.full(len(result.steps), np.nan))
                results.append(result)
        return results

    @staticmethod
    def _curves(reader: HistoryReader, axes: dict[int, Any]) -> dict[int, tuple[np.ndarray, np.ndarray] | None]:
        """Per run, (steps, axis values) at up to 4096 points: enough to map steps to the axis and
        back by interpolation without reading every row. NaN values (no finite point in a bucket)
        are left out; None when none is left."""
        answers = reader.read_many([WindowRequest(row, None, None) for row in axes.values()], 4096)
        curves: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        for pk, (exact, data) in zip(axes, answers):
            steps, values = data if exact else (data["last_step"], data["last"])
            keep = np.isfinite(values)
            curves[pk] = (steps[keep].astype(np.float64), values[keep]) if keep.any() else None
        return curves

    def _writers_times(self, reader: HistoryReader, run_pks: list[int],
                       curves: dict[int, tuple[np.ndarray, np.ndarray] | None]
                       ) -> dict[int, tuple[np.ndarray, np.ndarray] | None]:
        """The time curves of the shared runs among ``run_pks``: each step's latest time of any
        writer's row there (``core/parts.MergedStepIndex``'s rule; the parts' row times are the
        series ``_timestamp/l:<label>``), merged with the primary's (``curves``). At most
        ``MERGED_TIME_POINTS`` points read per run, however many parts it has."""
        parts = list(reader.connection.execute(sa.select(series).where(
            series.c.run_pk.in_(run_pks), series.c.kind == "number",
            series.c.key.startswith(TIMESTAMP_KEY + "/l:", autoescape=True))))
        by_run: dict[int, list[Any]] = {}
        for row in parts:
            by_run.setdefault(row.run_pk, []).append(row)
        merged: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        for pk, rows in by_run.items():
            per_series = max(16, MERGED_TIME_POINTS // (len(rows) + 1))
            answers = reader.read_many([WindowRequest(row, None, None) for row in rows], per_series)
            primary = curves.get(pk)
            pieces: list[tuple[np.ndarray, np.ndarray]] = [primary] if primary is not None else []
            for exact, data in answers:
                steps, values = data if exact else (data["last_step"], data["last"])
                keep = np.isfinite(values)
                pieces.append((steps[keep].astype(np.float64), values[keep]))
            steps = np.concatenate([piece[0] for piece in pieces]) if pieces else np.empty(0)
            if not len(steps):
                merged[pk] = curves.get(pk)
                continue
            values = np.concatenate([piece[1] for piece in pieces]).astype(np.float64)
            order = np.lexsort((-values, steps))  # by step, the latest time first
            steps, values = steps[order], values[order]
            first = np.ones(len(steps), dtype=bool)
            first[1:] = steps[1:] != steps[:-1]
            merged[pk] = (steps[first], values[first])
        return merged

    @staticmethod
    def _step_window(curve: tuple[np.ndarray, np.ndarray] | None, offset: float, start: float | None,
                     end: float | None, *, by_step: bool) -> tuple[int | None, int | None]:
        for name, value in (("start", start), ("end", end)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number; got {value!r}")
        if by_step or curve is None or (start is None and end is None):
            low = None if start is None else _clamp_step(np.ceil(start))
            return low, None if end is None else _clamp_step(np.floor(end))
        steps, values = curve
        # A window wholly after (before) the run's times holds no step: one past the last (first).
        low = None if start is None else _clamp_step(np.floor(np.interp(start + offset, values, steps,
                                                                         right=steps[-1] + 1)))
        high = None if end is None else _clamp_step(np.ceil(np.interp(end + offset, values, steps,
                                                                       left=steps[0] - 1)))
        return low, high

    def history_pages(self, run: str, key: str, *, start: int | None = None, end: int | None = None,
                      page_size: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every point of one series, in pages of about ``page_size`` points (full fidelity
        without holding a long series in memory)."""
        with self.engine.connect() as connection:
            (pk, _), = self._run_pks(connection, [run]).values()
            reader = HistoryReader(connection)
            (row,) = reader.series_rows([pk], [stored_key(key)]) or [None]
            if row is None or row.count == 0:
                return
            low = row.first_step if start is None else start
            high = row.last_step if end is None else end
            stmt = (
                sa.select(blocks.c.data).where(blocks.c.series_id == row.id, blocks.c.level == 0,
                                                blocks.c.last_step >= low, blocks.c.first_step <= high)
                .order_by(blocks.c.seq)
            )
            pending_steps: list[np.ndarray] = []
            pending_values: list[np.ndarray] = []
            pending = 0
            for block in connection.execute(stmt):
                steps, values = B.decode_points(block.data)
                inside = (steps >= low) & (steps <= high)
                pending_steps.append(steps[inside])
                pending_values.append(values[inside])
                pending += int(inside.sum())
                if pending >= page_size:
                    yield np.concatenate(pending_steps), np.concatenate(pending_values)
                    pending_steps, pending_values, pending = [], [], 0
            if pending:
                yield np.concatenate(pending_steps), np.concatenate(pending_values)
