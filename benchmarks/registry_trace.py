"""Where an alias move's slow requests wait: ``benchmarks/registry_move.py --trace`` (issue #18).

The server (and its delivery process: ``-f``) runs under ``strace --seccomp-bpf``, which stops
only at the system calls asked for, so the moves keep their speed but for those:

- SQLite's busy-handler sleeps: ``usleep`` is ``clock_nanosleep(CLOCK_REALTIME, 0, ...)``
  (Python's ``time.sleep`` is ``CLOCK_MONOTONIC`` with ``TIMER_ABSTIME``, never counted);
- ``fdatasync``/``fsync``: a checkpoint (a COMMIT with ``synchronous=NORMAL`` in WAL never syncs);
- blocking ``flock(LOCK_EX)``: a writer waiting at the write gate for another process's writer
  (``server/write_gate.py``; its ``LOCK_NB`` tries and unlocks are not waits).

``analyse`` reads the log beside each move's wall-clock interval: how many of each there were,
in which threads (the server's request threads, its checkpoint thread, which names itself, the
delivery process), and how many of the slowest
moves overlap one on a server thread (session 11 found 4-5 of the 5 slowest on busy sleeps).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SYSCALLS = "trace=clock_nanosleep,nanosleep,fdatasync,fsync,flock"
# "<tid> <unix time> <call>(<args>) = <result> <<seconds>>" (strace -f -ttt -T), whole calls only
_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+).*<(\d+\.\d+)>$")


def thread_name(pid: int, tid: int) -> str:
    """The kernel's name of a thread (the checkpoint thread names itself: its fsyncs are not a move's)."""
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except OSError:
        return ""


def command(log: Path) -> list[str]:
    """The prefix that runs the server under strace, writing ``log``."""
    return ["strace", "-f", "--seccomp-bpf", "-qq", "-y", "-ttt", "-T", "-e", SYSCALLS, "-o", str(log)]


@dataclass
class Wait:
    tid: int
    kind: str  # "busy sleep", "fsync", "gate"
    start: float
    seconds: float


@dataclass
class Trace:
    waits: list[Wait] = field(default_factory=list)


def parse(log: Path) -> Trace:
    """The waits in an strace log (``command``); calls strace split in two (resumed) are skipped."""
    trace = Trace()
    for line in log.read_text(errors="replace").splitlines():
        found = _LINE.match(line)
        if found is None:
            continue
        tid, start, call, args, _, seconds = found.groups()
        if call in ("clock_nanosleep", "nanosleep"):
            if call == "clock_nanosleep" and not args.startswith("CLOCK_REALTIME, 0"):
                continue
            kind = "busy sleep"
        elif call in ("fdatasync", "fsync"):
            kind = "fsync"
        elif call == "flock" and "LOCK_EX" in args and "LOCK_NB" not in args:
            kind = "gate"
        else:
            continue
        trace.waits.append(Wait(int(tid), kind, float(start), float(seconds)))
    return trace


def analyse(trace: Trace, groups: dict[str, set[int]], moves: Sequence[tuple[float, float]],
            slowest: int = 5) -> dict[str, float]:
    """Counts of each wait during the moves in each group of threads (``groups``: a name, e.g.
    "server", "delivery", "checkpoint", and its thread ids; the first is the one that answers
    the moves), and how many of the ``slowest`` moves (``(start, end)`` Unix times) overlap one
    on the first group's threads (any kind), or a busy sleep there."""
    begin, end = min(move[0] for move in moves), max(move[1] for move in moves)
    waits = [wait for wait in trace.waits if begin <= wait.start <= end]  # not the start-up's
    result: dict[str, float] = {}
    for kind in ("busy sleep", "fsync", "gate"):
        for who, tids in groups.items():
            found = [wait for wait in waits if wait.tid in tids and wait.kind == kind]
            result[f"{kind}: {who}"] = len(found)
            result[f"{kind}: {who}, ms"] = round(sum(wait.seconds for wait in found) * 1000, 1)
    answering = next(iter(groups.values()))
    on_server = [wait for wait in waits if wait.tid in answering]

    def overlaps(move: tuple[float, float], kinds: tuple[str, ...]) -> bool:
        return any(wait.kind in kinds and wait.start < move[1] and wait.start + wait.seconds > move[0]
                   for wait in on_server)

    worst = sorted(moves, key=lambda move: move[1] - move[0], reverse=True)[:slowest]
    result[f"slowest {slowest} moves overlapping a wait on a request thread"] = sum(
        overlaps(move, ("busy sleep", "fsync", "gate")) for move in worst)
    result[f"slowest {slowest} moves overlapping a busy sleep there"] = sum(overlaps(move, ("busy sleep",))
                                                                            for move in worst)
    return result
