"""Evaluations are runs: ``tracklet.Evaluation(dataset=, scorers=[...], trials=).evaluate(model)``.

``evaluate`` starts (or takes) a run with ``job_type="eval"`` and calls the model on every row of
the dataset, ``trials`` times, each call an ``@tracklet.op`` trace (``evaluate_row``: the model's
call and every scorer's are its children). The run records:

- its input: the dataset artifact version, through ``run.use_artifact`` (lineage), when the
  dataset is one (an ``Artifact`` or a name like ``"qa:latest"``; its ``*.jsonl`` / ``*.json``
  files hold the rows);
- a ``tracklet.Table`` under ``"eval/results"``: one row per (row, trial) with the row's index,
  the trial, the ``trace_id`` of its trace, the row's fields, the output, and each score;
- summary metrics: each score's mean over rows and trials (``<scorer>`` for a scorer returning a
  number or bool, ``<scorer>.<key>`` for one returning a dict), ``model_latency_ms`` and
  ``rows`` / ``errors`` counts; so evaluations compare in the runs table and parallel coordinates.

A model or a scorer receives the row's fields its parameters name (all of them with ``**kwargs``);
a scorer also gets ``output`` (also as ``model_output``, older Weave code's name). Either may be
``async def``. A model call that raises is recorded
(an error span, ``error`` in the table, counted in ``errors``) and scored as None.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tracklet.tracing.ops import _CURRENT, is_op, op

RESULTS_KEY = "eval/results"


def _accepts(function: Callable[..., Any]) -> tuple[set[str], bool]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _call(function: Callable[..., Any], fields: Mapping[str, Any]) -> Any:
    names, any_name = _accepts(function)
    result = function(**(dict(fields) if any_name else {k: v for k, v in fields.items() if k in names}))
    if inspect.isawaitable(result):
        async def wait() -> Any:
            return await result
        result = asyncio.run(wait())
    return result


def _score(scorer: Callable[..., Any], **fields: Any) -> Any:
    return _call(scorer, fields)


def _name(function: Any) -> str:
    return getattr(function, "__name__", None) or type(function).__name__


def _rows_of_files(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*")):
        if path.suffix == ".jsonl":
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows += data if isinstance(data, list) else [data]
    return rows


class Evaluation:
    """A dataset, scorers and a trial count; ``evaluate(model)`` runs them (see the module)."""

    def __init__(self, dataset: Any, scorers: Iterable[Callable[..., Any]] = (), trials: int = 1,
                 name: str | None = None) -> None:
        if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
            raise ValueError(f"Evaluation: trials must be an int >= 1; got {trials!r}")
        self.dataset = dataset
        self.scorers = list(scorers)
        for scorer in self.scorers:
            if not callable(scorer):
                raise TypeError(f"Evaluation: a scorer must be callable; got {type(scorer).__name__}")
        self.trials = trials
        self.name = name or "evaluation"

    def _rows(self, run: Any) -> list[dict[str, Any]]:
        dataset = self.dataset
        if isinstance(dataset, (list, tuple)):
            return [dict(row) for row in dataset]
        artifact = run.use_artifact(dataset)  # the input, for lineage
        from tracklet.artifacts.storage import cache_download_root

        rows = _rows_of_files(Path(artifact.download(cache_download_root(artifact._store.data_root, artifact._info))))
        if not rows:
            raise ValueError(f"Evaluation: the dataset artifact {getattr(artifact, 'name', dataset)!r} holds no "
                             "rows (*.jsonl or *.json files)")
        return rows

    def evaluate(self, model: Callable[..., Any], *, run: Any = None, project: str | None = None,
                 **init_kwargs: Any) -> dict[str, Any]:
        """Call ``model`` on every row ``trials`` times, score each output, record the results in
        an ``eval`` run (``run``, or a new one: ``project`` and ``init_kwargs`` as for
        ``tracklet.init``), finish a run it started, and return the summary metrics."""
        if not callable(model):
            raise TypeError(f"evaluate: model must be callable; got {type(model).__name__}")
        owned = run is None
        if owned:
            from tracklet.core.start import init

            config = {"evaluation": self.name, "model": _name(model), "trials": self.trials,
                      "scorers": [_name(s) for s in self.scorers], **init_kwargs.pop("config", {})}
            run = init(project=project, job_type="eval", config=config, **init_kwargs)
        try:
            summary = self._evaluate(model, run)
        finally:
            if owned:
                run.finish()
        return summary

    def _evaluate(self, model: Callable[..., Any], run: Any) -> dict[str, Any]:
        from tracklet.media.table import Table

        rows = self._rows(run)
        # A model or scorer that is an op already records its own span (under the row's): wrapping
        # it in another would give each call two spans of one name.
        def traced(function: Callable[..., Any], call: Callable[..., Any]) -> Callable[..., Any]:
            return call if is_op(function) else op(name=_name(function))(call)

        traced_model = traced(model, lambda **fields: _call(model, fields))
        scorers = [(_name(s), traced(s, functools.partial(_score, s))) for s in self.scorers]

        @op(name="evaluate_row")
        def evaluate_row(index: int, trial: int, row: dict[str, Any]) -> dict[str, Any]:
            current = _CURRENT.get()
            trace_id = f"{current[0]:032x}" if current and current[0] else ""  # (0, 0): a trace sampling left out
            started = time.perf_counter()
            error = ""
            try:
                output = traced_model(**row)
            except Exception as failure:  # the model's failure is a result, not the evaluation's end
                output, error = None, f"{type(failure).__name__}: {failure}"
            latency = (time.perf_counter() - started) * 1000
            scores: dict[str, Any] = {}
            for name, scorer in scorers:
                if error:
                    scores[name] = None
                    continue
                score = scorer(**{**row, "output": output, "model_output": output})
                if isinstance(score, Mapping):
                    scores.update({f"{name}.{key}": value for key, value in score.items()})
                else:
                    scores[name] = score
            return {"trace_id": trace_id, "output": output, "error": error, "latency_ms": latency, "scores": scores}

        results = [(index, trial, row, evaluate_row(index, trial, row))
                   for index, row in enumerate(rows) for trial in range(self.trials)]
        fields = sorted({key for row in rows for key in row})
        score_names = sorted({name for *_, result in results for name in result["scores"]})
        columns = ["row", "trial", "trace_id", *fields, "output", "error", "latency_ms", *score_names]
        data = [[index, trial, result["trace_id"], *[_cell(row.get(key)) for key in fields], _cell(result["output"]),
                 result["error"], result["latency_ms"], *[_number(result["scores"].get(name)) for name in score_names]]
                for index, trial, row, result in results]
        run.log({RESULTS_KEY: Table(columns=columns, data=data)})
        summary: dict[str, Any] = {"rows": len(rows), "trials": self.trials,
                                   "errors": sum(1 for *_, r in results if r["error"])}
        for name in score_names:
            values = [v for *_, r in results if (v := _number(r["scores"].get(name))) is not None]
            summary[name] = statistics.fmean(values) if values else None
        summary["model_latency_ms"] = statistics.fmean(r["latency_ms"] for *_, r in results) if results else None
        for key, value in summary.items():
            if value is not None:
                run.summary[key] = value
        return summary


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _cell(value: Any) -> Any:
    """A table cell: scalars as they are, anything else as its JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
