"""Read API for histograms logged over steps (``tracklet.Histogram``, and W&B's ``wandb.Histogram``
through the compat layer): the keys that hold them, and one key's histograms over steps put on
common bins, for the dashboard's histogram-over-steps panel (a heat strip per step).

Histograms stay in the record log (the store indexes numbers only), so a run's log is replayed
here, once per log size (``_HistogramCache``). Each answer is bounded: at most ``MAX_STEPS`` steps
(evenly spaced over the logged ones, the last always included) and ``MAX_BINS`` bins.

Rebinning: the answer's bins split the range of every chosen histogram (the lowest first edge to
the highest last edge) evenly; each logged bin's count is spread over the answer's bins in
proportion to their overlap (values taken as uniform inside a bin), so counts add up to what was
logged. Histograms logged with the same edges as the answer's bins come back unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from tracklet.server.logs import run_paths
from tracklet.server.models import errors

router = APIRouter(prefix="/api/v1/runs", tags=["read"])

MAX_STEPS = 2000
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


class _HistogramCache:
    """Per run log (path, size, mtime): its histogram keys and each key's (steps, histograms)."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._cache: OrderedDict[tuple[str, int, int], dict[str, tuple[list[int], list[Any]]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, log_file: Any) -> dict[str, tuple[list[int], list[Any]]]:
        stat = log_file.stat()
        token = (str(log_file), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            found = self._cache.get(token)
            if found is not None:
                self._cache.move_to_end(token)
                return found
        series = _read(log_file)
        with self._lock:
            self._cache[token] = series
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return series


def _read(log_file: Any) -> dict[str, tuple[list[int], list[Any]]]:
    """Every histogram key of the log and its (steps, histograms), in step order."""
    from tracklet.core.history import STEP
    from tracklet.core.reader import replay
    from tracklet.core.values import Histogram

    state = replay(log_file)
    keys: dict[str, None] = {}
    for batch in state.batches:
        for column in batch.columns:
            if len(column.histograms):
                keys.setdefault(state.key_names.get(column.key, str(column.key)), None)
    if not keys:
        return {}
    history = state.history(list(keys))
    steps = history[STEP]
    series: dict[str, tuple[list[int], list[Any]]] = {}
    for key in keys:
        rows, values = history.entries(key)
        positions = range(len(values)) if rows is None else rows
        pairs = [(int(steps[int(row)]), value) for row, value in zip(positions, values) if isinstance(value, Histogram)]
        series[key] = ([step for step, _ in pairs], [value for _, value in pairs])
    return series


_CACHE = _HistogramCache()


def _series(request: Request, project: str, run_id: str) -> dict[str, tuple[list[int], list[Any]]]:
    app = request.app.state.tracklet
    paths = run_paths(app.root, project, run_id)
    if app.store.run(project, run_id, fields=("run_id",)) is None or not paths.log_file.is_file():
        raise HTTPException(status_code=404, detail=f"no run {project}/{run_id} on this server")
    return _CACHE.get(paths.log_file)


def rebin(histograms: list[Any], bins: int) -> tuple[list[float], list[list[float]]]:
    """``histograms`` on ``bins`` common, even bins over their joint range (see the module's docstring)."""
    import numpy as np

    spans = [(h.edges[0], h.edges[-1]) for h in histograms if len(h.edges) >= 2]
    if not spans:
        return [], [[] for _ in histograms]
    low = min(span[0] for span in spans)
    high = max(span[1] for span in spans)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    out: list[list[float]] = []
    for h in histograms:
        if len(h.edges) < 2:
            out.append([0.0] * bins)
            continue
        source = np.asarray(h.edges, dtype=np.float64)
        counts = np.asarray(h.counts, dtype=np.float64)
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
    return HistogramKeysResponse(keys=list(_series(request, project, run_id)))


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
    found = _series(request, project, run_id).get(key)
    if found is None:
        raise HTTPException(status_code=404, detail=f"run {project}/{run_id} logged no histogram under {key!r}")
    steps, histograms = found
    picked = _spaced(len(steps), max_steps)
    chosen = [histograms[i] for i in picked]
    edges, counts = rebin(chosen, bins)
    return HistogramSeriesResponse(key=key, steps=[steps[i] for i in picked], edges=edges, counts=counts,
                                   nan=[int(h.nan_count) for h in chosen], inf=[int(h.inf_count) for h in chosen],
                                   total_steps=len(steps))


def _spaced(count: int, most: int) -> list[int]:
    """``most`` indexes evenly spaced over ``range(count)``, the first and the last included."""
    if count <= most:
        return list(range(count))
    if most == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})
