"""tracklet's one torch ``watch`` (``tracklet/core/torch_watch.py``): W&B's ``wandb.watch``
and the Lightning logger's ``watch`` are the same hooks, recording the same histograms."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import tracklet  # noqa: E402
import tracklet.compat.wandb as wandb  # noqa: E402
from tracklet.core.torch_watch import check_arguments  # noqa: E402

from conftest import QUIET  # noqa: E402

STEPS = 6
pytestmark = pytest.mark.filterwarnings("ignore:.*wandb.Settings.*:tracklet.errors.TrackletWarning")


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def train(model: torch.nn.Module) -> list[dict[str, tracklet.Histogram]]:
    """A plain loop; per step, what the watch should have seen (gradients, the values used)."""
    torch.manual_seed(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(torch.randn(16, 4)), torch.randn(16, 1))
        loss.backward()
        step = {}
        for name, param in model.named_parameters():
            step["gradients/" + name] = _recorded(param.grad)
            step["parameters/" + name] = _recorded(param.detach())
        seen.append(step)
        optimizer.step()
        tracklet.run.log({"loss": loss.item()})
    return seen


def _recorded(tensor: torch.Tensor) -> object:
    """What tracklet records for a tensor: a histogram of its values, a float for one value."""
    return tensor.item() if tensor.numel() == 1 else tracklet.Histogram(tensor.numpy())


def watched(root, run_id: str) -> dict[str, dict[int, object]]:
    history = tracklet.Api(root).run(f"w/{run_id}").history()
    return {key: {s: v for s, v in zip(history["_step"], history[key]) if v is not None}
            for key in history if key.startswith(("gradients/", "parameters/", "graph_"))}


def test_wandb_watch_records_every_log_freq_th_step(root):
    model = net()
    run = wandb.init(project="w", id="compat", dir=str(root), settings=QUIET)
    wandb.watch(model, log="all", log_freq=3)
    seen = train(model)
    wandb.unwatch(model)
    train(model)  # nothing more is recorded
    wandb.watch(model, log="gradients", log_freq=100)  # a second call works (wandb.watch stays the function)
    run.finish()
    got = watched(root, "compat")
    assert sorted(got) == sorted(seen[0])
    for key, by_step in got.items():
        assert list(by_step) == [2, 5]  # the 3rd and 6th backward pass, in that step's row
        assert all(by_step[step] == seen[step][key] for step in by_step), key


def test_two_models_are_prefixed_and_the_lightning_logger_records_the_same(root):
    first, second = net(), net()
    run = wandb.init(project="w", id="two", dir=str(root), settings=QUIET)
    wandb.watch([first, second], log="gradients", log_freq=2)
    train(first)
    run.finish()
    got = watched(root, "two")
    assert "graph_0/gradients/0.weight" in got and not any(k.startswith("graph_1") for k in got)  # second never ran

    lightning = pytest.importorskip("lightning.pytorch")
    from tracklet.integrations.lightning import TrackletFabricLogger

    assert lightning
    logger = TrackletFabricLogger(project="w", id="fabric", dir=str(root), settings=QUIET)
    assert logger.experiment is tracklet.run  # started now: the current run, which train() logs to
    model = net()
    logger.watch(model, log="all", log_freq=3)
    train(model)
    logger.finalize("success")
    compat_model = net()
    run = wandb.init(project="w", id="compat2", dir=str(root), settings=QUIET)
    wandb.watch(compat_model, log="all", log_freq=3)
    train(compat_model)
    run.finish()
    assert watched(root, "fabric") == watched(root, "compat2")


def test_arguments_are_checked_by_both():
    for log, freq, message in (("weights", 1, "log must be"), ("all", 0, "log_freq"), ("all", True, "log_freq")):
        with pytest.raises(ValueError, match=message):
            check_arguments(log, freq)


def test_a_sparse_gradient_is_recorded(root):
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    run = wandb.init(project="w", id="sparse", dir=str(root), settings=QUIET)
    wandb.watch(embedding, log="gradients", log_freq=1)
    embedding(torch.tensor([1, 2, 2])).sum().backward()
    run.log({"x": 1})
    run.finish()
    (value,) = watched(root, "sparse")["gradients/weight"].values()
    assert value == tracklet.Histogram(torch.tensor([1.0, 1, 1, 2, 2, 2]).numpy())  # rows 1 and 2, coalesced
