"""A2's v1 on many cores, estimated on few: how long each process of an online v1 holds its
interpreter lock, and its busiest thread's CPU, per GiB (docs/artifacts.md, "The many-core bound").

    python benchmarks/artifacts_gil.py [--size-mib 256] [--rounds 3] [--work-dir /dev/shm]

A2 asks that v1 of a 1 GiB checkpoint, logged by an online run, go at >= 0.8x the throughput of a
plain copy over loopback. Wall times on a 2-core VM say little about that: with free cores each
stage of the pipeline (read, FastCDC, BLAKE3, sends; the server's receive, checks, writes) runs on
a core of its own, and what remains serial is (a) each process's Python, which runs one thread at
a time under the interpreter lock, and (b) the busiest single thread. So this measures, for v1
(this process as the client, a ``tracklet server --dev`` as the server) and for the plain copy
(one HTTP PUT to ``benchmarks/artifacts.py``'s stdlib receiver, which writes and fsyncs it):

- **lock-held seconds per GiB** of each process: ``py-spy record --gil --nonblocking`` samples
  (a sample counts when a thread of the process holds the lock), divided by the rate;
- **the busiest thread's CPU seconds per GiB** (user + system, from ``psutil``'s per-thread times);
- the **bound** of each arm: the largest of those over its two processes, the wall time per GiB
  the arm cannot beat whatever the core count. ``bound ratio = plain bound / v1 bound`` estimates
  A2's many-core ratio (>= 0.8 is the target), without the disk (say whether ``--work-dir`` is
  on ``/dev/shm``) and without the waits between the stages, so it is an upper estimate.

One untimed warm-up of each arm first, then ``--rounds`` alternating rounds, a fresh project each
(the server lacks every chunk). The processes' top lock holders (innermost frame, share of the
lock-held samples) are printed too: where to cut. Needs ``py-spy`` (``pip install py-spy``) and
the right to attach to a child process (ptrace).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from benchmarks.artifacts import _RECEIVER, QUIET, _plain_put, _process_cpu, _wait_port, _write_large  # noqa: E402
from benchmarks.report import print_table, write_json  # noqa: E402


class LockSampler:
    """``py-spy record --gil`` attached to one process while a block runs: the seconds a thread of
    it held the interpreter lock (samples / rate) and the innermost frames of those samples."""

    def __init__(self, pid: int, out: Path, rate: int) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LockSampler:
        self._proc = subprocess.Popen(
            ["py-spy", "record", "--pid", str(self.pid), "--gil", "--nonblocking", "--rate", str(self.rate),
             "--format", "raw", "--output", str(self.out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)
        _, err = self._proc.communicate(timeout=60)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no samples for pid {self.pid}: {err.decode(errors='replace')}")

    def held(self) -> tuple[float, collections.Counter[str]]:
        """Lock-held seconds, and sample counts per innermost frame."""
        leaves: collections.Counter[str] = collections.Counter()
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            leaves[stack.rsplit(";", 1)[-1]] += int(count)
        return sum(leaves.values()) / self.rate, leaves


def thread_cpu(pid: int) -> dict[int, float]:
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def busiest(before: dict[int, float], after: dict[int, float]) -> float:
    return max((cpu - before.get(tid, 0.0) for tid, cpu in after.items()), default=0.0)


class Arm:
    """One arm's figures over its rounds, per GiB."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: list[dict[str, float]] = []
        self.leaves: dict[str, collections.Counter[str]] = {"client": collections.Counter(),
                                                            "server": collections.Counter()}

    def measure(self, work: Path, peer: int, gib: float, rate: int, action: Any) -> None:
        me = os.getpid()
        number = len(self.rows)
        threads = {"client": thread_cpu(me), "server": thread_cpu(peer)}
        cpu = {"client": _process_cpu([me]), "server": _process_cpu([peer])}
        samplers = {"client": LockSampler(me, work / f"{self.name}{number}-client.txt", rate),
                    "server": LockSampler(peer, work / f"{self.name}{number}-server.txt", rate)}
        with samplers["client"], samplers["server"]:
            time.sleep(0.3)  # py-spy attaches
            started = time.perf_counter()
            action()
            wall = time.perf_counter() - started
            cpu_after = {"client": _process_cpu([me]), "server": _process_cpu([peer])}
            threads_after = {"client": thread_cpu(me), "server": thread_cpu(peer)}
        row = {"wall": wall / gib}
        for side in ("client", "server"):
            held, leaves = samplers[side].held()
            self.leaves[side].update(leaves)
            row[f"{side}_cpu"] = (cpu_after[side] - cpu[side]) / gib
            row[f"{side}_lock"] = held / gib
            row[f"{side}_thread"] = busiest(threads[side], threads_after[side]) / gib
        row["bound"] = max(row[f"{side}_{what}"] for side in ("client", "server") for what in ("lock", "thread"))
        self.rows.append(row)

    def medians(self) -> dict[str, float]:
        return {key: round(statistics.median(row[key] for row in self.rows), 3) for key in self.rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the file, server and receiver write")
    parser.add_argument("--top", type=int, default=8, help="lock holders to print per process")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("needs py-spy on PATH: pip install py-spy")

    import tracklet
    from serverproc import Server, _free_port

    work = Path(tempfile.mkdtemp(prefix="tracklet-bench-gil-", dir=args.work_dir))
    source = work / "v1.ckpt"
    _write_large(source, args.size_mib << 20)
    gib = source.stat().st_size / (1 << 30)
    received = work / "received"
    received.mkdir()
    port = _free_port()
    receiver = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(port), str(received), "1"])
    server = Server(work / "server")
    server.spawn()
    arms = {"v1": Arm("v1"), "plain": Arm("plain")}
    load_before = os.getloadavg()
    try:
        server.wait_ready(timeout=180)
        assert server.proc is not None
        _wait_port(port)

        def log_v1(project: str, path: Path) -> None:
            run = tracklet.init(project=project, dir=str(work / project), mode="online",
                                settings={**QUIET, "base_url": server.url})
            artifact = tracklet.Artifact("checkpoint", "model")
            artifact.add_file(path, name="model.ckpt")
            timed = arms["v1"].measure if project.startswith("round") else None
            if timed is None:
                run.log_artifact(artifact).wait()
            else:
                timed(work, server.proc.pid, gib, args.rate, lambda: run.log_artifact(artifact).wait())
            if artifact.upload_error is not None:
                raise RuntimeError(f"the upload failed: {artifact.upload_error}")
            run.finish()
            shutil.rmtree(work / project)

        def plain(name: str) -> None:
            _plain_put(f"http://127.0.0.1:{port}/{name}", source)
            (received / name).unlink()

        log_v1("warm", source)  # imports, connections, the server's threads and buffers: untimed
        plain("warm")
        for number in range(args.rounds):
            order = ("v1", "plain") if number % 2 == 0 else ("plain", "v1")
            for arm in order:
                os.sync()
                if arm == "v1":
                    log_v1(f"round{number}", source)
                else:
                    arms["plain"].measure(work, receiver.pid, gib, args.rate, lambda n=number: plain(f"copy{n}"))
    finally:
        server.stop()
        receiver.terminate()
        receiver.wait(timeout=10)
    medians = {name: arm.medians() for name, arm in arms.items()}
    report: dict[str, Any] = {
        "size_mib": args.size_mib, "rounds": args.rounds, "work_dir": str(work.parent),
        "load_before": load_before, "load_after": os.getloadavg(), "medians_per_gib": medians,
        "bound_ratio": round(medians["plain"]["bound"] / medians["v1"]["bound"], 3),
        "wall_ratio": round(medians["plain"]["wall"] / medians["v1"]["wall"], 3),
        "rounds_per_gib": {name: arm.rows for name, arm in arms.items()}}
    keys = ["wall", "bound", "client_lock", "client_thread", "client_cpu", "server_lock", "server_thread", "server_cpu"]
    print_table([[name, *(medians[name][key] for key in keys)] for name in arms],
                header=["s per GiB (median)", *keys])
    print(f"bound ratio (plain / v1): {report['bound_ratio']}   wall ratio on this machine: {report['wall_ratio']}")
    for side, role in (("client", "client (this process)"), ("server", "server")):
        leaves = arms["v1"].leaves[side]
        total = sum(leaves.values()) or 1
        print(f"\nv1 {role}: where the lock is held (innermost frame, share of {total} samples)")
        for frame, count in leaves.most_common(args.top):
            print(f"  {100 * count / total:5.1f}%  {frame[:140]}")
        report[f"v1_{side}_lock_holders"] = {frame: count for frame, count in leaves.most_common(args.top)}
    write_json(args.json, report)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
