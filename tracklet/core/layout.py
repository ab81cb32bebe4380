"""Where a run's files live under the data root, and which names may become path parts.

``<root>/projects/<project>/runs/<run_id>/run.tlog`` is the record log; ``files/`` beside it holds
captured files (``diff.patch``, ``requirements.txt``). Project names and run ids become directory
names, so they are checked (:func:`check_name`) before they become path parts: constructing a
:class:`RunPaths` checks both, so no path is ever built from an unchecked name. Every layer (the
run, the readers, the store, the server, ``sync``, the importers, the integrations) builds run
paths through :class:`RunPaths` and lists them with :func:`iter_runs`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path
from typing import Any, Iterator

from tracklet.core.recordlog import LOG_FILE_NAME
from tracklet.errors import InvalidName

__all__ = ["MAX_NAME_CHARS", "InvalidName", "RunPaths", "check_name", "is_valid_name", "iter_logs", "part_file_name", "iter_run_logs", "iter_runs", "name_problem",
           "project_dir", "projects_dir"]

MAX_NAME_CHARS = 128
PARTS_DIR = "parts"  # a run's secondary writers' logs (docs/shared-runs.md)
# The config key a secondary started with ``update_finish_state`` records once at its start:
# readers take it as its part's ``sets_state`` (core/parts.py) and never show it in a config.
SETS_STATE_KEY = "_tracklet_sets_run_state"
PART_SUFFIX = ".tlog"
_NAME_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_CHARS - 1}}}")
_ALLOWED = re.compile(r"[A-Za-z0-9._-]*")
_RULE = f"use 1-{MAX_NAME_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit"


def part_file_name(name: str) -> tuple[str, str] | None:
    """``(label, rest)`` of a run file named ``parts/<label>/<rest>``: a shared run's secondary
    writer's file (kept in its ``parts/<label>.files/``, uploaded under that name); else None."""
    pieces = name.split("/", 2)
    if len(pieces) == 3 and pieces[0] == PARTS_DIR and is_valid_name(pieces[1]) and pieces[2]:
        return pieces[1], pieces[2]
    return None


def is_valid_name(value: Any) -> bool:
    """Whether ``value`` may be a project name or run id (see :func:`check_name`)."""
    return isinstance(value, str) and _NAME_PATTERN.fullmatch(value) is not None


def name_problem(value: Any) -> str | None:
    """What keeps ``value`` from being a project name or run id, in words; None when it may be one."""
    if is_valid_name(value):
        return None
    if not isinstance(value, str):
        return f"it is a {type(value).__name__}, not a string"
    if not value:
        return "it is empty"
    if len(value) > MAX_NAME_CHARS:
        return f"it is {len(value)} characters long (at most {MAX_NAME_CHARS})"
    if not value[0].isascii() or not value[0].isalnum():
        return f"it starts with {value[0]!r}"
    bad = value[_ALLOWED.match(value).end()]  # type: ignore[union-attr]  # ``*`` always matches
    return f"it contains {bad!r}"


def check_name(kind: str, value: Any) -> str:
    """``value`` if it may be a ``kind`` (project, run id); else ``InvalidName`` naming the problem.

    Only a safe character set is allowed, so no name is ``..``, holds a separator (``/``, ``\\``),
    a NUL or a newline, or is absolute, empty or longer than a directory name may safely be."""
    problem = name_problem(value)
    if problem is not None:
        raise InvalidName(f"{kind} {value!r} is not valid: {problem}; {_RULE}")
    return value


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """A run's paths under data root ``root``; the constructor checks ``project`` and ``run_id``
    (``InvalidName``, a ``ValueError``). With ``part`` (a secondary writer's label, checked
    too), ``log_file`` and ``files_dir`` are that writer's: ``parts/<label>.tlog`` and
    ``parts/<label>.files/`` in the run's directory (docs/shared-runs.md)."""

    root: Path
    project: str
    run_id: str
    part: str | None = None

    def __post_init__(self) -> None:
        check_name("project", self.project)
        check_name("run id", self.run_id)
        if self.part is not None:
            check_name("label", self.part)

    # Built once per RunPaths (a frozen value): indexing asks for a run's paths several times,
    # and each Path join costs more than the stat it serves.
    @functools.cached_property
    def project_dir(self) -> Path:
        return projects_dir(self.root) / self.project

    @functools.cached_property
    def run_dir(self) -> Path:
        return self.project_dir / "runs" / self.run_id

    @functools.cached_property
    def log_file(self) -> Path:
        if self.part is not None:
            return self.parts_dir / f"{self.part}{PART_SUFFIX}"
        return self.run_dir / LOG_FILE_NAME

    @property
    def files_dir(self) -> Path:
        if self.part is not None:
            return self.parts_dir / f"{self.part}.files"
        return self.run_dir / "files"

    @property
    def parts_dir(self) -> Path:
        """Where the run's secondary writers' logs are (``parts/<label>.tlog``)."""
        return self.run_dir / PARTS_DIR

    def file_path(self, name: str) -> Path:
        """Where the run's file ``name`` is on disk: ``parts/<label>/<rest>`` (a shared run's
        secondary writer's file, as a server names it) in that writer's ``parts/<label>.files/``,
        any other name in the run's ``files/``."""
        part = part_file_name(name)
        if part is not None and self.part is None:
            return self.part_paths(part[0]).files_dir / part[1]
        return self.files_dir / name

    def part_paths(self, label: str) -> "RunPaths":
        """The paths of this run's part written by ``label``."""
        return RunPaths(self.root, self.project, self.run_id, label)

    def parts(self) -> list[str]:
        """The labels of the run's parts (secondary writers' logs), in name order; [] when none
        (one ``stat``). Files whose names are not valid labels are not parts."""
        try:
            names = [entry.name for entry in os.scandir(self.parts_dir)]
        except OSError:  # none (the usual case), or unreadable
            return []
        return sorted(name[: -len(PART_SUFFIX)] for name in names
                      if name.endswith(PART_SUFFIX) and is_valid_name(name[: -len(PART_SUFFIX)]))


def projects_dir(root: Path) -> Path:
    return Path(root) / "projects"


def project_dir(root: Path, project: str) -> Path:
    return projects_dir(root) / check_name("project", project)


def _run_dirs(root: Path, project: str | None) -> Iterator[Path]:
    """Every run directory with a valid name under data root ``root``, in name order."""
    base = projects_dir(root)
    if project is not None:
        projects = [project_dir(root, project)]
    elif base.is_dir():
        projects = sorted(p for p in base.iterdir() if is_valid_name(p.name))
    else:
        return
    for directory in projects:
        runs = directory / "runs"
        if not runs.is_dir():
            continue
        for run_dir in sorted(runs.iterdir()):
            if is_valid_name(run_dir.name):
                yield run_dir


def iter_runs(root: Path, project: str | None = None, *, parts: bool = False) -> Iterator[RunPaths]:
    """Every run with a record log under data root ``root`` (of one ``project``, or of all), in
    name order. Directories whose names are not valid names (left by hand or by an older version)
    are skipped: they are not runs, and one of them must not break a listing. With ``parts``, a
    shared run whose primary never started (parts but no ``run.tlog``; docs/shared-runs.md) is a
    run too: listings show it (one more ``scandir`` only for a directory without ``run.tlog``)."""
    root = Path(root)
    for run_dir in _run_dirs(root, project):
        if (run_dir / LOG_FILE_NAME).is_file():
            yield RunPaths(root, run_dir.parent.parent.name, run_dir.name)
        elif parts:
            run = RunPaths(root, run_dir.parent.parent.name, run_dir.name)
            if run.parts():
                yield run


def has_log(run: RunPaths) -> bool:
    """Whether run ``run`` is recorded: its ``run.tlog``, or (a shared run whose primary never
    started) a part."""
    return run.log_file.is_file() or bool(run.parts())


def iter_run_logs(root: Path, project: str | None = None) -> Iterator[tuple[RunPaths, list[RunPaths]]]:
    """Every run directory under data root ``root`` that holds a record log, with its logs: the
    run's own (first, when it exists) and its parts (a shared run's secondary writers',
    ``RunPaths.part`` set; docs/shared-runs.md). A part whose primary hasn't started (no
    ``run.tlog`` yet: ranks start in any order) is listed too: what it names is the run's."""
    root = Path(root)
    for run_dir in _run_dirs(root, project):
        run = RunPaths(root, run_dir.parent.parent.name, run_dir.name)
        logs = [run] if run.log_file.is_file() else []
        logs += [run.part_paths(label) for label in run.parts()]
        if logs:
            yield run, logs


def iter_logs(root: Path, project: str | None = None) -> Iterator[RunPaths]:
    """Every record log under data root ``root``: each run's, then its parts (``iter_run_logs``),
    those of a run whose primary hasn't started included. For what reads every log's bytes (the
    blobs they name, uploads), not for listing runs."""
    for _, logs in iter_run_logs(root, project):
        yield from logs
