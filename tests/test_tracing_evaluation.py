"""Evaluations are runs (issue #19): ``tracklet.Evaluation(dataset=, scorers=, trials=).evaluate(model)``
makes an ``eval`` run whose input is the dataset artifact version, whose per-row results are a
table with a ``trace_id`` column naming each row's trace, and whose scorer means are summary metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import tracklet
from conftest import QUIET

ROWS = [{"question": "2+2", "expected": "4"}, {"question": "3+3", "expected": "6"},
        {"question": "boom", "expected": "x"}, {"question": "1+1", "expected": "3"}]


def _dataset(root, tmp_path):
    """A tiny dataset artifact ``qa`` (rows in a JSONL file), logged by a run of its own."""
    files = tmp_path / "qa"
    files.mkdir()
    (files / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    run = tracklet.init(project="ev", dir=str(root), settings=QUIET, job_type="data")
    artifact = run.log_artifact(str(files), name="qa", type="dataset")
    artifact.wait()
    run.finish()
    return artifact


def model(question: str) -> str:
    if question == "boom":
        raise RuntimeError("the model failed")
    return str(eval(question))  # noqa: S307 - a fixed test input


def exact(expected: str, output: str) -> bool:
    return output == expected


async def length(output: str) -> dict:
    await asyncio.sleep(0)
    return {"chars": len(output), "short": len(output) < 2}


def test_an_evaluation_is_an_eval_run_with_lineage_results_table_traces_and_summary(root, tmp_path):
    _dataset(root, tmp_path)
    evaluation = tracklet.Evaluation(dataset="qa:latest", scorers=[exact, length], trials=2, name="arith")
    summary = evaluation.evaluate(model, project="ev", dir=str(root), settings=QUIET)
    # 3 answered rows x 2 trials: 2+2 and 3+3 right, 1+1 wrong; the failed row scores None
    assert summary["rows"] == 4 and summary["trials"] == 2 and summary["errors"] == 2
    assert summary["exact"] == pytest.approx(4 / 6)
    assert summary["length.chars"] == 1.0 and summary["length.short"] == 1.0
    api = tracklet.Api(root)
    (run,) = [r for r in api.runs("ev") if r.job_type == "eval"]
    assert run.config["evaluation"] == "arith" and run.config["scorers"] == ["exact", "length"]
    assert run.summary["exact"] == pytest.approx(4 / 6) and run.summary["errors"] == 2
    assert [(a["name"], a["type"], a["version"]) for a in run.used_artifacts] == [("qa", "dataset", 0)]
    table = run.table("eval/results").to_pandas()
    assert len(table) == 8 and list(table.columns[:3]) == ["row", "trial", "trace_id"]
    assert sorted(table[table["error"] == ""]["exact"].tolist()) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert set(table[table["question"] == "boom"]["error"]) == {"RuntimeError: the model failed"}
    traces = {t.trace_id: t for t in api.traces("ev", run=run.id, limit=100)}
    assert set(table["trace_id"]) == set(traces)  # every row's trace, and nothing else
    trace = traces[table[(table["row"] == 0) & (table["trial"] == 1)]["trace_id"].item()]
    assert trace.root.name == "evaluate_row" and trace.root.inputs["row"] == ROWS[0]
    assert sorted(s.name for s in trace.spans) == ["evaluate_row", "exact", "length", "model"]
    failed = traces[table[table["question"] == "boom"]["trace_id"].iloc[0]]
    assert {s.name: s.status for s in failed.spans} == {"evaluate_row": "ok", "model": "error"}
    api.close()


def test_an_in_memory_dataset_and_bad_arguments():
    with pytest.raises(ValueError, match="trials"):
        tracklet.Evaluation(dataset=ROWS, trials=0)
    with pytest.raises(TypeError, match="scorer"):
        tracklet.Evaluation(dataset=ROWS, scorers=["exact"])


def test_an_evaluation_records_into_a_given_run(start):
    run = start(project="ev2")
    summary = tracklet.Evaluation(dataset=ROWS[:2], scorers=[exact]).evaluate(model, run=run)
    assert summary["exact"] == 1.0 and summary["rows"] == 2
    assert not run._finished  # a run it did not start stays open
    run.finish()


def test_an_op_model_and_op_scorer_are_one_span_each_per_row(start):
    """A model or scorer that is an op already (``@tracklet.op``, ``@weave.op``) was wrapped in a
    second op of the evaluation's: two spans of one name per call in every row's trace."""
    @tracklet.op
    def answer(question: str) -> str:
        return str(eval(question))  # noqa: S307 - a fixed test input

    @tracklet.op(name="judge")
    def judged(expected: str, output: str) -> bool:
        return output == expected

    run = start(project="ev3")
    summary = tracklet.Evaluation(dataset=ROWS[:2], scorers=[judged, exact]).evaluate(answer, run=run)
    run.finish()
    assert summary["judged"] == 1.0 and summary["exact"] == 1.0
    api = tracklet.Api(Path(run.dir).parents[3])  # the run's data root
    traces = api.traces("ev3", limit=100)
    assert len(traces) == 2
    for trace in traces:
        names = sorted(s.name for s in trace.spans)
        assert names == sorted(["evaluate_row", answer.__qualname__, "judge", "exact"]), names
        assert {s.parent_span_id for s in trace.spans if s.name != "evaluate_row"} == {trace.root.span_id}
    api.close()
