"""``tracklet demo``: a fake but realistic training run, recorded through the public API."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from tracklet.cli.common import _handle_errors, _require_server_extra, _state
from tracklet.cli.serve import ui


def record_demo(
    root: Path | str, project: str = "demo", steps: int = 300, name: str | None = None, seed: int = 0
) -> Any:
    """Record a fake but realistic training run through the public API; returns the finished run.

    Logs ``train/loss`` (decaying, noisy, with a spike), ``train/lr`` (linear warmup then cosine
    decay), ``train/grad_norm``, an integer ``epoch`` every step; ``eval/loss`` and ``eval/acc``
    twice an epoch; a histogram of fake weights (``weights/fc1``) once an epoch; and prints a line
    per epoch (captured as console output).
    """
    import random

    import numpy as np

    import tracklet

    epochs = 6 if steps >= 6 else steps
    steps_per_epoch = max(1, math.ceil(steps / epochs))
    eval_every = max(1, steps_per_epoch // 2)
    warmup = max(1, steps // 10)
    peak_lr, min_lr = 3e-3, 1e-5
    config = {
        "model": "mlp-3x512",
        "dataset": "fake-mnist",
        "optimizer": {"name": "adamw", "lr": peak_lr, "weight_decay": 0.01, "betas": [0.9, 0.999]},
        "schedule": {"warmup_steps": warmup, "decay": "cosine", "min_lr": min_lr},
        "batch_size": 128,
        "epochs": epochs,
        "steps": steps,
        "seed": seed,
    }
    rng = random.Random(seed)
    weights_rng = np.random.default_rng(seed)
    spike_steps = {int(steps * 0.42)} | {s for s in range(steps) if rng.random() < 0.004}

    run = tracklet.init(project=project, name=name, config=config, dir=str(root), tags=["demo"],
                        notes="Recorded by `tracklet demo`: fake training, real tracking.")
    with run:
        run.define_metric("eval/loss", summary="min")
        run.define_metric("eval/acc", summary="max")
        print(f"demo: training {config['model']} on {config['dataset']} for {steps} steps ({epochs} epochs)")
        smooth = None
        for step in range(steps):
            progress = step / max(1, steps - 1)
            if step < warmup:
                lr = peak_lr * (step + 1) / warmup
            else:
                decay = (step - warmup) / max(1, steps - warmup)
                lr = min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * decay))
            clean = 0.12 + 2.18 * math.exp(-3.5 * progress)
            loss = clean * (1 + 0.08 * rng.gauss(0, 1))
            grad_norm = (0.4 + 1.5 * clean) * (1 + 0.1 * rng.gauss(0, 1))
            if step in spike_steps:
                factor = rng.uniform(2.5, 4.0)
                loss *= factor
                grad_norm *= 3 * factor
                print(f"warning: loss spike at step {step}: {loss:.3f} (grad norm {grad_norm:.1f})", file=sys.stderr)
            smooth = loss if smooth is None else 0.9 * smooth + 0.1 * loss
            epoch = step // steps_per_epoch
            row: dict[str, Any] = {
                "train/loss": loss,
                "train/lr": lr,
                "train/grad_norm": grad_norm,
                "epoch": epoch,
            }
            last_of_epoch = (step + 1) % steps_per_epoch == 0 or step == steps - 1
            if (step + 1) % eval_every == 0 or step == steps - 1:
                eval_loss = clean * 1.08 + 0.02 * rng.gauss(0, 1)
                accuracy = min(1.0, max(0.0, 0.985 - 0.88 * math.exp(-4.0 * progress) + 0.006 * rng.gauss(0, 1)))
                row["eval/loss"] = eval_loss
                row["eval/acc"] = accuracy
            if step % steps_per_epoch == 0 or step == steps - 1:
                spread = 0.05 + 0.25 * (1 - math.exp(-2.0 * progress))
                row["weights/fc1"] = weights_rng.normal(0.0, spread, size=4096)
            run.log(row)
            if last_of_epoch:
                line = f"epoch {epoch + 1}/{epochs}: train/loss {smooth:.4f}"
                if "eval/acc" in row:
                    line += f"  eval/loss {row['eval/loss']:.4f}  eval/acc {row['eval/acc']:.3f}"
                print(line)
        print("demo: done")
    return run


# ---------------------------------------------------------------- the command


@click.command()
@click.option("--project", default="demo", show_default=True, help="Project to record the run in.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1, 1_000_000), help="Training steps.")
@click.option("--name", default=None, help="Run name (default: a generated one).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed for the fake training.")
@click.option("--ui", "open_ui", is_flag=True, help="Then serve the dashboard (`tracklet ui`) and open it in a browser.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="With --ui: the dashboard's loopback port (0: any free port).")
@click.option("--no-open", "no_open", is_flag=True, help="With --ui: don't open a browser; just print the URL.")
@click.pass_context
@_handle_errors
def demo(ctx: click.Context, project: str, steps: int, name: str | None, seed: int, open_ui: bool, port: int,
         no_open: bool) -> None:
    """Record a realistic demo training run, then say how to inspect it (with --ui: open the dashboard)."""
    if open_ui:
        _require_server_extra("tracklet demo --ui")
    state = _state(ctx)
    run = record_demo(state.api.root, project=project, steps=steps, name=name, seed=seed)
    prefix = state.command_prefix()
    click.echo(f"Recorded demo run {run.path} ({run.name!r}): {steps} steps")
    click.echo(f"Stored in {run.dir}")
    click.echo("Inspect it with:")
    if not open_ui:  # with --ui the dashboard comes next
        click.echo(f"  {prefix} ui                 # the dashboard, in a browser")
    click.echo(f"  {prefix} show {run.path}")
    click.echo(f"  {prefix} export {run.path} --format csv -o {shlex.quote(run.id + '.csv')}")
    click.echo(f"  {prefix} runs {shlex.quote(project)}")
    if open_ui:
        ctx.invoke(ui, port=port, no_open=no_open, ui_dir=None, no_token=False)
