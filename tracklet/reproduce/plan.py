"""The plan of a reproduction: what will be checked out, applied, installed, materialized and run,
what differs from the machine the run ran on, and what can't be restored (``problems``: the
reproduction stops before doing anything unless forced).

Making a plan reads the run's record log and ``files/``, asks git two questions about the
recorded repository and reads this interpreter's package metadata; it writes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from tracklet.reproduce.snapshot import BlobReader, CodeSnapshot

ENVS = ("current", "venv", "uv")
GIT_TIMEOUT = 30.0


@dataclasses.dataclass
class Plan:
    """What ``execute.reproduce`` will do for one run. ``problems`` name each part that can't be
    restored and why; ``differences`` what will differ from the original machine."""

    run: str  # project/run_id
    root: Path  # the data root
    env: str
    directory: Path
    repository: str = ""
    commit: str = ""
    branch: str = ""
    diff: Path | None = None
    code_files: list[str] = dataclasses.field(default_factory=list)
    code_source: str = ""  # where the code snapshot is read from: "artifact project/name:vN" or files/code/
    program: str = ""  # relative to the repository
    launcher: list[str] = dataclasses.field(default_factory=list)  # interpreter options before the program (torchrun)
    rank: str = ""  # the rank of a distributed run's process that recorded the run ("" when not distributed)
    world: int = 0  # a distributed run's process count (0 when not distributed)
    arguments: list[str] = dataclasses.field(default_factory=list)  # after the program
    workdir: str = "."  # the run's cwd relative to the repository
    python: str = ""  # the interpreter that will run it ("" until the environment exists)
    requirements: list[str] = dataclasses.field(default_factory=list)  # for venv/uv
    artifacts: dict[str, int] = dataclasses.field(default_factory=dict)  # project/name -> vN
    variables: dict[str, str] = dataclasses.field(default_factory=dict)
    seeds: list[dict[str, str]] = dataclasses.field(default_factory=list)  # {"api", "value"}, as set
    seeds_dropped: int = 0  # seeding calls past the recorder's cap
    # Seeding modules imported before tracklet: the seeds given to them before that are not known.
    seeds_unknown: list[str] = dataclasses.field(default_factory=list)
    # A distributed run's other ranks: those that recorded a run of their own ({"rank", "run",
    # "seeds"}), and those that recorded none (their seeds are not known).
    rank_seeds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ranks_unrecorded: list[str] = dataclasses.field(default_factory=list)
    # A shared run's secondary writers (docs/shared-runs.md): {"label", "rank", "state", "host",
    # "seeds"}, by label. The run's environment is its primary's, which the plan reproduces.
    secondaries: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    no_primary: bool = False  # a shared run whose primary never started: only secondaries' parts
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    differences: list[str] = dataclasses.field(default_factory=list)
    # --set keys the recorded command line also passes (--lr 0.5): the program reads the argument.
    argument_warnings: list[str] = dataclasses.field(default_factory=list)
    rewritten: list[str] = dataclasses.field(default_factory=list)  # "--lr 0.5 -> --lr 0.01" (--rewrite-args)
    # The code snapshot's reader (execute restores the files through it); not part of to_dict().
    snapshot: CodeSnapshot | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def config_to_run(self) -> dict[str, Any]:
        """The config the new run gets: the recorded one with the ``--set`` overrides applied
        (``model.depth=4`` into the nested ``model``), as ``execute.reproduce`` hands it over."""
        from tracklet.core.sweeptrial import merge_config
        from tracklet.reproduce.execute import nested

        return merge_config(self.config, nested(self.overrides))

    def _overridden_mark(self, key: str) -> str:
        """`` (--set)`` after a top-level config key an override set, `` (--set a.b)`` after one an
        override set a nested key of; "" for a key as recorded."""
        paths = [path for path in self.overrides if path.split(".")[0] == key]
        if not paths:
            return ""
        return " (--set)" if paths == [key] else f" (--set {', '.join(paths)})"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(dataclasses.replace(self, snapshot=None))
        data.pop("snapshot")
        data["root"], data["directory"] = str(self.root), str(self.directory)
        data["diff"] = str(self.diff) if self.diff is not None else None
        data["ok"] = self.ok
        return data

    def _render_rank_seeds(self) -> list[str]:
        """A distributed run's seeds are its process's: the other ranks' are in their own runs, if any."""
        lines = [f"  seeds       of rank {self.rank}'s process, which recorded this run" if self.seeds
                 else f"  seeds       none set by rank {self.rank}'s process, which recorded this run"]
        for other in self.rank_seeds:
            shown = ", ".join(f"{seed['api']}({seed['value']})" for seed in other["seeds"][:8]) or "none"
            more = f", ... ({len(other['seeds'])} in all)" if len(other["seeds"]) > 8 else ""
            lines.append(f"  seeds       rank {other['rank']}: {shown}{more} (its own run {other['run']})")
        if self.ranks_unrecorded:
            lines.append(f"  seeds       rank(s) {', '.join(self.ranks_unrecorded)}: not known (they recorded no run of "
                         "their own; the program sets their seeds again as it runs)")
        return lines

    def _render_secondaries(self) -> list[str]:
        """A shared run: written by several processes, reproduced from its primary's environment."""
        named = ", ".join(writer["label"] + (f" (rank {writer['rank']})" if writer["rank"] else "")
                          for writer in self.secondaries)
        if self.no_primary:
            lines = [f"  writers     the run was written by {len(self.secondaries)} secondary writer(s) only, {named}: its "
                     "primary never started, and secondaries record no environment to reproduce"]
            return lines + self._render_secondary_seeds()
        lines = [f"  writers     the run was written by {len(self.secondaries) + 1} processes: its primary"
                 + (f" (rank {self.rank})" if self.rank else "")
                 + f", whose environment and command this reproduces, and secondary writer(s) {named}, whose "
                 "parts of the run record no environment of their own (the program starts them again as it runs)"]
        return lines + self._render_secondary_seeds()

    def _render_secondary_seeds(self) -> list[str]:
        lines = []
        for writer in self.secondaries:
            if writer["seeds"]:
                shown = ", ".join(f"{seed['api']}({seed['value']})" for seed in writer["seeds"][:8])
                more = f", ... ({len(writer['seeds'])} in all)" if len(writer["seeds"]) > 8 else ""
                lines.append(f"  seeds       secondary writer {writer['label']}: {shown}{more} (its part of this run)")
        return lines

    def render(self) -> str:
        """The plan as text, one step a line."""
        lines = [f"reproduce {self.run} in {self.directory} (environment: {self.env})"]
        short = self.commit[:12] if self.commit else "?"
        lines.append(f"  check out   {self.repository or '?'} at {short}"
                     + (f" ({self.branch})" if self.branch and self.branch != "HEAD" else ""))
        if self.diff is not None:
            lines.append(f"  apply       {self.diff} ({self.diff.stat().st_size if self.diff.exists() else '?'} bytes: "
                         "uncommitted changes to tracked files)")
        if self.code_files:
            shown = ", ".join(self.code_files[:5]) + (f", ... ({len(self.code_files)} in all)"
                                                      if len(self.code_files) > 5 else "")
            source = f" (from {self.code_source})" if self.code_source.startswith("artifact ") else ""
            lines.append(f"  restore     untracked files the program imported{source}: {shown}")
        if self.env == "current":
            lines.append(f"  environment the current one: {sys.executable} (Python {platform.python_version()})")
        else:
            tool = "uv venv + uv pip install" if self.env == "uv" else "python -m venv + pip install"
            lines.append(f"  environment {tool}: {len(self.requirements)} package(s) into "
                         f"{self.directory / '.venv'}")
        for name, version in self.artifacts.items():
            lines.append(f"  input       {name}:v{version} (the version the run used, whatever alias the program asks)")
        for name, value in self.variables.items():
            lines.append(f"  variable    {name}={value}")
        command = shlex.join(["python", *self.launcher, self.program or "?", *self.arguments])
        lines.append(f"  run         {command}  (in {self.workdir}), as a new run linked to {self.run}")
        config = self.config_to_run()
        if config:
            shown_config = ", ".join(f"{key}={value!r}{self._overridden_mark(key)}"
                                     for key, value in list(config.items())[:8])
            more = f", ... ({len(config)} keys)" if len(config) > 8 else ""
            lines.append(f"  config      {shown_config}{more}")
        if self.seeds:
            shown_seeds = ", ".join(f"{seed['api']}({seed['value']})" for seed in self.seeds[:8])
            more = f", ... ({len(self.seeds)} in all)" if len(self.seeds) > 8 else ""
            lines.append(f"  seeds       {shown_seeds}{more} (set by the program: set again as it runs)")
        if self.rank:
            lines.extend(self._render_rank_seeds())
        if self.secondaries:
            lines.extend(self._render_secondaries())
        if self.seeds_dropped:
            lines.append(f"  seeds       {self.seeds_dropped} more seeding call(s) past the recorder's cap: not recorded")
        if self.seeds_unknown:
            lines.append(f"  seeds       not known: any given to {', '.join(self.seeds_unknown)} before `import tracklet` "
                         "(imported before it; import tracklet first to record them)")
        if self.overrides:
            lines.append("  overrides   " + ", ".join(f"{key}={value!r}" for key, value in self.overrides.items()))
        for text in self.rewritten:
            lines.append(f"  argument    {text} (--rewrite-args)")
        if self.argument_warnings:
            lines.append("warnings:")
            lines.extend(f"  - {text}" for text in self.argument_warnings)
        if self.differences:
            lines.append("differences from the original machine:")
            lines.extend(f"  - {text}" for text in self.differences)
        if self.problems:
            lines.append("cannot be restored (reproduce stops here unless --force):")
            lines.extend(f"  - {text}" for text in self.problems)
        return "\n".join(lines)


def _git(repository: str, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", repository, *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def make_plan(run: Any, root: Path, *, env: str = "current", directory: Path | None = None,
              overrides: dict[str, Any] | None = None, progress: Callable[[str], None] | None = None,
              blobs: BlobReader | None = None, rewrite_args: bool = False) -> Plan:
    """The plan of reproducing ``run`` (a ``tracklet.core.api.RecordedRun``) under data root
    ``root``; ``directory`` defaults to ``./reproduce-<run id>`` (``-2``, ``-3``, ... when taken).
    An override whose key the recorded command line also passes (``--lr 0.5``) is warned about;
    ``rewrite_args`` rewrites that argument to the override's value where that is unambiguous
    (:func:`plan_overridden_arguments`).
    ``blobs`` reads the code snapshot's blobs where they are not in ``root``'s store (a server's).
    ``progress`` hears of the one part that can take seconds: asking whether packages still install."""
    if env not in ENVS:
        raise ValueError(f"--env must be one of {', '.join(ENVS)}; got {env!r}")
    target = Path(directory) if directory is not None else _free_directory(Path.cwd() / f"reproduce-{run.id}")
    plan = Plan(run=run.path, root=Path(root), env=env, directory=target.absolute(),
                config=run.config, overrides=dict(overrides or {}))
    start, environment = run.start_record, run.environment_record
    files = Path(run.files_dir)
    if start is None:
        plan.problems.append(f"run {run.path} has no start record: its log is empty or damaged")
        return plan
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        plan.problems.append(f"directory {target} exists and is not empty: pick another with --dir")
    _plan_code(plan, run, start, environment, files, blobs)
    _plan_command(plan, start, environment)
    _plan_environment(plan, run, start, environment, files)
    if plan.env != "current":
        _check_installable(plan, progress or (lambda text: None))
    _plan_inputs(plan, run)
    plan.seeds = [dict(seed) for seed in run.metadata.get("seeds") or []]
    plan.seeds_dropped = int(run.metadata.get("seeds_dropped") or 0)
    plan.seeds_unknown = _seeds_unknown(run.metadata.get("seeds_unknown") or [], plan.seeds)
    if run.parts:  # a shared run: the primary's environment is the run's; the others are its secondaries
        from tracklet.reproduce.ranks import secondary_writers

        plan.secondaries = secondary_writers(run, plan.root)
        plan.no_primary = bool(run.metadata.get("no_primary"))
        if plan.no_primary:
            plan.problems.append(f"run {run.path}'s primary never started: only its secondary writers' parts were "
                                 "recorded, and they record no environment (docs/shared-runs.md)")
    if plan.rank:
        from tracklet.reproduce.ranks import other_ranks

        others = other_ranks(run, plan.root, plan.rank, plan.world, plan.secondaries)
        plan.rank_seeds, plan.ranks_unrecorded = others.recorded, others.unrecorded
    unknown = [key for key in plan.overrides if key.split(".")[0] not in plan.config]
    if unknown:
        plan.differences.append("--set adds config key(s) the run did not have: " + ", ".join(unknown))
    plan_overridden_arguments(plan, rewrite=rewrite_args)
    return plan


def _flags(key: str) -> list[str]:
    """The options an argparse program would read ``key`` from: ``--lr``; ``--batch_size`` and
    ``--batch-size`` (argparse turns ``-`` into ``_`` in the attribute name)."""
    return list(dict.fromkeys([f"--{key}", f"--{key.replace('_', '-')}"]))


def _occurrences(arguments: list[str], key: str) -> list[tuple[int, str, str | None]]:
    """Where ``arguments`` pass ``key``: ``(index, flag, value)`` for ``--key value`` and
    ``--key=value`` (value None for a bare ``--key`` with nothing after it)."""
    found = []
    flags = _flags(key)
    for index, argument in enumerate(arguments):
        for flag in flags:
            if argument == flag:
                following = arguments[index + 1] if index + 1 < len(arguments) else None
                value = None if following is None or (following.startswith("--") and following != "--") else following
                found.append((index, flag, value))
            elif argument.startswith(flag + "="):
                found.append((index, flag, argument[len(flag) + 1:]))
    return found


_UNRECORDED = object()


def _reads_as(text: str | None, recorded: Any) -> bool:
    """Whether ``text``, the word after ``--key`` on the recorded command line, is the value the
    run's config recorded for ``key`` (so it is the option's value, not a positional argument after
    a flag: ``--verbose data.csv`` with ``verbose: true``). A bool is a flag's (``store_true``):
    no word is its value; a list or a dict (``nargs``) is no one word's."""
    if text is None or isinstance(recorded, bool):
        return False
    if isinstance(recorded, (int, float)):
        try:
            number = float(text)
        except ValueError:
            return False
        return number == recorded or (number != number and recorded != recorded)
    return isinstance(recorded, str) and text == recorded


def plan_overridden_arguments(plan: Plan, *, rewrite: bool = False) -> None:
    """``--set lr=0.01`` changes the new run's config, but a program that reads ``--lr`` from its
    command line trains with the recorded ``--lr 0.5``. Each such key gets a warning naming the
    argument. ``rewrite``: the argument is given the override's value instead, when it appears
    once, with a value (the word after it reads back as the value the run's config recorded for
    the key, when it recorded one: after a flag, ``--verbose data.csv``, it is a positional
    argument), and the override is a number or a string (a list, a dict, a boolean or null has no
    one spelling an argparse program reads back as the same value)."""
    for key, value in plan.overrides.items():
        found = _occurrences(plan.arguments, key)
        if not found:
            continue
        shown = ", ".join(shlex.join([plan.arguments[i]] if v is None or plan.arguments[i] != f else [f, v])
                          for i, f, v in found)
        scalar = isinstance(value, (int, float, str)) and not isinstance(value, bool)
        recorded = plan.config.get(key, _UNRECORDED) if isinstance(plan.config, dict) else _UNRECORDED
        why_not = ("it appears more than once" if len(found) > 1 else
                   "it has no value on the command line" if found[0][2] is None else
                   f"what follows it ({found[0][2]!r}) is not the value the run recorded for {key} ({recorded!r}): "
                   "a flag without one" if recorded is not _UNRECORDED and not _reads_as(found[0][2], recorded) else
                   f"{value!r} has no one command-line spelling" if not scalar else "")
        if rewrite and not why_not:
            index, flag, old = found[0]
            text = str(value)
            if plan.arguments[index] == flag and not text.startswith("-"):
                plan.arguments[index + 1] = text
            else:  # --name=-x: argparse reads "-x" after "--name" as an option ("expected one argument")
                plan.arguments[index:index + (1 if plan.arguments[index] != flag else 2)] = [f"{flag}={text}"]
            plan.rewritten.append(f"{shlex.join([flag] if old is None else [flag, old])} -> {shlex.join([flag, text])} (--set {key})")
            continue
        advice = ("pass --rewrite-args to run it with the new value" if not why_not else
                  f"--rewrite-args can't change it ({why_not}): edit the command by hand")
        plan.argument_warnings.append(
            f"--set {key}={value!r} sets the new run's config, but the recorded command line also passes "
            f"{shown}: a program that reads its arguments trains with that ({advice})")


def _seeds_unknown(modules: list[str], seeds: list[dict[str, str]]) -> list[str]:
    """The seeding modules imported before tracklet whose earlier seeds are not known: not torch
    when its initial seed was recorded (that is the seed it was given)."""
    recorded = {seed["api"] for seed in seeds}
    return [module for module in modules if not (module == "torch" and "torch.initial_seed" in recorded)]


def _free_directory(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... : the first that is absent or empty."""
    candidate, number = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def _plan_snapshot(plan: Plan, run: Any, environment: Any, blobs: BlobReader | None) -> None:
    """The untracked files to restore: each read (and checked against its digest) from the run's
    ``code`` artifact, or from ``files/code/`` for a run recorded before snapshots were artifacts."""
    if not environment.code_files:
        return
    snapshot = plan.snapshot = CodeSnapshot(run, blobs)
    plan.code_source = snapshot.where
    if not snapshot.artifact and not snapshot.files.is_dir():
        plan.problems.append(f"the run's code snapshot ({len(environment.code_files)} untracked file(s)) was not "
                             "stored: its code artifact was not committed before the run ended")
        return
    for entry in environment.code_files:
        if snapshot.read(entry.path) is None:
            plan.problems.append(f"untracked file {entry.path} of the code snapshot is "
                                 f"{snapshot.missing[entry.path]}")
        plan.code_files.append(entry.path)


def _plan_code(plan: Plan, run: Any, start: Any, environment: Any, files: Path, blobs: BlobReader | None) -> None:
    if environment is None:
        plan.problems.append(f"run {run.path} recorded no environment (capture_environment was off, or the run "
                             "ended before it was captured): its code can't be checked out")
        return
    if "git" in environment.incomplete:
        plan.problems.append(f"run {run.path} ended before its git state was captured: its code can't be checked out")
        return
    if not environment.git_root:
        plan.problems.append(f"run {run.path} was recorded outside a git repository (in {start.cwd}): its code "
                             "can't be checked out")
        return
    plan.repository, plan.commit, plan.branch = environment.git_root, environment.git_commit, environment.git_branch
    if not plan.commit:
        plan.problems.append(f"the repository {plan.repository} had no commit when the run was recorded")
        return
    if not os.path.isdir(plan.repository):
        plan.problems.append(f"the repository {plan.repository} the run was recorded in is gone")
        return
    found = _git(plan.repository, "cat-file", "-e", f"{plan.commit}^{{commit}}")
    if found is None:
        plan.problems.append("git can't be run here: the code can't be checked out")
    elif found.returncode != 0:
        inside = _git(plan.repository, "rev-parse", "--git-dir")
        if inside is None or inside.returncode != 0:
            plan.problems.append(f"{plan.repository} is no longer a git repository")
        else:
            plan.problems.append(f"commit {plan.commit} is no longer in the repository {plan.repository} "
                                 "(rewritten history or garbage-collected)")
    if environment.git_dirty:
        diff = files / "diff.patch"
        if diff.is_file():
            digest = hashlib.sha256(diff.read_bytes()).hexdigest()
            if environment.git_diff_sha256 and digest != environment.git_diff_sha256:
                plan.problems.append(f"{diff} no longer matches the digest recorded with the run")
            plan.diff = diff
        else:
            plan.problems.append(f"the run had uncommitted changes but {diff} is gone")
    _plan_snapshot(plan, run, environment, blobs)
    for skipped in environment.code_skipped:
        plan.differences.append(f"not in the code snapshot, so not restored: {skipped}")
    if "code" in environment.incomplete:
        plan.differences.append("the run ended before its untracked files were snapshotted: only tracked files "
                                "and the diff are restored")


def _plan_command(plan: Plan, start: Any, environment: Any) -> None:
    command = list(start.command)
    if len(command) < 2:
        plan.problems.append("the run recorded no command line")
        return
    script, arguments = command[1], command[2:]
    if script in ("-c", "-"):
        plan.problems.append(f"the run was started with `python {script}`: there is no program file to run again")
        return
    plan.arguments = arguments
    if any("***" in argument or "REDACTED" in argument for argument in arguments):
        plan.differences.append("the command line had secrets, recorded redacted: pass them again by hand")
    if environment is not None and environment.program:
        plan.program = environment.program
    elif plan.repository:
        absolute = script if os.path.isabs(script) else os.path.join(start.cwd, script)
        relative = os.path.relpath(absolute, plan.repository)
        if relative.startswith(".."):
            plan.problems.append(f"the program {absolute} is outside the repository {plan.repository}")
            return
        plan.program = relative
    if plan.repository:
        relative_cwd = os.path.relpath(start.cwd, plan.repository) if start.cwd else "."
        plan.workdir = "." if relative_cwd.startswith("..") else relative_cwd


def _plan_launch(plan: Plan) -> None:
    """A process of a distributed run (torchrun set ``WORLD_SIZE`` > 1): the program is started
    again by torchrun with as many processes on this machine, and the process with the recorded
    rank records the new run. Its launch variables are torchrun's to set, so they are not passed on."""
    from tracklet.core.provenance import LAUNCH_VARIABLES

    launch = {name: plan.variables.pop(name) for name in sorted(LAUNCH_VARIABLES) if name in plan.variables}
    try:
        world = int(launch.get("WORLD_SIZE") or 1)
        local = int(launch.get("LOCAL_WORLD_SIZE") or world)
    except ValueError:
        plan.problems.append(f"the run's WORLD_SIZE/LOCAL_WORLD_SIZE ({launch.get('WORLD_SIZE')!r}/"
                             f"{launch.get('LOCAL_WORLD_SIZE')!r}) are not numbers: its launch can't be rebuilt")
        return
    if world <= 1:
        return
    local = max(1, min(local, world))
    nodes = -(-world // local)
    plan.rank, plan.world = launch.get("RANK", "0"), world
    plan.launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={local}"]
    if nodes > 1:
        plan.problems.append(f"the run was one of {world} processes on {nodes} machines (torchrun): reproduce "
                             f"starts {local} on this machine only")
    if plan.rank != "0":
        plan.differences.append(f"the run was recorded by rank {plan.rank} of {world}: that rank records the new run")


def _plan_hardware(plan: Plan, run: Any, environment: Any) -> None:
    """The GPUs the run had (the environment's names, or the system monitor's when it ran) and their
    driver (NVML), beside this machine's: named when they differ, as results may differ with them.
    torch's CUDA and cuDNN versions count only for a run that had a GPU (a CUDA build of torch
    also runs on a machine without one)."""
    info = run.system_info or {}
    gpus = list(environment.gpus) or [str(gpu.get("name") or "?") for gpu in info.get("gpus") or []]
    from tracklet.core.system.nvidia import gpus_and_driver

    here, here_driver = gpus_and_driver()
    if not gpus:
        if here:
            plan.differences.append(f"recorded without a GPU; here: {_gpu_list(here)}: results may differ")
        return
    driver = info.get("driver_version") or ""
    if sorted(gpus) == sorted(here) and (not driver or driver == here_driver):
        return
    versions = [f"{label} {value}" for label, value in (
        ("driver", driver), ("CUDA driver", info.get("cuda_driver_version")),
        ("CUDA", environment.cuda_version), ("cuDNN", environment.cudnn_version)) if value]
    here_text = f"{_gpu_list(here)} with driver {here_driver}" if here and here_driver else _gpu_list(here)
    plan.differences.append(f"recorded on GPU(s) {_gpu_list(gpus)}"
                            + (f" with {', '.join(versions)}" if versions else "")
                            + f"; here: {here_text or 'no NVIDIA GPU'}: results may differ on other hardware")


def _gpu_list(names: list[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(name if count == 1 else f"{count} × {name}" for name, count in counts.items())


_CAPTURE_WAIT_HINT = ("; a run that ends within moments of its start may end before its packages are listed "
                      "(the first run in an environment; later ones read a cache): TRACKLET_CAPTURE_WAIT=5 gives "
                      "the capture up to 5 s at finish()")


def _plan_environment(plan: Plan, run: Any, start: Any, environment: Any, files: Path) -> None:
    here = platform.python_version()
    if start.python_version and start.python_version != here:
        recorded_minor = ".".join(start.python_version.split(".")[:2])
        weight = "" if recorded_minor == ".".join(here.split(".")[:2]) else " (a different minor version)"
        plan.differences.append(f"Python {start.python_version} recorded, {here} here{weight}")
    if environment is None:
        return
    if environment.python_implementation and environment.python_implementation != platform.python_implementation():
        plan.differences.append(f"{environment.python_implementation} recorded, {platform.python_implementation()} here")
    plan.variables = dict(sorted(environment.variables.items()))
    _plan_launch(plan)
    _plan_hardware(plan, run, environment)
    pythonpath = os.environ.get("PYTHONPATH", "")
    if plan.repository and any(os.path.realpath(p) == os.path.realpath(plan.repository)
                               for p in pythonpath.split(os.pathsep) if p):
        plan.differences.append(f"PYTHONPATH holds the original repository {plan.repository}: the program may "
                                "import its current files instead of the checked-out ones")
    if "packages" in environment.incomplete or not environment.packages:
        reason = environment.incomplete_reasons.get("packages", "")
        plan.differences.append(f"the run's packages were not recorded{f' ({reason})' if reason else ''}: the "
                                "environment can't be checked" + (_CAPTURE_WAIT_HINT if "capture_wait" in reason else ""))
        return
    if plan.env == "current":
        _compare_packages(plan, environment)
    else:
        _requirements(plan, environment)


def _installed() -> dict[str, str]:
    """Every installed distribution's version by normalized name (the first on ``sys.path``, as
    imports find them)."""
    from importlib import metadata

    found: dict[str, str] = {}
    for distribution in metadata.distributions():
        name, version = name_and_version(distribution)
        if name:
            found.setdefault(_normal(name), version)
    return found


def name_and_version(distribution: Any) -> tuple[str, str]:
    """A distribution's ``Name`` and ``Version`` from its metadata's header lines alone.
    ``distribution.metadata`` runs the email parser over the whole file (the long description
    too), and ``.version`` runs it again: with 219 packages that was a third of a dry run (median
    2.28 s before, 1.45 s after, at load 21 on 2 cores). Metadata without both lines in its
    header is read as importlib reads it."""
    text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO") or ""
    name = version = ""
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("Name:") and not name:
            name = line[5:].strip()
        elif line.startswith("Version:") and not version:
            version = line[8:].strip()
    if name and version:
        return name, version
    return distribution.metadata.get("Name") or "", distribution.version or ""


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _compare_packages(plan: Plan, environment: Any) -> None:
    here = _installed()
    changed, missing = [], []
    for package in environment.packages:
        version = here.get(_normal(package.name))
        if version is None:
            missing.append(f"{package.name}=={package.version}")
        elif version != package.version:
            changed.append(f"{package.name} {package.version} -> {version}")
    if changed:
        plan.differences.append(f"{len(changed)} package(s) at other versions here: " + ", ".join(changed[:10])
                                + (", ..." if len(changed) > 10 else ""))
    if missing:
        plan.differences.append(f"{len(missing)} package(s) not installed here: " + ", ".join(missing[:10])
                                + (", ..." if len(missing) > 10 else ""))


def _requirements(plan: Plan, environment: Any) -> None:
    """What a new venv installs: index packages pinned, direct installs from where they came from;
    a local source that is gone can't be installed."""
    from urllib.parse import unquote, urlsplit

    from tracklet.core.provenance import git_head

    for package in environment.packages:
        if not package.url:
            plan.requirements.append(f"{package.name}=={package.version}")
            continue
        if package.url.startswith("file://"):
            path = unquote(urlsplit(package.url).path)
            if not os.path.exists(path):
                plan.problems.append(f"package {package.name} {package.version} was installed from {path}, which is "
                                     "gone: it can't be installed")
                continue
            if package.commit and git_head(Path(path)) not in ("", package.commit):
                plan.differences.append(f"package {package.name} installs from {path} as it is now, not at commit "
                                        f"{package.commit[:12]} the run used")
            plan.requirements.append(f"-e {path}" if package.editable else path)
        elif package.vcs and package.commit:
            plan.requirements.append(f"{package.name} @ {package.vcs}+{package.url}@{package.commit}")
        else:
            plan.requirements.append(f"{package.name} @ {package.url}")


def _check_installable(plan: Plan, progress: Callable[[str], None]) -> None:
    """A pinned package no package source here has is a problem (the install would fail after the
    checkout); uv answers (``installable``), from the sources pip is configured with here."""
    import shutil

    from tracklet.reproduce import installable
    from tracklet.reproduce.execute import pip_sources

    uv = shutil.which("uv")
    if uv is None:
        if plan.env == "uv":
            plan.problems.append("--env uv needs uv on PATH (pip install uv): the environment can't be built "
                                 "(or use --env venv or current)")
        else:
            plan.differences.append("not checked whether the run's pinned packages still install (that needs uv "
                                    "on PATH)")
        return
    if not plan.requirements:
        return
    sources = pip_sources()
    named = [sources[index + 1] for index in range(0, len(sources), 2)
             if sources[index] in ("--index-url", "--extra-index-url", "--find-links")]
    where = ", ".join(named if "--index-url" in sources else ["PyPI", *named])
    pinned = sum(1 for line in plan.requirements if installable.PINNED.match(line))
    progress(f"plan: asking uv whether the run's {pinned} pinned package(s) still install")
    began = time.monotonic()
    found = installable.check(plan.requirements, uv, sources)
    if time.monotonic() - began >= 1.0:
        progress(f"plan: done in {time.monotonic() - began:.1f} s")
    for requirement in found.missing:
        plan.problems.append(f"package {requirement} no longer installs: none of the package sources pip uses here "
                             f"has it ({where})")
        plan.requirements.remove(requirement)
    if found.more:
        plan.differences.append("more pinned packages may not install: the check stopped after "
                                f"{installable.MAX_ROUNDS} rounds")
    if found.error:
        plan.differences.append(f"could not check that the run's pinned packages still install: {found.error}")


def _plan_inputs(plan: Plan, run: Any) -> None:
    from tracklet.artifacts.lookup import resolve
    from tracklet.errors import ArtifactError

    for used in run.used_artifacts:
        key = f"{used['project']}/{used['name']}"
        reference = f"{key}:v{used['version']}"
        if used["type"] == "run_table":  # a run's logged table (run-<id>-<key>:vN): its run's log has it
            from tracklet.artifacts.run_tables import resolve_run_table

            if resolve_run_table(plan.root, reference, used["project"]) is None:
                plan.problems.append(f"input run table {reference} is gone: its run's log has no such table version")
            else:
                plan.artifacts[key] = used["version"]
            continue
        try:
            artifact = resolve(plan.root, reference)
        except ArtifactError as error:
            plan.problems.append(f"input artifact {reference} is gone: {error}")
            continue
        if used["digest"] and artifact.digest != used["digest"]:
            plan.problems.append(f"input artifact {reference} now has digest {artifact.digest[:12]}, not "
                                 f"{used['digest'][:12]} as recorded")
            continue
        if key in plan.artifacts and plan.artifacts[key] != used["version"]:
            plan.differences.append(f"the run used several versions of {key}: the pinned one is v{used['version']}")
        plan.artifacts[key] = used["version"]
