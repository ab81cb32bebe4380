"""The JAX integration: track_step (metrics from a step function, no device sync on the caller),
watch_compilation (jax.monitoring compile events), and the Flax NNX + optax worked example."""

from __future__ import annotations

import runpy
import time
import warnings

import numpy as np
import pytest

import tracklet
from tracklet.integrations import jax as tj
from tracklet.integrations.jax import track_step, watch_compilation

from conftest import QUIET, REPO, read

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

EXAMPLE = REPO / "docs" / "examples" / "flax_nnx_optax.py"


@pytest.fixture(autouse=True)
def _stop_watchers():
    yield
    for watcher in tj._watchers:
        watcher.stop()


def _opt_problem():
    """A linear regression step with optax: jitted, returns (params, opt_state, metrics)."""
    optax = pytest.importorskip("optax")
    tx = optax.sgd(0.1)

    def step(params, opt_state, x, y):
        def loss_fn(p):
            return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    params = {"w": jnp.zeros((3, 1)), "b": jnp.zeros(())}
    return jax.jit(step), params, tx.init(params), jnp.asarray(x), jnp.asarray(y)


def _floats(metrics_list, key):
    return [float(m[key]) for m in metrics_list]


def test_jit_optax_step_logs_what_it_returned_at_each_step(start):
    step, params, opt_state, x, y = _opt_problem()
    # The reference: the same jitted function, untracked, from the same state.
    expected, p, s = [], params, opt_state
    for _ in range(6):
        p, s, metrics = step(p, s, x, y)
        expected.append(metrics)

    run = start()
    tracked = track_step(step, run=run)
    assert tracked.__name__ == "step" and tracked.__wrapped__ is step
    p, s = params, opt_state
    for _ in range(6):
        p, s, metrics = tracked(p, s, x, y)
    assert isinstance(metrics["loss"], jax.Array)  # the caller gets the step's own output back
    assert tracked.calls == 6 and tracked.last_step == 5
    assert not run.finished
    run.finish()

    history = read(run).history()
    assert history["_step"] == [0, 1, 2, 3, 4, 5]
    assert history["train/loss"] == pytest.approx(_floats(expected, "loss"), rel=1e-6)
    assert history["train/grad_norm"] == pytest.approx(_floats(expected, "grad_norm"), rel=1e-6)
    assert history["train/loss"][-1] < history["train/loss"][0]


def test_every_n_calls_and_the_runs_step_follows_every_call(start):
    run = start()

    @track_step(run=run, every=3, prefix="")
    @jax.jit
    def step(x):
        return {"x": x * 1.0}

    for i in range(8):
        step(jnp.float32(i))
        if i == 4:
            run.log({"val/acc": 0.5})  # no step=: lands in call 4's row, though call 4 logged nothing
    run.finish()
    rows = list(read(run).history().rows())
    assert [(r["_step"], r.get("x"), r.get("val/acc")) for r in rows] == [
        (0, 0.0, None), (3, 3.0, None), (4, None, 0.5), (6, 6.0, None)
    ]


def test_output_shapes_and_the_metrics_selector(start):
    run = start()
    loss_only = track_step(jax.jit(lambda x: x.sum()), run=run, prefix="a/")
    pair = track_step(lambda x: (x, x.mean()), run=run, prefix="b/")  # not jitted: a plain function
    picked = track_step(lambda x: ({"m": x.max()}, "aux"), run=run, prefix="c/", metrics=0)
    chosen = track_step(lambda x: {"inner": {"v": x.min()}}, run=run, prefix="d/", metrics=lambda out: out["inner"])
    nested = track_step(lambda x: ("state", {"grp": {"v": x[0]}}), run=run, prefix="e/")
    x = jnp.arange(4.0)
    for wrapped in (loss_only, pair, picked, chosen, nested):
        wrapped(x)
    run.finish()
    row = next(read(run).history().rows())
    assert row["a/loss"] == 6.0 and row["b/loss"] == 1.5 and row["c/m"] == 3.0
    assert row["d/v"] == 0.0 and row["e/grp/v"] == 0.0


def test_an_output_without_metrics_warns_once_and_the_step_still_returns(start):
    run = start()
    tracked = track_step(lambda x: [x, x], run=run)
    with pytest.warns(tracklet.TrackletWarning, match="metrics=lambda out"):
        out = tracked(jnp.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracked(jnp.ones(3))
    assert len(out) == 2 and tracked.calls == 2
    broken = track_step(lambda x: x, run=run, metrics=lambda out: out["missing"])
    with pytest.warns(tracklet.TrackletWarning, match="selector .* raised"):
        assert broken(7.0) == 7.0


def test_a_method_invalid_arguments_and_a_wrapper_inside_jit(start):
    run = start()

    class Trainer:
        def __init__(self, scale):
            self.scale = scale

        @track_step(run=run, prefix="m/")
        def step(self, x):
            return {"loss": x * self.scale}

    assert Trainer(2.0).step(3.0) == {"loss": 6.0}
    with pytest.raises(ValueError, match="every"):
        track_step(lambda x: x, run=run, every=0)
    with pytest.raises(TypeError, match="metrics"):
        track_step(lambda x: x, run=run, metrics="loss")

    inside = jax.jit(track_step(lambda x: {"loss": x.sum()}, run=run, prefix="jit/"))
    with pytest.warns(tracklet.TrackletWarning, match="track_step is inside jax.jit"):
        inside(jnp.ones(3))
    inside(jnp.ones(4))  # traced again: still nothing logged
    run.finish()
    assert read(run).history().keys() == {"_step", "_timestamp", "_runtime", "m/loss"}


def _slow_input(seconds: float):
    """A device array that takes at least ``seconds`` to be ready: async dispatch of a calibrated
    loop of matmuls. Whatever consumes it is not ready before it is."""

    @jax.jit
    def slow(a, n):
        return jax.lax.fori_loop(0, n, lambda i, m: jnp.tanh(m @ a), a)

    a = jnp.full((384, 384), 0.001, jnp.float32)
    n = 8
    while True:
        begin = time.perf_counter()
        slow(a, n).block_until_ready()
        if time.perf_counter() - begin >= seconds or n >= 1 << 16:
            break
        n *= 2
    return lambda: slow(a, n)


def test_the_wrapper_does_not_wait_for_the_device(start):
    """The honest check: the step's input is still being computed when the step is called, so the
    step's metrics cannot be ready before it is; the wrapper returns, and run.log has received the
    arrays themselves, while they are still not ready. Any host transfer (float(), np.asarray,
    device_get) or block_until_ready on the caller's thread would have made them ready."""
    run = start()
    enqueued = []
    original_log = run.log

    def spy(data, step=None, commit=None):
        enqueued.append((dict(data), step, [getattr(v, "is_ready", lambda: True)() for v in data.values()]))
        return original_log(data, step=step, commit=commit)

    run.log = spy

    @jax.jit
    def step(m):
        return {"loss": jnp.mean(m), "max": jnp.max(m)}

    tracked = track_step(step, run=run)
    tracked(jnp.ones((384, 384)))  # compile first: compiling happens on the caller and is not the question
    make_slow = _slow_input(0.5)

    slow = make_slow()
    out = tracked(slow)
    # (not a time bound on the call: what waiting for the device would have made ready is not)
    ready_on_return = out["loss"].is_ready()
    assert not ready_on_return and not slow.is_ready(), "the wrapper waited for the device"
    data, logged_step, ready_when_logged = enqueued[-1]
    assert logged_step == 1 and ready_when_logged == [False, False]
    assert data["train/loss"] is out["loss"] and data["train/max"] is out["max"]  # unconverted jax arrays

    run.flush()  # the sender's thread waits for them and converts them
    run.finish()
    history = read(run).history()
    assert history["train/loss"][1] == pytest.approx(float(out["loss"]))
    assert history["train/max"][1] == pytest.approx(float(out["max"]))


def test_compile_metrics_and_a_recompile_alert(start):
    run = start()
    small, again, large, larger = jnp.ones(3), jnp.zeros(3), jnp.ones(4), jnp.ones(5)  # eager ops: before watching
    watcher = watch_compilation(run, warn_after=2)

    @track_step(run=run)
    @jax.jit
    def step(x):
        return {"loss": jnp.sum(x * x)}

    step(small)  # step 0: compiles
    step(again)  # step 1: cached
    step(large)  # step 2: a new shape compiles again
    with pytest.warns(tracklet.TrackletWarning, match=r"jit\(step\) compiled 3 times"):
        step(larger)  # step 3: the third compile passes warn_after=2
    step(larger)  # step 4: cached
    assert watcher.stats()["functions"] == {"jit(step)": 3}
    run.finish()
    assert not watcher.active  # its run finished

    recorded = read(run)
    history = recorded.history()
    counts = {s: c for s, c in zip(history["_step"], history["jax/compile_count"]) if c is not None}
    assert counts == {0: 1, 2: 2, 3: 3}
    last = [v for v in history["jax/last_compile_seconds"] if v is not None]
    total = [v for v in history["jax/compile_seconds"] if v is not None]
    assert all(v > 0 for v in last) and total[-1] == pytest.approx(sum(last))
    assert history["train/loss"] == [3.0, 0.0, 4.0, 5.0, 5.0]
    assert recorded.summary["jax/compile_count"] == 3
    (alert,) = recorded.alerts
    assert alert.level == "WARN" and alert.title == "jit(step) compiled 3 times"
    assert "jax_explain_cache_misses" in alert.text


def test_eager_ops_count_but_do_not_alert(start):
    run = start()
    watch_compilation(run, warn_after=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (6, 7, 8):
            jnp.ones(n) + 1.0  # jit(broadcast_in_dim), jit(add), ... once per new shape
    run.finish()
    recorded = read(run)
    assert recorded.summary["jax/compile_count"] >= 3 and recorded.alerts == []


def test_one_listener_for_the_process_routed_to_the_active_run(start):
    jax_listeners = jax._src.monitoring.get_event_duration_listeners
    before = sum(listener is tj._on_duration_event for listener in jax_listeners())

    follower = watch_compilation()
    assert watch_compilation() is follower  # idempotent
    with pytest.raises(ValueError, match="already watched"):
        watch_compilation(warn_after=9)
    assert sum(listener is tj._on_duration_event for listener in jax_listeners()) == 1

    x = jnp.ones(9)  # eager ops compile too: before the runs
    first = start()
    jax.jit(lambda x: x + 1)(x)
    first.finish()
    second = start()
    jax.jit(lambda x: x - 1)(x)
    assert follower.run is second and follower.stats()["functions"] == {"jit(<lambda>)": 1}
    follower.stop()
    assert sum(listener is tj._on_duration_event for listener in jax_listeners()) == 0
    jax.jit(lambda x: x * 3)(x)  # after stop(): not recorded
    second.finish()
    assert read(first).summary["jax/compile_count"] == 1  # each run counts its own
    assert read(second).summary["jax/compile_count"] == 1
    assert before == 0


def test_a_watcher_given_a_run_wins_over_a_follower_and_goes_quiet_after_finish(start):
    x = jnp.ones(11)
    run = start()
    follower = watch_compilation()
    bound = watch_compilation(run)
    jax.jit(lambda x: x + 2)(x)
    assert bound.stats()["compile_count"] == 1 and follower.stats(run)["compile_count"] == 0
    run.finish()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.jit(lambda x: x + 3)(x)  # the finished run is left alone, no error
    assert not bound.active and bound not in tj._watchers
    assert read(run).summary["jax/compile_count"] == 1


def test_an_exception_in_the_step_propagates_and_the_run_goes_on(start):
    run = start()
    failure = ValueError("nan in batch")

    @track_step(run=run)
    def step(x, fail=False):
        if fail:
            raise failure
        return {"loss": x}

    step(1.0)
    with pytest.raises(ValueError) as raised:
        step(2.0, fail=True)
    assert raised.value is failure
    step(3.0)
    assert not run.finished and not step.owns_run
    step.finish()  # a run it was given: left alone
    assert not run.finished
    run.finish()
    history = read(run).history()
    assert history["_step"] == [0, 1] and history["train/loss"] == [1.0, 3.0]
    assert read(run).state == "finished"


def test_a_run_started_by_the_wrapper_is_owned_and_finished_explicitly(root):
    step = track_step(lambda x: {"loss": x}, project="owned", dir=str(root), settings=QUIET, config={"lr": 0.1})
    assert step.run is None  # nothing starts before the first call
    step(0.5)
    step(0.25)
    run = step.run
    assert step.owns_run and tracklet.run is run and not run.finished
    step.finish()
    assert run.finished
    recorded = read(run)
    assert recorded.state == "finished" and recorded.config == {"lr": 0.1}
    assert recorded.history()["train/loss"] == [0.5, 0.25]
    with pytest.warns(tracklet.TrackletWarning, match="has finished"):
        assert step(9.0) == {"loss": 9.0}  # still runs the step; logs nothing
    with pytest.raises(ValueError, match="not both"):
        track_step(lambda x: x, run=run, project="p")


def test_an_owned_run_is_marked_failed_when_the_with_block_raises(root):
    with pytest.raises(RuntimeError, match="diverged"):
        with track_step(lambda x: {"loss": x}, project="owned", dir=str(root), settings=QUIET) as step:
            step(1.0)
            raise RuntimeError("diverged")
    recorded = read(step.run)
    assert recorded.state == "failed" and "diverged" in recorded.error


def test_without_a_run_it_follows_the_active_run(start):
    @track_step
    def step(x):
        return x, {"loss": x}

    first = start()
    step(1.0)
    step(2.0)
    assert step.run is first and not step.owns_run
    step.finish()
    assert not first.finished
    first.finish()
    second = start()
    step(3.0)  # counts from the new run's step
    second.finish()
    assert read(first).history()["train/loss"] == [1.0, 2.0]
    assert read(second).history()["_step"] == [0] and read(second).history()["train/loss"] == [3.0]


def test_steps_never_go_back_when_other_logging_moves_the_run_ahead(start):
    run = start()
    step = track_step(lambda x: {"loss": x}, run=run)
    step(1.0)
    run.log({"a": 1})  # lands at step 0, advances to 1
    run.log({"b": 2})  # step 1, advances to 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(2.0)  # would be step 1: takes the run's step, 2, instead of being refused
    step(3.0)
    run.finish()
    history = read(run).history()
    assert [(r["_step"], r.get("train/loss")) for r in history.rows()] == [(0, 1.0), (1, None), (2, 2.0), (3, 3.0)]


def test_a_tracked_eval_step_lands_in_the_latest_train_steps_row(start):
    run = start()
    train = track_step(jax.jit(lambda x: {"loss": x.sum()}), run=run)
    evaluate = track_step(jax.jit(lambda x: {"loss": x.mean()}), run=run, prefix="val/")
    x = jnp.arange(4.0)
    for i in range(6):
        train(x + i)
        if i % 3 == 2:
            evaluate(x + i)
    run.finish()
    rows = list(read(run).history().rows())
    assert [r["_step"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert [(r["_step"], r["val/loss"]) for r in rows if "val/loss" in r] == [(2, 3.5), (5, 6.5)]
    assert [r["train/loss"] for r in rows] == [6.0 + 4 * i for i in range(6)]


def test_disabled_mode_is_a_no_op(root):
    run = tracklet.init(mode="disabled")
    watch_compilation(run)
    step = track_step(jax.jit(lambda x: {"loss": x.sum()}), run=run)
    assert float(step(jnp.ones(2))["loss"]) == 2.0
    run.finish()


def test_the_flax_nnx_example_records_its_run(root):
    pytest.importorskip("optax")
    pytest.importorskip("flax")
    example = runpy.run_path(str(EXAMPLE))
    returned = []
    original = example["train_step"]

    def spying_train_step(*args):  # what main()'s tracked step returns, call by call
        returned.append(original(*args))
        return returned[-1]

    example["main"].__globals__["train_step"] = spying_train_step  # main() looks the name up at call time
    run = example["main"](steps=60, eval_every=20, dir=str(root), settings=QUIET)

    recorded = read(run)
    assert recorded.state == "finished" and recorded.config["steps"] == 60
    history = recorded.history()
    assert history["_step"] == list(range(60))
    assert history["train/loss"] == pytest.approx(_floats(returned, "loss"), rel=1e-6)
    assert history["train/grad_norm"] == pytest.approx(_floats(returned, "grad_norm"), rel=1e-6)
    assert np.mean(history["train/loss"][-10:]) < np.mean(history["train/loss"][:10])
    val = {s: v for s, v in zip(history["_step"], history["val/loss"]) if v is not None}
    assert sorted(val) == [19, 39, 59]
    compiled = {s: c for s, c in zip(history["_step"], history["jax/compile_count"]) if c is not None}
    assert 0 in compiled and 19 in compiled  # the train step at step 0, the eval step at 19
    assert recorded.summary["jax/compile_count"] == max(compiled.values())
    assert recorded.alerts == []


def test_the_example_runs_as_a_script(root):
    pytest.importorskip("optax")
    pytest.importorskip("flax")
    from conftest import run_script

    result = run_script(
        f"""
        import sys
        sys.argv = ["flax_nnx_optax.py", "--steps", "5"]
        import runpy
        runpy.run_path({str(EXAMPLE)!r}, run_name="__main__")
        """,
        env={"TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (run,) = tracklet.Api(root).runs("flax-nnx-demo")
    assert f"recorded {run.path}" in result.stdout
    assert run.state == "finished" and run.history()["_step"] == [0, 1, 2, 3, 4]


def test_init_arguments_reach_the_run_and_an_unknown_one_fails_at_once(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    step = track_step(lambda x: {"loss": x}, project="jx", dir=elsewhere, settings=QUIET, name="named",
                      tags=["a", "b"], notes="a note", group="sweep-1", job_type="train")
    step(0.5)
    step.finish()
    run = tracklet.Api(elsewhere).run(f"jx/{step.run.id}")  # dir= (a PathLike) is the data root
    assert (run.name, run.tags, run.notes, run.group, run.job_type) == ("named", ["a", "b"], "a note", "sweep-1",
                                                                       "train")
    assert run.history()["train/loss"] == [0.5] and not (root / "projects").exists()
    with pytest.raises(TypeError, match="track_step\\(\\) got an unexpected keyword argument 'tgas'"):
        track_step(lambda x: x, tgas=["a"])  # at once, not at the first call
