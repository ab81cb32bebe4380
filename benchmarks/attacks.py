"""Issue #12's attacks, rerun: what was tried, what was lost, what failed.

    python -m benchmarks.attacks                  # the issue's counts (--scale full), ~8 CPU minutes
    python -m benchmarks.attacks --scale quick    # a small count of each, about a minute
    python -m benchmarks.attacks --only kill,corruption --json out.json
    python -m benchmarks.attacks --only mutated --set mutated=10000   # one count changed

Each attack class is the harness its tests run at a bounded count (tests/hardening_logs.py,
tests/hardening_server.py; tests/test_hardening_attacks.py and tests/test_hardening_corruption.py
call the same functions), here at the counts of the issue's original attack:

* ``kill``: SIGKILL of a logging process, each resuming the same run (24);
* ``corruption``: seeded damaged record logs (bit flips, zeroed ranges, truncations, a zeroed
  header, crafted frames under an intact checksum) read by replay, ``Api.run``, ``tracklet runs``,
  ``show``, ``export``, ``index`` and the store, against the oracle of the intact frames (240);
* ``concurrency``: processes logging into one project (~2,000 rows/s each, for 30 s) while
  another process indexes in a loop and this one queries (18 processes);
* ``bad-values``: the 22 kinds of value that once cost a batch, a run or the training loop;
* ``server-kill``: SIGKILL of a real server while ``SyncClient`` uploads, then a restart (39);
* ``auth``: every route with no key, a wrong scheme, a malformed, wrong, revoked or disabled
  user's key, and every project route with a non-member's key (the issue's ~200, here every route);
* ``traversal``: traversal payloads in each path parameter of every route and in file names;
* ``filters``: SQL-injection shaped filters and seeded token soups (SQLite and PostgreSQL);
* ``slowloris``: 1,000 connections with unfinished headers to a server limited to 1,024 files;
* ``mutated``: logs with one frame's payload mutated under a valid CRC, through the fuzz
  target's check (51,448), and the coverage-guided fuzzer itself (atheris, bounded);
* ``nul``: NUL in every text field a run records, indexed on PostgreSQL (and SQLite);
* ``huge-upload``: huge key ids, frames announcing up to 4 GiB, over-limit and gzip-bomb bodies;
* ``full-disk``: a run logging into a 1 MiB tmpfs (root only; skipped with a message otherwise).

``lost``: data logged that a reader could not read back, rows lost or duplicated, or a request let
through that should have been refused; ``failed``: a reader, the CLI or the server raised, answered
5xx, exited non-zero, hung or grew past its memory bound. Every problem is printed above the table.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.report import print_table, write_json  # noqa: E402

SCALES: dict[str, dict[str, Any]] = {
    "full": {"kills": 24, "corruption": 240, "every_reader": None, "processes": 18, "seconds": 30,
             "server_kills": 39, "filters": 500, "connections": 1000, "nofile": 1024, "mutated": 51_448,
             "fuzz_runs": 2000},
    "quick": {"kills": 3, "corruption": 40, "every_reader": 8, "processes": 4, "seconds": 5,
              "server_kills": 2, "filters": 100, "connections": 300, "nofile": 256, "mutated": 1000,
              "fuzz_runs": 300},
}


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def attacks(scale: dict[str, Any], tmp: Path, postgres: str | None) -> dict[str, Callable[[], list[Any]]]:
    """Attack name -> a callable running it, returning its outcomes (hardening_logs.Outcome)."""
    import hardening_logs as logs
    import hardening_server as server

    def fresh(name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))

    def database(name: str) -> str:
        from pgcluster import create_database

        assert postgres is not None
        return create_database(postgres, name)

    def with_postgres(sqlite: Callable[[], Any], pg: Callable[[], Any]) -> list[Any]:
        return [sqlite()] + ([pg()] if postgres else [])

    return {
        "kill": lambda: [logs.kill_attack(fresh("kill") / "data", scale["kills"])],
        "corruption": lambda: [logs.corruption_attack(scale["corruption"], fresh("corruption"),
                                                      every_reader=scale["every_reader"])],
        "concurrency": lambda: [logs.concurrency_attack(fresh("crowd") / "data", scale["processes"],
                                                        scale["seconds"])],
        "bad-values": lambda: [logs.bad_value_attack(fresh("bad") / "data")],
        "server-kill": lambda: [server.server_kill_attack(fresh("ingest") / "data", scale["server_kills"])],
        "auth": lambda: [server.auth_bypass_attack(fresh("auth"))],
        "traversal": lambda: [server.traversal_attack(fresh("traversal"))],
        "filters": lambda: with_postgres(
            lambda: server.filter_injection_attack(fresh("filters"), scale["filters"]),
            lambda: server.filter_injection_attack(fresh("filters-pg"), scale["filters"], database("filters"))),
        "slowloris": lambda: [server.slowloris_attack(fresh("slowloris"), scale["connections"], scale["nofile"])],
        "mutated": lambda: [logs.mutated_log_attack(scale["mutated"], fresh("mutated")),
                            logs.atheris_fuzz(scale["fuzz_runs"], fresh("fuzz"))],
        "nul": lambda: with_postgres(
            lambda: server.nul_fields_attack(fresh("nul") / "data", f"sqlite:///{fresh('nul-db')}/store.sqlite"),
            lambda: server.nul_fields_attack(fresh("nul-pg") / "data", database("nul"))),
        "huge-upload": lambda: with_postgres(
            lambda: server.huge_upload_attack(fresh("huge")),
            lambda: server.huge_upload_attack(fresh("huge-pg"), store=database("huge"))),
        "full-disk": lambda: [logs.full_disk_attack(fresh("disk"))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--only", help="comma-separated attack names (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=COUNT",
                        help="override one count of the scale, e.g. --set mutated=10000 (names: full scale's keys)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    scale = dict(SCALES[args.scale])
    for setting in args.set:
        name, _, value = setting.partition("=")
        if name not in scale or not value.isdigit():
            parser.error(f"--set {setting}: expected NAME=COUNT with NAME one of {', '.join(scale)}")
        scale[name] = int(value)
    os.environ.setdefault("TRACKLET_DIR", tempfile.mkdtemp(prefix="tracklet-attacks-root-"))
    tmp = Path(tempfile.mkdtemp(prefix="tracklet-attacks-"))

    import contextlib
    import shutil

    from pgcluster import Unavailable, postgres_cluster

    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        try:
            postgres: str | None = stack.enter_context(postgres_cluster())
        except (Unavailable, RuntimeError) as why:
            print(f"PostgreSQL attacks skipped: {why}", file=sys.stderr)
            postgres = None
        table = attacks(scale, tmp, postgres)
        names = args.only.split(",") if args.only else list(table)
        unknown = set(names) - set(table)
        if unknown:
            parser.error(f"unknown attack(s): {', '.join(sorted(unknown))} (known: {', '.join(table)})")
        for name in names:
            cpu, wall = _cpu(), time.monotonic()
            try:
                outcomes = table[name]()
            except Exception as error:  # noqa: BLE001 - a harness that could not finish is a failure
                import hardening_logs

                broken = hardening_logs.Outcome(name)
                broken.fail(f"the attack did not finish: {type(error).__name__}: {error}")
                outcomes = [broken]
            cpu, wall = _cpu() - cpu, time.monotonic() - wall
            for index, outcome in enumerate(outcomes):
                for problem in outcome.problems:
                    print(f"[{outcome.name}] {problem}", flush=True)
                rows.append([outcome.name, outcome.tried, outcome.lost, outcome.failed,
                             f"{cpu:.0f}" if index == 0 else "", outcome.note])
                results.append({"attack": name, "class": outcome.name, "tried": outcome.tried, "lost": outcome.lost,
                                "failed": outcome.failed, "cpu_s": cpu if index == 0 else None,
                                "wall_s": wall if index == 0 else None, "note": outcome.note,
                                "problems": outcome.problems})
            counts = "; ".join(f"{o.name}: tried {o.tried}, lost {o.lost}, failed {o.failed}" for o in outcomes)
            print(f"{name}: {counts} ({wall:.0f} s wall, {cpu:.0f} s CPU)", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print()
    print_table(rows, header=["attack class", "tried", "lost", "failed", "CPU s", "note"])
    load = os.getloadavg()
    print(f"\nscale {args.scale}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs")
    write_json(args.json, {"scale": args.scale, "load": load, "results": results})
    return 1 if any(r["lost"] or r["failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
