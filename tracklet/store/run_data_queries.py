"""Reading a run's console output, alerts and system metrics from the store (what a run page shows).

Console lines are read by their number (``seq``), so a page of a live run's new lines costs an
index range scan from ``after``, however long the run's output. System metrics are pyramid
series with the window end in milliseconds as their step, so a time window at B buckets reads
O(B) entries, like ``StoreQueries.history``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import sqlalchemy as sa

from tracklet.store.query import HistoryReader, SeriesHistory, StoreQueries, _as_history
from tracklet.store.run_data import SYSTEM_KIND, SYSTEM_MAX_KIND
from tracklet.store.schema import alerts, console_lines, series
from tracklet.store.text import store_text, stored_key

STREAMS = ("stdout", "stderr")
SYSTEM_STATS = {"mean": SYSTEM_KIND, "max": SYSTEM_MAX_KIND}
MAX_CONSOLE_PAGE = 100_000
_MS_LIMIT = float(2**62)


@dataclasses.dataclass
class StoredConsoleLine:
    """One console line: its number in the run (from 1), wall time, stream and text."""

    seq: int
    time: float
    stream: str
    text: str


@dataclasses.dataclass
class ConsolePage:
    """Lines of one console query. ``next_after``: pass it as ``after`` to get only what comes
    next (every line up to it was considered). ``last_seq``: the run's last stored line (0: none)."""

    lines: list[StoredConsoleLine]
    next_after: int
    last_seq: int


def _milliseconds(seconds: float | None, name: str, rounding: str) -> int | None:
    """Seconds as the integer milliseconds system series use as steps (``ceil`` for a window's
    start, ``floor`` for its end, so the window never takes in a point outside it)."""
    if seconds is None:
        return None
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be a finite number of seconds; got {seconds!r}")
    scaled = min(max(seconds * 1000.0, -_MS_LIMIT), _MS_LIMIT)
    return int(math.ceil(scaled) if rounding == "ceil" else math.floor(scaled))


@dataclasses.dataclass
class StoredAlert:
    """One alert: its number in the run (from 1), wall time, level (INFO, WARN, ERROR), title, text."""

    seq: int
    time: float
    level: str
    title: str
    text: str


MAX_ALERTS_PAGE = 10_000


class RunDataQueries(StoreQueries):
    """Console, alert and system-metric queries (``tracklet.store.Store`` has them)."""

    def alerts(self, run: str, *, after: int = 0, limit: int = 1000) -> list[StoredAlert]:
        """Alerts of ``run`` (``project/run_id``) numbered above ``after``, oldest first, at most
        ``limit``; a live run's new alerts are those above the last ``seq`` seen."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_ALERTS_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_ALERTS_PAGE}; got {limit!r}")
        if after < 0:
            raise ValueError(f"after must be 0 or an alert number; got {after!r}")
        a = alerts.c
        with self.engine.connect() as connection:
            (pk, _), = self._run_pks(connection, [run]).values()
            rows = connection.execute(
                sa.select(a.seq, a.time, a.level, a.title, a.text).where(a.run_pk == pk, a.seq > after)
                .order_by(a.seq).limit(limit)
            ).all()
        return [StoredAlert(row.seq, row.time, row.level, row.title, row.text) for row in rows]

    def console(
        self,
        run: str,
        *,
        after: int = 0,
        before: int | None = None,
        limit: int = 1000,
        search: str | None = None,
        stream: str | None = None,
        tail: bool = False,
    ) -> ConsolePage:
        """Console lines of ``run`` (``project/run_id``) numbered above ``after`` (and below
        ``before``), oldest first: the first ``limit`` of them, or with ``tail`` the last ``limit``.

        ``search`` keeps lines containing it, ignoring case (ASCII letters everywhere; PostgreSQL
        also folds others as its locale says); ``%``, ``_`` and ``/`` in it are plain characters.
        ``stream`` is ``stdout`` or ``stderr``. A live run is followed by passing the page's
        ``next_after`` as ``after`` next time: only newer lines are read."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_CONSOLE_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_CONSOLE_PAGE}; got {limit!r}")
        if after < 0:
            raise ValueError(f"after must be 0 or a line number; got {after!r}")
        if stream is not None and stream not in STREAMS:
            raise ValueError(f"stream must be stdout or stderr; got {stream!r}")
        c = console_lines.c
        with self.engine.connect() as connection:
            (pk, _), = self._run_pks(connection, [run]).values()
            last = connection.execute(sa.select(sa.func.max(c.seq)).where(c.run_pk == pk)).scalar() or 0
            # Lines stored after `last` was read are left for the next page, so `next_after` is exact.
            upto = last if before is None else min(last, before - 1)
            conditions = [c.run_pk == pk, c.seq > after, c.seq <= upto]
            if stream is not None:
                conditions.append(c.stream == stream)
            if search:
                conditions.append(c.text.icontains(store_text(search), autoescape=True))
            stmt = sa.select(c.seq, c.time, c.stream, c.text).where(*conditions)
            stmt = stmt.order_by(c.seq.desc() if tail else c.seq).limit(limit)
            rows = connection.execute(stmt).all()
        if tail:
            rows = rows[::-1]
        lines = [StoredConsoleLine(row.seq, row.time, row.stream, row.text) for row in rows]
        full = len(lines) == limit and not tail
        next_after = lines[-1].seq if full else max(after, upto)
        return ConsolePage(lines=lines, next_after=next_after, last_seq=last)

    def system_names(self, run: str) -> list[str]:
        """The system metrics ``run`` recorded (docs/system-metrics.md), sorted."""
        with self.engine.connect() as connection:
            (pk, _), = self._run_pks(connection, [run]).values()
            return list(connection.execute(
                sa.select(series.c.key).where(series.c.run_pk == pk, series.c.kind == SYSTEM_KIND)
                .order_by(series.c.key)
            ).scalars())

    def system_history(
        self,
        run: str,
        names: Sequence[str] | str | None = None,
        *,
        x: str = "time",
        start: float | None = None,
        end: float | None = None,
        buckets: int | None = 1000,
        stats: Sequence[str] = ("mean", "max"),
    ) -> list[SeriesHistory]:
        """System metrics of ``run`` over the window [``start``, ``end``] (whole run by default):
        per name (all the run has when None) and per stat in ``stats``, one ``SeriesHistory``
        whose ``stat`` is ``mean`` (the windows' means) or ``max`` (their maxima).

        ``x`` is ``time`` (seconds since the epoch) or ``relative_time`` (seconds since the run
        started): the unit of ``start``, ``end`` and the results' ``x``, which is each window's
        end (a bucket's: its last window's). ``steps`` hold window ends in integer milliseconds
        since the epoch. Buckets work as in ``history``: min/max/last/count per bucket, or the
        exact windows when there are no more than ``buckets``; in the ``max`` series a bucket's
        ``max`` is the highest sample of any of its windows, so a one-sample spike stays visible
        at any zoom."""
        if x not in ("time", "relative_time"):
            raise ValueError(f"x must be time or relative_time for system metrics; got {x!r}")
        if buckets is not None and (not isinstance(buckets, int) or buckets < 1):
            raise ValueError(f"buckets must be a positive number or None; got {buckets!r}")
        unknown = [stat for stat in stats if stat not in SYSTEM_STATS]
        if unknown or not stats:
            raise ValueError(f"stats must be mean and/or max; got {list(stats)!r}")
        wanted = None if names is None else [stored_key(n) for n in ([names] if isinstance(names, str) else names)]
        results: list[SeriesHistory] = []
        with self.engine.connect() as connection:
            (pk, created), = self._run_pks(connection, [run]).values()
            offset = (created or 0.0) if x == "relative_time" else 0.0
            low = _milliseconds(None if start is None else start + offset, "start", "ceil")
            high = _milliseconds(None if end is None else end + offset, "end", "floor")
            reader = HistoryReader(connection)
            by_stat: dict[str, dict[str, Any]] = {}
            for stat in stats:
                if wanted is None:
                    rows = connection.execute(
                        sa.select(series).where(series.c.run_pk == pk, series.c.kind == SYSTEM_STATS[stat])
                    ).all()
                else:
                    rows = reader.series_rows([pk], wanted, kind=SYSTEM_STATS[stat])
                by_stat[stat] = {row.key: row for row in rows}
            order = wanted if wanted is not None else sorted(by_stat[stats[0]])
            for name in order:
                for stat in stats:
                    row = by_stat[stat].get(name)
                    if row is None:
                        continue
                    exact, data = reader.read(row, low, high, buckets)
                    result = _as_history(run, name, exact, data)
                    result.x = result.steps / 1000.0 - offset
                    result.stat = stat
                    results.append(result)
        return results

