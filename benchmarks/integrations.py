"""Every framework integration's cost against the same training without it, one after another.

    python benchmarks/integrations.py            # each integration's benchmark, full size
    python benchmarks/integrations.py --short    # fewer steps and rounds

Each integration has its own benchmark (benchmarks/integration_<name>.py), run here in a fresh
process: frameworks are heavy to import, and Keras fixes its backend per process (it runs once on
JAX and once on torch). Figures are summarised in docs/integrations/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (title, script and its arguments, what --short adds)
SUITES = [
    ("Lightning", ["integration_lightning.py"], ["--steps", "150", "--repeats", "2", "--calls", "5000"]),
    ("Hugging Face Trainer", ["integration_huggingface.py"], ["--short"]),
    ("Keras 3, JAX backend", ["integration_keras.py", "--backend", "jax"], ["--short"]),
    ("Keras 3, torch backend", ["integration_keras.py", "--backend", "torch"], ["--short"]),
    ("JAX hook", ["integration_jax.py"], ["--short"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    failed = []
    for title, command, short in SUITES:
        script = HERE / command[0]
        options = command[1:] + (short if args.short else [])
        print(f"\n=== {title} ({script.name} {' '.join(options)}) ===", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(script), *options])
        print(f"--- {time.perf_counter() - started:.0f} s, exit {done.returncode}", flush=True)
        if done.returncode != 0:
            failed.append(title)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
