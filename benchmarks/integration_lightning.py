"""What the Lightning logger costs a training loop, on the CPU.

    python benchmarks/integration_lightning.py [--steps 400] [--repeats 3] [--json FILE]

Measures:
- ``log_metrics`` per call (6 floats, as Lightning passes them after ``.item()``), median and
  p99, for ``TrackletLogger`` and, for reference, Lightning's own ``CSVLogger``;
- a whole ``Trainer.fit`` of a small MLP (``log_every_n_steps=1``, the worst case) per step, with
  ``logger=False``, ``CSVLogger`` and ``TrackletLogger``; the slowdown is against ``logger=False``,
  best of ``--repeats`` runs interleaved;
- ``watch(model, log="all", log_freq=100)``: the per-step cost of the hooks (median step with and
  without watch), and the time one backward with the hooks cloning every tensor takes;
- ``finalize("success")`` (the run's ``finish()``) after the fit.
Targets: log_metrics <= 10 us; fit slowdown with TrackletLogger <= 5 %; watch <= 5 % per step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import print_table, write_json  # noqa: E402

import torch  # noqa: E402
import lightning as L  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from tracklet.integrations.lightning import TrackletLogger  # noqa: E402

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}
METRICS = {"train_loss": 0.5, "train_acc": 0.9, "lr": 3e-4, "grad_norm": 1.2, "throughput": 950.0, "epoch": 0}


class MLP(L.LightningModule):
    def __init__(self, width: int = 256) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                       torch.nn.ReLU(), torch.nn.Linear(width, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._start)


def loader(steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(steps * 32, 64, generator=generator)
    data = TensorDataset(inputs, torch.randn(steps * 32, 1, generator=generator))
    return DataLoader(data, batch_size=32)


def log_metrics_cost(logger, calls: int) -> dict[str, float]:
    costs = []
    for step in range(calls):
        started = time.perf_counter()
        logger.log_metrics(METRICS, step=step)
        costs.append(time.perf_counter() - started)
    costs.sort()
    return {"median_us": statistics.median(costs) * 1e6, "p99_us": costs[int(len(costs) * 0.99)] * 1e6}


def fit_step_times(make_logger, steps: int, root: Path, watch: str | None = None) -> tuple[list[float], object]:
    torch.manual_seed(0)
    model = MLP()
    logger = make_logger()
    if watch is not None:
        logger.watch(model, log=watch, log_freq=100)
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, logger=logger, callbacks=[timer],
                        default_root_dir=root)
    trainer.fit(model, loader(steps))
    return timer.times[10:], logger  # the first steps warm up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="training steps per fit")
    parser.add_argument("--repeats", type=int, default=3, help="fits per logger, interleaved")
    parser.add_argument("--calls", type=int, default=20_000, help="log_metrics calls")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tracklet_logger = TrackletLogger(project="bench", dir=str(root / "data"), settings=QUIET)
        results["log_metrics_tracklet"] = log_metrics_cost(tracklet_logger, args.calls)
        tracklet_logger.finalize("success")
        results["log_metrics_csv"] = log_metrics_cost(CSVLogger(root / "csv"), args.calls)

        makers = {
            "none": lambda: False,
            "csv": lambda: CSVLogger(root / "csv"),
            "tracklet": lambda: TrackletLogger(project="bench", dir=str(root / "data"), settings=QUIET),
        }
        medians: dict[str, list[float]] = {name: [] for name in makers}
        finish_ms = []
        for _ in range(args.repeats):
            for name, make in makers.items():
                times, logger = fit_step_times(make, args.steps, root)
                medians[name].append(statistics.median(times))
                if name == "tracklet":
                    # Lightning already called finalize; time a fresh finish of a resumed run.
                    started = time.perf_counter()
                    logger.log_metrics({"x": 1.0})
                    logger.finalize("success")
                    finish_ms.append((time.perf_counter() - started) * 1000)
        best = {name: min(values) for name, values in medians.items()}
        results["fit"] = {
            "step_us": {name: value * 1e6 for name, value in best.items()},
            "slowdown_pct": {name: (value / best["none"] - 1) * 100 for name, value in best.items() if name != "none"},
            "reopen_and_finish_ms": statistics.median(finish_ms),
        }

        plain, watched = [], []
        logging_steps = []
        for _ in range(args.repeats):
            times, _ = fit_step_times(makers["tracklet"], args.steps, root)
            plain.append(statistics.median(times))
            times, _ = fit_step_times(makers["tracklet"], args.steps, root, watch="all")
            watched.append(statistics.median(times))
            # steps 99, 199, ...: the steps whose hooks clone every gradient and parameter
            logging_steps.extend(times[s - 10] for s in range(99, args.steps, 100) if s >= 10)
        results["watch"] = {
            "step_us": min(plain) * 1e6,
            "watched_step_us": min(watched) * 1e6,
            "slowdown_pct": (min(watched) / min(plain) - 1) * 100,
            "logging_step_us": statistics.median(logging_steps) * 1e6 if logging_steps else None,
        }

    rows = [
        ("log_metrics() median, 6 floats: tracklet", f"{results['log_metrics_tracklet']['median_us']:.2f} us",
         "<= 10 us"),
        ("log_metrics() p99: tracklet", f"{results['log_metrics_tracklet']['p99_us']:.2f} us", ""),
        ("log_metrics() median: CSVLogger", f"{results['log_metrics_csv']['median_us']:.2f} us", "(reference)"),
        ("fit step, logger=False", f"{results['fit']['step_us']['none']:.0f} us", ""),
        ("fit step slowdown: CSVLogger", f"{results['fit']['slowdown_pct']['csv']:.2f} %", "(reference)"),
        ("fit step slowdown: TrackletLogger", f"{results['fit']['slowdown_pct']['tracklet']:.2f} %", "<= 5 %"),
        ("watch(log='all', log_freq=100) step slowdown", f"{results['watch']['slowdown_pct']:.2f} %", "<= 5 %"),
        ("a step whose hooks clone (every 100th)",
         f"{results['watch']['logging_step_us']:.0f} us" if results["watch"]["logging_step_us"] else "-", ""),
        ("resume + finalize('success')", f"{results['fit']['reopen_and_finish_ms']:.1f} ms", ""),
    ]
    print_table(rows)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
