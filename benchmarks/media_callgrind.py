"""Instructions the caller's thread executes per step (callgrind), where wall clocks can't decide:
``log({"x": 1.0})``, ``tracklet.Image(uint8 224×224×3)`` alone, ``log({"img": Image(...)})``, and
``log({"img": Image(..., copy=False)})`` (no copy: README's lifetime rule).

    python benchmarks/media_callgrind.py [--steps 200] [--baseline OLD_CHECKOUT]

Each measure is a fresh ``valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes``
process (``PYTHONHASHSEED=0``): the run starts, 30 warm-up steps go by (key sets known, buffers
mapped, the media worker started), then instrumentation is switched on (``callgrind_control -i
on``) for ``--steps`` steps, and the main thread's instructions (Ir) are divided by the steps. The
worker threads' instructions (encoding) are in other files and not counted.

The copy is ``rep movsb`` (glibc's memcpy on these CPUs), which callgrind counts once per byte:
150,528 Ir of each image step are the copy; the rest is the Python path. ``--baseline``: the same
measures on another checkout (``git archive main | tar -x -C DIR``), old and new alternating.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("float", "ctor", "img", "img_copy_false")
IMAGE_BYTES = 224 * 224 * 3


def _child(mode: str, steps: int, flag: str) -> None:
    import numpy as np

    import tracklet

    run = tracklet.init(project="callgrind", dir=tempfile.mkdtemp(),
                        settings={"console": "off", "capture_environment": False, "system_metrics": False})
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    image = tracklet.Image
    for _ in range(30):
        run.log({"img": image(pixels)})
        run.log({"x": 1.0})
    run.flush()
    time.sleep(0.5)
    kept: list = []
    Path(flag + ".ready").touch()
    while not os.path.exists(flag + ".go"):
        time.sleep(0.01)
    for _ in range(steps):
        if mode == "float":
            run.log({"x": 1.0})
        elif mode == "ctor":
            kept.append(image(pixels))
            if len(kept) > 8:
                kept.clear()
        elif mode == "img":
            run.log({"img": image(pixels)})
        else:
            run.log({"img": image(pixels, copy=False)})
    os._exit(0)


def measure(checkout: Path, mode: str, steps: int) -> int:
    """The main thread's instructions per step."""
    with tempfile.TemporaryDirectory(prefix="tracklet-callgrind-") as tmp:
        out, flag = f"{tmp}/cg.out", f"{tmp}/flag"
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(checkout)}
        child = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
             f"--callgrind-out-file={out}", sys.executable, str(Path(__file__).resolve()), "--child", mode,
             "--steps", str(steps), "--flag", flag], env=env, cwd=checkout,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(flag + ".ready"):
            if child.poll() is not None:
                raise SystemExit(f"the callgrind child ({mode}) ended early")
            time.sleep(0.2)
        subprocess.run(["callgrind_control", "-i", "on", str(child.pid)], check=True, capture_output=True)
        Path(flag + ".go").touch()
        child.wait(timeout=1800)
        totals = next(line for line in Path(out + "-01").read_text().splitlines() if line.startswith("totals:"))
        return int(totals.split()[1]) // steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--baseline", type=Path, help="another checkout, measured alternately")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--flag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.steps, args.flag)
        return
    sides = [("new", ROOT)] + ([("old", args.baseline.resolve())] if args.baseline else [])
    for mode in MODES:
        cells = []
        for name, checkout in sides:
            ir = measure(checkout, mode, args.steps)
            copy = f" ({ir - IMAGE_BYTES:,} without the copy)" if mode in ("ctor", "img") else ""
            cells.append(f"{name} {ir:,}{copy}")
        print(f"{mode:6s} Ir per step, main thread: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
