"""Read API for histograms logged over steps (``tracklet.Histogram``, and W&B's ``wandb.Histogram``
through the compat layer): the keys that hold them, and one key's histograms over steps put on
common bins, for the dashboard's histogram-over-steps panel (a heat strip per step).

Histograms stay in the record log (the store indexes numbers only), so a run's logs are folded
here (``log_fold.LogFolds``: a live run's logs are read on from where the last request stopped; a
shared run's parts too, each writer's keys named as every reader names them: a part's key another
writer owns is ``<key>/l:<label>``, ``core/parts.Ownership``). Memory is bounded per key
(``KEPT``: past twice that many steps, every other one is let go, so what is kept stays spread
over the run) and per run (``RUN_KEPT_BYTES``, every writer's together: past it, a key's series
lets every other one go whenever it is added to, down to its first and newest). Each answer is
bounded: at most ``MAX_STEPS`` steps (evenly spaced over those kept, the last always included)
and ``MAX_BINS`` bins.

Rebinning: the answer's bins split the range of every chosen histogram (the lowest first edge to
the highest last edge) evenly; each logged bin's count is spread over the answer's bins in
proportion to their overlap (values taken as uniform inside a bin), so counts add up to what was
logged. Histograms logged with the same edges as the answer's bins come back unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel

from tracklet.server.log_fold import LogFolds, RunFold, run_fold, run_keys
from tracklet.server.models import errors
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/runs", tags=["read"])

MAX_STEPS = 1000
MAX_BINS = 512


class HistogramKeysResponse(BaseModel):
    """The history keys that hold histograms, in first-logged order."""

    keys: list[str]


class HistogramSeriesResponse(BaseModel):
    """`counts[i]` is the histogram logged at `steps[i]`, on the bins `edges` (one more than the
    bins): counts as floats (rebinned counts may be fractional). `nan` and `inf`: values outside
    every bin, per step. `total_steps`: steps the key was logged at (`steps` holds at most
    `max_steps` of them, evenly spaced)."""

    key: str
    steps: list[int]
    edges: list[float]
    counts: list[list[float]]
    nan: list[int]
    inf: list[int]
    total_steps: int


KEPT = 512  # histograms kept per key and log: past twice this, every other one is let go
RUN_KEPT_BYTES = 64 << 20  # histograms' arrays kept per run, every writer's logs together (8 runs kept)
HISTOGRAM_OVERHEAD = 200  # what one kept histogram costs beside its arrays' bytes


class _Budget:
    """The bytes a run's kept histograms hold (``used``), shared by its writers' folds."""

    def __init__(self, limit: int | None = None) -> None:
        self.used = 0
        self.limit = RUN_KEPT_BYTES if limit is None else limit


def _size(histogram: tuple[Any, Any, int, int]) -> int:
    return int(histogram[0].nbytes + histogram[1].nbytes) + HISTOGRAM_OVERHEAD


class _Series:
    """One key's histograms over steps, thinned evenly: the n-th step logged is kept when n is a
    multiple of ``stride``, which doubles (dropping every other one kept) whenever more than
    ``2 * KEPT`` are kept, or when the run's ``budget`` is spent and more than one is kept; the
    newest is always kept too. ``total``: every step logged."""

    def __init__(self, budget: _Budget | None = None) -> None:
        self.budget = budget if budget is not None else _Budget()
        self._steps: list[int] = []
        self._histograms: list[tuple[Any, Any, int, int]] = []  # (edges, counts, nan, inf) as numpy arrays
        self._newest: tuple[int, tuple[Any, Any, int, int]] | None = None
        self.stride = 1
        self.total = 0

    def add(self, step: int, histogram: tuple[Any, Any, int, int]) -> None:
        budget = self.budget
        if self._newest is not None and self._newest[0] == step:  # logged again at one step: the last one counts
            self._newest = (step, histogram)
            if self._steps and self._steps[-1] == step:
                budget.used += _size(histogram) - _size(self._histograms[-1])
                self._histograms[-1] = histogram
            return
        self._newest = (step, histogram)
        if self.total % self.stride == 0:
            self._steps.append(step)
            self._histograms.append(histogram)
            budget.used += _size(histogram)
            if len(self._steps) > 2 * KEPT or (budget.used > budget.limit and len(self._steps) > 1):
                budget.used -= sum(map(_size, self._histograms[1::2]))
                self._steps, self._histograms = self._steps[::2], self._histograms[::2]
                self.stride *= 2
        self.total += 1

    @property
    def steps(self) -> list[int]:
        newest = self._newest
        return self._steps + ([newest[0]] if newest and (not self._steps or self._steps[-1] != newest[0]) else [])

    @property
    def histograms(self) -> list[tuple[Any, Any, int, int]]:
        newest = self._newest
        return self._histograms + ([newest[1]] if newest and (not self._steps or self._steps[-1] != newest[0]) else [])


class _Histograms:
    """The fold of a record log: key names by id (``defined``: every name), and each histogram
    key's series (first-logged order), kept within the run's ``budget``."""

    def __init__(self, budget: _Budget | None = None) -> None:
        self.names: dict[int, str] = {}
        self.defined: set[str] = set()
        self.series: dict[str, _Series] = {}
        self.budget = budget if budget is not None else _Budget()

    def apply(self, record: Any) -> None:
        import numpy as np

        if record.WhichOneof("kind") != "history":
            return
        batch = record.history
        for definition in batch.new_keys:
            self.names[definition.id] = definition.name
            self.defined.add(definition.name)
        steps = batch.steps
        for column in batch.columns:
            if not len(column.histograms):
                continue
            name = self.names.get(column.key, str(column.key))
            series = self.series.get(name)
            if series is None:
                series = self.series[name] = _Series(self.budget)
            rows = list(column.rows) if len(column.rows) else range(len(column.histograms))
            for row, message in zip(rows, column.histograms):
                if row < len(steps):
                    series.add(int(steps[row]), (np.asarray(message.edges, dtype=np.float64),
                                                 np.asarray(message.counts, dtype=np.float64),
                                                 int(message.nan_count), int(message.inf_count)))


_FOLDS: LogFolds[_Histograms] = LogFolds(_Histograms, _Histograms.apply, size=8, shared=_Budget)  # runs kept


def _view(request: Request, project: str, run_id: str, view: Callable[[RunFold[_Histograms]], Any]) -> Any:
    return run_fold(_FOLDS, request, project, run_id, view)


def _keys(run: RunFold[_Histograms]) -> list[str]:
    """The run's histogram keys as its readers name them: the run's own log's in first-logged
    order, then each part's (label order) not listed yet."""
    named = {(label, key): name for name, sources in run_keys(run, lambda fold: fold.defined).items()
             for label, key in sources}
    return list(dict.fromkeys(named[label, key] for label, fold in run.writers.items() for key in fold.series
                              if (label, key) in named))


def _series(run: RunFold[_Histograms], name: str) -> tuple[list[int], list[tuple[Any, Any, int, int]], int] | None:
    """Key ``name``'s kept (steps, histograms, steps logged), its writers' merged by step (the
    one read last winning a step) where several writers' keys are named ``name``."""
    found = [series for label, key in run_keys(run, lambda fold: fold.defined).get(name, ())
             for series in [run.entries[label].state.series.get(key)] if series is not None]
    if len(found) <= 1:
        return (found[0].steps, found[0].histograms, found[0].total) if found else None
    by_step: dict[int, tuple[Any, Any, int, int]] = {}
    for series in found:
        by_step.update(zip(series.steps, series.histograms))
    steps = sorted(by_step)
    return steps, [by_step[step] for step in steps], sum(series.total for series in found)


def rebin(histograms: list[tuple[Any, Any, int, int]], bins: int) -> tuple[list[float], list[list[float]]]:
    """``histograms`` (edges, counts, ...) on ``bins`` common, even bins over their joint range
    (see the module's docstring)."""
    import numpy as np

    spans = [(h[0][0], h[0][-1]) for h in histograms if _usable(h[0], h[1])]
    if not spans:
        return [], [[] for _ in histograms]
    low = float(min(span[0] for span in spans))
    high = float(max(span[1] for span in spans))
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    out: list[list[float]] = []
    for source, counts, _, _ in histograms:
        if not _usable(source, counts):  # none, or malformed (from a log on disk): nothing to place
            out.append([0.0] * bins)
            continue
        if not source[-1] > source[0]:  # every value equal: all in the bin holding it
            row = np.zeros(bins)
            row[min(bins - 1, max(0, int(np.searchsorted(edges, source[0], side="right")) - 1))] = counts.sum()
            out.append(row.tolist())
            continue
        cumulative = np.concatenate([[0.0], np.cumsum(counts)])
        at_edges = np.interp(edges, source, cumulative)  # 0 below the histogram, its total above
        out.append(np.diff(at_edges).tolist())
    return edges.tolist(), out


@router.get("/{project}/{run_id}/histograms", response_model=HistogramKeysResponse, responses=errors(400, 404),
            summary="The history keys a run logged histograms under")
def get_histogram_keys(request: Request, project: str, run_id: str) -> HistogramKeysResponse:
    return HistogramKeysResponse(keys=_view(request, project, run_id, _keys))


@router.get("/{project}/{run_id}/histograms/{key:path}", response_model=HistogramSeriesResponse,
            responses=errors(400, 404), summary="A key's histograms over steps, on common bins")
def get_histograms(
    request: Request,
    project: str,
    run_id: str,
    key: str,
    bins: int = Query(64, ge=1, le=MAX_BINS, description="Bins of the answer"),
    max_steps: int = Query(200, ge=1, le=MAX_STEPS, description="Steps at most (evenly spaced, the last included)"),
) -> HistogramSeriesResponse:
    """The histograms logged under `key`, at most `max_steps` of them, rebinned onto `bins` even
    bins over their joint range."""
    def pick(run: RunFold[_Histograms]) -> tuple[list[int], list[tuple[Any, Any, int, int]], int] | None:
        series = _series(run, key)
        if series is None:
            return None
        steps, histograms, total = series
        picked = _spaced(len(steps), max_steps)
        return [steps[i] for i in picked], [histograms[i] for i in picked], total

    found = _view(request, project, run_id, pick)
    if found is None:
        raise HTTPException(status_code=404, detail=f"run {project}/{run_id} logged no histogram under {key!r}")
    steps, chosen, total = found
    edges, counts = rebin(chosen, bins)
    return HistogramSeriesResponse(key=key, steps=steps, edges=edges, counts=counts,
                                   nan=[h[2] for h in chosen], inf=[h[3] for h in chosen], total_steps=total)


def _usable(edges: Any, counts: Any) -> bool:
    """Finite edges, not decreasing, one more than the counts: a histogram that can be placed."""
    import numpy as np

    return (len(edges) >= 2 and len(counts) == len(edges) - 1 and bool(np.isfinite(edges).all())
            and bool((np.diff(edges) >= 0).all()) and bool(np.isfinite(counts).all()))


def _spaced(count: int, most: int) -> list[int]:
    """``most`` indexes evenly spaced over ``range(count)``, the first and the last included."""
    if count <= most:
        return list(range(count))
    if most == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})
