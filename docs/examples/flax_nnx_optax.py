"""Train a tiny MLP with Flax NNX and optax, tracked by tracklet.

    pip install flax optax
    python docs/examples/flax_nnx_optax.py            # then: tracklet show flax-nnx-demo/<run id>

A regression on random data: y = sin(x @ w) + noise, fed as numpy batches. ``track_step`` logs what the jitted train
step returns (train/loss, train/grad_norm) at every step without waiting for the device;
``watch_compilation`` records each XLA compilation (jax/compile_count, jax/compile_seconds) and
warns when a function keeps recompiling. See docs/integrations/jax.md.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import tracklet
from tracklet.integrations.jax import track_step, watch_compilation


class MLP(nnx.Module):
    def __init__(self, din: int, dhidden: int, dout: int, *, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(din, dhidden, rngs=rngs)
        self.out = nnx.Linear(dhidden, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(x)))


def make_data(seed: int, n: int, din: int) -> tuple[np.ndarray, np.ndarray]:
    """Host data, as a data loader would hand it over: numpy arrays, one batch at a time."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(1234).normal(size=(din, 1)) / np.sqrt(din)  # one target function for all splits
    x = rng.normal(size=(n, din)).astype(np.float32)
    y = (np.sin(x @ w) + 0.05 * rng.normal(size=(n, 1))).astype(np.float32)
    return x, y


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    def loss_fn(model: MLP) -> jax.Array:
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)  # updates the model's parameters in place
    return {"loss": loss, "grad_norm": optax.tree.norm(grads)}  # jax arrays: tracklet does not wait for them


@nnx.jit
def eval_step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - y) ** 2)


def main(
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-2,
    eval_every: int = 50,
    seed: int = 0,
    project: str = "flax-nnx-demo",
    **init_kwargs: Any,
) -> tracklet.Run:
    """Train and return the (finished) run; ``init_kwargs`` go to ``tracklet.init`` (dir=, settings=...)."""
    config = {"steps": steps, "batch_size": batch_size, "lr": lr, "hidden": 32, "optimizer": "adam", "seed": seed}
    run = tracklet.init(project=project, config=config, **init_kwargs)
    watch_compilation(run)  # jax/compile_count, jax/compile_seconds, jax/last_compile_seconds, alerts
    step = track_step(train_step, run=run)  # logs train/loss and train/grad_norm at steps 0, 1, 2, ...

    x, y = make_data(seed, n=1024, din=8)
    x_val, y_val = make_data(seed + 1, n=256, din=8)
    model = MLP(8, config["hidden"], 1, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    batches = x.shape[0] // batch_size
    with run:  # finishes the run at the end (marked failed if an exception escapes)
        for i in range(steps):
            start = (i % batches) * batch_size
            step(model, optimizer, x[start : start + batch_size], y[start : start + batch_size])
            if (i + 1) % eval_every == 0:
                # No step=: the value lands in the row of the train step that just ran.
                run.log({"val/loss": eval_step(model, x_val, y_val)})
    return run


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Flax NNX + optax, tracked by tracklet")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-2)
    args = parser.parse_args()
    finished = main(steps=args.steps, lr=args.lr)
    print(f"recorded {finished.path}: tracklet show {finished.path}")
