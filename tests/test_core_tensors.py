"""torch and jax values: converted on the sender's thread, never on the caller's."""

from __future__ import annotations

import threading
from typing import ClassVar

import numpy as np
import pytest

from tracklet.core.values import Histogram

from conftest import read, run_script

torch = pytest.importorskip("torch")


class SpyTensor(torch.Tensor):
    """Records the thread of every torch operation performed on it."""

    threads: ClassVar[list[str]] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.threads.append(threading.current_thread().name)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_torch_tensors_become_scalars_and_histograms(start):
    run = start()
    weights = torch.linspace(-1, 1, 201)
    run.log({
        "loss": torch.tensor(0.25, requires_grad=True) * 2,
        "count": torch.tensor(7),
        "flag": torch.tensor(True),
        "half": torch.tensor(1.5, dtype=torch.bfloat16),
        "single": torch.tensor([3.0]),
        "weights": weights.reshape(3, 67),
    })
    run.finish()
    history = read(run).history()
    assert history["loss"] == [0.5] and history["count"] == [7] and history["flag"] == [True]
    assert history["half"] == [1.5] and history["single"] == [3.0]
    (hist,) = history["weights"]
    assert isinstance(hist, Histogram) and sum(hist.counts) == 201
    assert hist.edges[0] == -1.0 and hist.edges[-1] == 1.0


def test_log_does_not_touch_a_tensor_on_the_callers_thread(start):
    run = start()
    value = torch.tensor(0.5).as_subclass(SpyTensor)
    matrix = torch.ones(4, 4).as_subclass(SpyTensor)
    SpyTensor.threads.clear()
    run.log({"value": value, "matrix": matrix})
    on_caller = list(SpyTensor.threads)
    run.flush()
    assert on_caller == []  # no .item(), .cpu() or anything else inside log()
    assert SpyTensor.threads and all(name.startswith("tracklet-sender") for name in SpyTensor.threads)
    run.finish()
    history = read(run).history()
    assert history["value"] == [0.5] and sum(history["matrix"][0].counts) == 16


def test_a_tensor_that_fails_to_convert_is_reported_and_dropped(start):
    import tracklet

    run = start()
    with pytest.warns(tracklet.TrackletWarning, match="'complex'"):
        run.log({"complex": torch.tensor([1 + 2j, 3 + 4j]), "ok": 1.0})
        run.flush()
    run.finish()
    history = read(run).history()
    assert history["ok"] == [1.0] and "complex" not in history


def test_jax_arrays(start):
    jnp = pytest.importorskip("jax.numpy")
    run = start()
    run.log({"scalar": jnp.float32(0.5), "zero_d": jnp.array(2), "vector": jnp.arange(10.0)})
    run.finish()
    history = read(run).history()
    assert history["scalar"] == [0.5] and history["zero_d"] == [2]
    assert sum(history["vector"][0].counts) == 10


def test_import_tracklet_loads_no_framework_numpy_or_protobuf():
    done = run_script(
        """
        import sys, tracklet
        heavy = ("torch", "jax", "tensorflow", "transformers", "lightning", "keras", "numpy", "google.protobuf")
        print(sorted(m for m in heavy if m in sys.modules))
        """,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_starting_a_run_still_loads_no_framework(root):
    done = run_script(
        f"""
        import sys, tracklet
        run = tracklet.init(project="light", dir={str(root)!r})
        run.log({{"a": 1.0}})
        run.finish()
        print(sorted(m for m in ("torch", "jax", "tensorflow", "transformers", "lightning") if m in sys.modules))
        """,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_numpy_arrays_logged_then_mutated_follow_the_documented_lifetime_rule(start):
    """Arrays are read on the worker: a copy logged is safe whatever happens to the original."""
    run = start()
    buffer = np.zeros(8)
    run.log({"snapshot": buffer.copy()})
    buffer += 100
    run.finish()
    (hist,) = read(run).history()["snapshot"]
    assert sum(hist.counts) == 8 and hist.edges[0] <= 0.0 <= hist.edges[-1] < 1.0
