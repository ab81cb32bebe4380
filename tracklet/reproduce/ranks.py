"""The other ranks of a distributed run, for the seeds the plan lists (docs/reproduce.md).

A process records the seeds it sets in its own run: when every rank of a torchrun launch calls
``tracklet.init()``, each rank's seeds are in that rank's run, and the plan of one lists the
others'. A rank that calls no ``init()`` (often all but rank 0) records no run, so its seeds are
not known: the plan names those ranks.

A shared run (docs/shared-runs.md) was written by several processes into one run: its secondary
writers' parts record no environment (the primary's is the run's, and the plan reproduces it),
so the plan names them as the run's secondary writers, with the seeds their parts recorded; a
part labelled ``rank_<n>`` (the integrations' and launchers' default) is rank ``n``'s.

The runs of one launch are found in the run's project by what torchrun gave each process:
``MASTER_ADDR``, ``MASTER_PORT`` and ``WORLD_SIZE`` equal, another ``RANK``, started within
``WINDOW`` seconds of the run. Only runs whose record log was written since ``WINDOW`` before the
run started are read (one ``stat`` for the others), and only their first frame unless it matches.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from tracklet.core.layout import iter_runs

WINDOW = 600.0  # seconds: torchrun starts a launch's processes together
MAX_READ = 64  # runs of the window read in full at most (a project that starts many runs at once)
LAUNCH_KEYS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE")


@dataclasses.dataclass
class OtherRanks:
    recorded: list[dict[str, Any]]  # {"rank", "run", "seeds"} of each other rank that recorded a run, by rank
    unrecorded: list[str]  # the other ranks that recorded no run: their seeds are not known


def secondary_writers(run: Any, root: Path) -> list[dict[str, Any]]:
    """The secondary writers of shared run ``run`` (a ``RecordedRun`` of data root ``root``), by
    label: ``{"label", "rank" ("" unless labelled rank_<n>), "state", "host", "seeds"}``."""
    from tracklet.core.api import RecordedRun
    from tracklet.core.layout import RunPaths

    writers = []
    for label, info in sorted(run.parts.items()):
        numbered = re.fullmatch(r"rank_(\d+)", label)
        try:
            seeds = [dict(seed) for seed in RecordedRun(RunPaths(root, run.project, run.id, label)).metadata.get("seeds")
                     or []]
        except Exception:  # an unreadable part: its seeds are not known (RecordedRun.parts says why)
            seeds = []
        writers.append({"label": label, "rank": str(int(numbered.group(1))) if numbered else "",
                        "state": info.get("state", ""), "host": info.get("host", ""), "seeds": seeds})
    return writers


def other_ranks(run: Any, root: Path, rank: str, world: int, secondaries: list[dict[str, Any]] | None = None
                ) -> OtherRanks:
    """The other ranks of the launch of ``run`` (a ``RecordedRun`` of data root ``root``, recorded
    by ``rank`` of ``world`` processes); ranks among the run's ``secondaries``
    (``secondary_writers``) recorded into the run itself, so are neither other runs nor unrecorded."""
    from tracklet.core.api import RecordedRun

    start, environment = run.start_record, run.environment_record
    variables = dict(environment.variables) if environment is not None else {}
    launch = tuple(variables.get(key, "") for key in LAUNCH_KEYS)
    found: dict[str, dict[str, Any]] = {}
    if start is not None and all(launch):
        since = start.start_time - WINDOW
        read = 0
        for paths in iter_runs(root, run.project):
            if paths.run_id == run.id or read >= MAX_READ:
                continue
            try:
                if paths.log_file.stat().st_mtime < since:
                    continue
            except OSError:
                continue
            other = RecordedRun(paths)
            created = other.created_at
            if created is None or abs(created - start.start_time) > WINDOW:
                continue
            read += 1
            theirs = other.environment_record
            if theirs is None or tuple(theirs.variables.get(key, "") for key in LAUNCH_KEYS) != launch:
                continue
            other_rank = theirs.variables.get("RANK", "")
            if other_rank and other_rank != rank and other_rank not in found:
                found[other_rank] = {"rank": other_rank, "run": other.path,
                                     "seeds": [dict(seed) for seed in other.metadata.get("seeds") or []]}
    ranks = [str(number) for number in range(world)]
    in_run = {writer["rank"] for writer in secondaries or [] if writer["rank"]}
    return OtherRanks(recorded=[found[key] for key in ranks if key in found and key not in in_run],
                      unrecorded=[key for key in ranks if key != rank and key not in found and key not in in_run])
