"""Weave's names where the W&B compatibility layer is on: ``import weave`` is tracklet's
``weave.init`` / ``weave.op`` / ``weave.Evaluation`` (issue #19), in a process of its own (the
redirect is process-wide)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

SCRIPT = r"""
import asyncio, json, sys
import tracklet
from tracklet.compat import install_wandb
install_wandb(propagate=False)
import weave
assert weave.__name__ == "tracklet.compat.weave", weave.__name__

run = weave.init("team/wv", dir=sys.argv[1], settings={"console": "off", "capture_environment": False,
                                                       "system_metrics": False})

@weave.op()
def retrieve(query: str) -> list:
    return [query.upper()]

class Echo(weave.Model):
    @weave.op
    def predict(self, question: str) -> str:
        return retrieve(question)[0]

def match(expected: str, model_output: str) -> dict:
    return {"correct": expected == model_output}

dataset = weave.Dataset(name="qa", rows=[{"question": "a", "expected": "A"}, {"question": "b", "expected": "x"}])
summary = asyncio.run(weave.Evaluation(dataset=dataset, scorers=[match]).evaluate(Echo()))
retrieve("outside")
run.finish()
print(json.dumps(summary))
"""


def test_weave_init_op_and_evaluation_record_into_tracklet(root):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(root)})
    assert done.returncode == 0, done.stderr
    summary = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert summary["match.correct"] == 0.5 and summary["rows"] == 2
    import tracklet

    api = tracklet.Api(root)
    (run,) = api.runs("wv")
    assert run.job_type == "weave" and run.summary["match.correct"] == 0.5
    names = sorted(s.name for t in api.traces("wv", limit=100) for s in t.spans)
    # two rows: evaluate_row > predict > retrieve, and match; then one retrieve outside
    assert names.count("evaluate_row") == 2 and names.count("match") == 2 and names.count("retrieve") == 3
    assert run.table("eval/results").to_pandas()["trace_id"].str.len().tolist() == [32, 32]
    api.close()
