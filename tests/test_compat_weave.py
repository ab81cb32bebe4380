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


SCORER_SCRIPT = r"""
import asyncio, json, sys, warnings
from tracklet.compat import install_wandb
install_wandb(propagate=False)
import weave

weave.init("team/wvs", dir=sys.argv[1], settings={"console": "off", "capture_environment": False,
                                                  "system_metrics": False})

class Echo(weave.Model):
    suffix: str

    @weave.op()
    async def predict(self, question: str) -> str:
        return question.upper() + self.suffix

class ExactMatch(weave.Scorer):          # Weave's class-based scorer
    @weave.op
    async def score(self, expected: str, output: str) -> dict:
        return {"correct": expected == output}

class Length(weave.Scorer):
    limit: int

    def score(self, output: str) -> bool:
        return len(output) <= self.limit

rows = [{"question": "a", "expected": "A!"}, {"question": "bb", "expected": "x"}]
weave.publish(weave.Dataset(name="qa", rows=rows))            # no Weave server: a warning, not a crash
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with weave.attributes({"env": "test"}):
        summary = asyncio.run(weave.Evaluation(dataset=rows, scorers=[ExactMatch(), Length(limit=2)])
                              .evaluate(Echo(suffix="!")))
weave.finish()
print(json.dumps({"summary": summary, "warned": [str(w.message) for w in caught]}))
"""


def test_weave_class_scorers_publish_and_attributes_run_as_weave_scripts_write_them(root):
    """Weave's docs score with ``weave.Scorer`` subclasses and call ``weave.publish`` and
    ``weave.attributes``: the scorers are scored under their class names; the other two are one
    warning each, and the script runs on (they raised ``AttributeError`` / ``TypeError``)."""
    done = subprocess.run([sys.executable, "-c", SCORER_SCRIPT, str(root)], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(root)})
    assert done.returncode == 0, done.stderr
    out = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert out["summary"]["ExactMatch.correct"] == 0.5 and out["summary"]["Length"] == 0.5
    assert "weave.publish() is not provided" in done.stderr
    assert any("weave.attributes() is not recorded" in message for message in out["warned"])
    import tracklet

    api = tracklet.Api(root)
    (run,) = api.runs("wvs")
    assert run.state == "finished" and run.summary["ExactMatch.correct"] == 0.5
    names = [s.name for t in api.traces("wvs", limit=100) for s in t.spans]
    # An op scorer's span is its own (Weave's name), once per row; a plain one's is named by its class.
    assert names.count("ExactMatch.score") == 2 and names.count("Length") == 2 and "ExactMatch" not in names
    assert names.count("Echo.predict") == 2 and "predict" not in names  # the op model: one span a row
    api.close()


LLM_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from fake_llm import FakeLlmServer
from tracklet.compat import install_wandb
install_wandb(propagate=False)
import weave, openai, anthropic

settings = {"print_call_link": False, "console": "off", "capture_environment": False, "system_metrics": False}
with FakeLlmServer() as server:
    weave.init("team/wllm", dir=sys.argv[1], settings=settings, global_attributes={"env": "dev"})
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)

    @weave.op
    def answer(question: str) -> str:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
        return reply.choices[0].message.content

    answer("what is two plus two")
    anthropic.Anthropic(base_url=server.url, api_key="sk-test", max_retries=0).messages.create(
        model="claude-3-5-haiku", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    weave.finish()
    # Weave's autopatch_settings turn a provider off, as in Weave
    from tracklet.tracing import llm
    llm.unpatch()
    weave.init("team/wllm-off", dir=sys.argv[1], settings=settings,
               autopatch_settings={"openai": {"enabled": False}})
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "untraced"}])
    anthropic.Anthropic(base_url=server.url, api_key="sk-test", max_retries=0).messages.create(
        model="claude-3-5-haiku", max_tokens=20, messages=[{"role": "user", "content": "traced"}])
    weave.finish()
print(json.dumps("ok"))
"""


def test_weave_init_traces_openai_and_anthropic_calls_and_takes_weaves_keywords(root):
    # Weave's init patches the LLM clients: a Weave script's calls were not traced, and Weave's
    # own init keywords (its settings, autopatch_settings, global_attributes) raised.
    done = subprocess.run([sys.executable, "-c", LLM_SCRIPT, str(root), str(REPO / "tests")], capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(root)})
    assert done.returncode == 0, done.stderr
    assert "weave.init(global_attributes=...) is not applied" in done.stderr
    import tracklet

    api = tracklet.Api(root)
    spans = sorted((s.name, not s.parent_span_id, s.provider or None) for t in api.traces("wllm", limit=100)
                   for s in t.spans)
    assert [(name.split("-")[0], top, provider) for name, top, provider in spans] == [
        ("answer", True, None), ("chat claude", True, "anthropic"), ("chat gpt", False, "openai")]
    assert [s.provider for t in api.traces("wllm-off", limit=100) for s in t.spans] == ["anthropic"]
    api.close()
