"""The reproduction a process runs, as ``init()`` needs it (``tracklet reproduce``, docs/reproduce.md).

``tracklet reproduce`` starts the original command with ``TRACKLET_REPRODUCE`` (setting
``reproduce``) naming a JSON file it wrote: the new run's project and id, the run it reproduces,
the config to run with (the original's, with ``--set`` overrides) and the artifact versions the
original used (and, for a distributed run, the rank whose process records it: the others record
ordinary runs). The first ``init()`` of the process records that run: its ``RunStart`` says which
run it reproduces, its config is that config (over what the program passes, as a sweep's
parameters are), and ``use_artifact("name")`` of a pinned artifact returns the recorded version,
whatever alias the program asks for. A file that can't be read is reported and the run records as
an ordinary one: training goes on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklet.core.settings import is_valid_name
from tracklet.core.stack import user_stacklevel
from tracklet.core.warn import TrackletWarning

if TYPE_CHECKING:
    from tracklet.core.filehash import HashedBytes


@dataclasses.dataclass(frozen=True)
class Reproduction:
    project: str
    run_id: str
    reproduces: str  # "project/run_id"
    config: dict[str, Any]
    artifacts: dict[str, int]  # "project/name" -> N of vN
    rank: str = ""  # a distributed run: only the process of this rank ($RANK) records the reproduction

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


_claimed: set[str] = set()  # spec files this process has started a run from


def current(path: str | None) -> Reproduction | None:
    """The reproduction in ``path`` the first time a process asks (None after that, with no
    path, or with a warning when the file can't be read)."""
    if not path or path in _claimed:
        return None
    _claimed.add(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        spec = Reproduction(str(data["project"]), str(data["run_id"]), str(data["reproduces"]),
                            dict(data["config"]), {str(k): int(v) for k, v in dict(data["artifacts"]).items()},
                            rank=str(data.get("rank") or ""))
        if spec.rank and os.environ.get("RANK", "0") != spec.rank:
            return None  # another process of the distributed run records the reproduction
        if is_valid_name(spec.project) and is_valid_name(spec.run_id):
            return spec
        problem = f"{path} names an invalid project or run id"
    except (OSError, ValueError, KeyError, TypeError) as error:
        problem = f"can't read the reproduction {path}: {error}"
    warnings.warn(f"tracklet: {problem}; this run records as an ordinary run", TrackletWarning,
                  stacklevel=user_stacklevel())
    return None


def pinned(reference: str, default_project: str, pins: dict[str, int]) -> str:
    """``reference`` (``"name"``, ``"name:alias"``, ``"project/name:v3"``) pointed at the pinned
    version of its artifact, or as it was when that artifact is not pinned."""
    head = reference.partition(":")[0]
    parts = head.split("/")
    key = f"{parts[-2] if len(parts) >= 2 else default_project}/{parts[-1]}"
    version = pins.get(key)
    return reference if version is None else f"{key}:v{version}"


CODE_TYPE = "code"  # the type of a run's code snapshot artifact


def code_artifact_name(program: str) -> str:
    """The collection of a program's code snapshots: ``code-<program path>`` (``/`` and other
    characters names can't hold as ``-``), ``code`` when the program is not a file of the repository."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", program).strip("-.")
    return f"code-{cleaned}"[:128] if cleaned else "code"


def code_artifact(make: Any, files: dict[str, HashedBytes], program: str) -> Any:
    """A draft ``code`` artifact (``make``: ``tracklet.Artifact``) holding ``files`` (relative
    path: bytes hashed as they were read) under their paths in the repository, in memory (no staging directory:
    it is logged inside ``finish()``), with the digests they were recorded with (not hashed again)."""
    artifact = make(code_artifact_name(program), CODE_TYPE,
                    description="untracked source files the program imported (tracklet reproduce restores them)")
    for path, hashed in files.items():
        artifact._add_bytes(path, hashed)
    return artifact
