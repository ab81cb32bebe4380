"""Carry out a reproduction plan (``plan.make_plan``): a working tree at the recorded commit with the
diff and the code snapshot applied, an environment, and the original command run again as a new
run linked to the original.

The working tree is a ``git clone --shared`` of the recorded repository (its objects are read
from there, so a commit no branch holds any more still checks out), detached at the commit. The
program reaches its run through ``TRACKLET_REPRODUCE`` (``tracklet.core.reproduction``): the
first ``init()`` records the new run with the original's config (and ``--set`` overrides) and
pins ``use_artifact`` to the versions the original used.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tracklet.errors import ReproduceError
from tracklet.reproduce.plan import Plan

Progress = Callable[[str], None]


@dataclasses.dataclass
class Outcome:
    run: str  # project/run_id of the new run
    exit_code: int
    directory: Path
    seconds: dict[str, float]  # per step


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs (``--set``): values read as JSON when they parse (numbers, true, lists,
    quoted strings), else kept as text; ``a.b=1`` sets key ``b`` of the nested config ``a``."""
    import json

    found: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"--set takes key=value; got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        found[key.strip()] = value
    return found


def nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}`` (merged into the config key by key)."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def _step(progress: Progress, seconds: dict[str, float], name: str, what: str, action: Callable[[], Any]) -> Any:
    progress(f"{name}: {what}")
    began = time.monotonic()
    result = action()
    seconds[name] = time.monotonic() - began
    if seconds[name] >= 1.0:
        progress(f"{name}: done in {seconds[name]:.1f} s")
    return result


def _call(command: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
          progress: Progress | None = None) -> None:
    """Run ``command``; a failure raises ``ReproduceError`` with its last lines. With ``progress``,
    each line it prints is passed on as it comes (an install of minutes shows what it is at)."""
    if progress is None:
        try:
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  check=False)
        except OSError as error:
            raise ReproduceError(f"{what}: can't run {command[0]}: {error.strerror or error}") from None
        returncode, output = done.returncode, (done.stderr or done.stdout)
    else:
        last: collections.deque[str] = collections.deque(maxlen=20)
        try:
            with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, text=True, errors="replace") as child:
                assert child.stdout is not None
                for line in child.stdout:
                    line = line.rstrip()
                    if line.strip():
                        last.append(line)
                        progress(f"  {line}")
                returncode = child.wait()
        except OSError as error:
            raise ReproduceError(f"{what}: can't run {command[0]}: {error.strerror or error}") from None
        output = "\n".join(last)
    if returncode != 0:
        detail = output.strip().splitlines()
        raise ReproduceError(f"{what} failed: {' / '.join(detail[-3:]) or f'exit status {returncode}'}")


def reproduce(plan: Plan, *, force: bool = False, progress: Progress | None = None,
              run_id: str | None = None) -> Outcome:
    """Do what ``plan`` says and run the program; the new run's path and exit status. A plan with
    problems raises ``ReproduceError`` naming them, before anything is done, unless ``force``."""
    if plan.problems and not force:
        raise ReproduceError("can't reproduce " + plan.run + ": " + "; ".join(plan.problems)
                             + " (--force goes on anyway, skipping what can't be restored)")
    say = progress or (lambda text: None)
    seconds: dict[str, float] = {}
    target = plan.directory
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ReproduceError(f"directory {target} exists and is not empty: pick another with --dir")
    if not plan.repository or not plan.commit or not plan.program:
        raise ReproduceError(f"can't reproduce {plan.run}: no code to check out or no program to run")

    def check_out() -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        _call(["git", "clone", "--quiet", "--shared", "--no-checkout", plan.repository, str(target)],
              f"cloning {plan.repository}")
        _call(["git", "-C", str(target), "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach",
               plan.commit], f"checking out {plan.commit}")

    _step(say, seconds, "checkout", f"{plan.repository} at {plan.commit[:12]} into {target}", check_out)
    if plan.diff is not None and plan.diff.is_file():
        diff = plan.diff
        _step(say, seconds, "diff", f"applying {diff}",
              lambda: _call(["git", "-C", str(target), "apply", "--binary", "--whitespace=nowarn", str(diff)],
                            f"applying {diff} at {plan.commit[:12]}"))
    if plan.code_files:
        _step(say, seconds, "snapshot", f"restoring {len(plan.code_files)} untracked file(s)",
              lambda: _restore_snapshot(plan))
    python = _step(say, seconds, "environment", _environment_text(plan), lambda: _environment(plan, say))
    plan.python = python

    from tracklet.core.reproduction import Reproduction
    from tracklet.core.run import new_run_id

    project = plan.run.partition("/")[0]
    new_id = run_id or new_run_id()
    spec = Reproduction(project, new_id, plan.run, plan.config_to_run(),
                        dict(plan.artifacts), rank=plan.rank)
    spec_dir = plan.root / "reproductions"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec_file = spec_dir / f"{new_id}.json"
    spec_file.write_text(spec.to_json(), encoding="utf-8")
    env = _child_environment(plan, spec_file)
    command = [python, *plan.launcher, str(target / plan.program), *plan.arguments]
    workdir = (target / plan.workdir).resolve()

    def run_program() -> int:
        try:
            return subprocess.run(command, cwd=workdir, env=env, check=False).returncode
        except OSError as error:
            raise ReproduceError(f"can't run {command[0]}: {error.strerror or error}") from None

    code = _step(say, seconds, "run", f"{shlex.join(command)} (in {workdir}) as run {project}/{new_id}", run_program)
    return Outcome(f"{project}/{new_id}", code, target, seconds)


def _restore_snapshot(plan: Plan) -> None:
    """Write the code snapshot's files into the working tree (from the run's ``code`` artifact, or
    ``files/code/`` for an older run); one the plan found missing is skipped (forced past it)."""
    snapshot = plan.snapshot
    if snapshot is None:
        return
    for relative in plan.code_files:
        target = plan.directory / relative
        if not target.resolve().is_relative_to(plan.directory.resolve()):
            raise ReproduceError(f"code snapshot path {relative!r} points outside the working tree")
        data = snapshot.read(relative)
        if data is None:  # named in the plan's problems; forced past them
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _environment_text(plan: Plan) -> str:
    if plan.env == "current":
        return f"the current one ({sys.executable})"
    return f"{plan.env}: {len(plan.requirements)} package(s) into {plan.directory / '.venv'}"


def pip_sources(environ: dict[str, str] | None = None) -> list[str]:
    """pip's configured package sources (``index-url``, ``extra-index-url``, ``find-links`` from
    pip.conf files and ``PIP_*`` variables) as uv options, so uv installs from where pip on this
    machine does and nowhere else."""
    import configparser

    environ = dict(os.environ if environ is None else environ)
    # pip's own order (later files win): global, user, site, then PIP_CONFIG_FILE
    xdg_dirs = [d for d in environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep) if d]
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs)]
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf",
              Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"]
    if environ.get("VIRTUAL_ENV"):
        files.append(Path(environ["VIRTUAL_ENV"]) / "pip.conf")
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    found: dict[str, str] = {}
    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for name in ("index-url", "extra-index-url", "find-links"):
                    if parser.has_option(section, name):
                        found[name] = parser.get(section, name)
    for name in ("index-url", "extra-index-url", "find-links"):
        variable = "PIP_" + name.upper().replace("-", "_")
        if environ.get(variable):
            found[name] = environ[variable]
    options = []
    for name, value in found.items():
        for item in value.split():
            options += [f"--{name}", item]
    if "extra-index-url" in found:
        # pip takes the best version from all its indexes; uv by default only looks at the first
        # index that has a package, so a version pip finds on an extra index would be missing
        options += ["--index-strategy", "unsafe-best-match"]
    return options


def _environment(plan: Plan, progress: Progress | None = None) -> str:
    """The interpreter the program runs with; the installer's lines go to ``progress``."""
    if plan.env == "current":
        return sys.executable
    venv = plan.directory / ".venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    requirements = plan.directory / ".venv-requirements.txt"
    if plan.env == "uv":
        uv = shutil.which("uv")
        if uv is None:
            raise ReproduceError("--env uv needs uv on PATH (pip install uv), or use --env venv or current")
        _call([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], "creating the environment with uv")
        requirements.write_text("".join(line + "\n" for line in plan.requirements), encoding="utf-8")
        _call([uv, "pip", "install", "--python", str(python), *pip_sources(), "-r", str(requirements)],
              "installing the run's packages with uv", progress=progress)
    else:
        # This interpreter's pip installs into a venv made without one (pip >= 22.3's --python), so
        # the new environment holds exactly the recorded distributions, not the venv's own pip and
        # setuptools besides (a recorded pip is one of the requirements like any other).
        outer_pip = _pip_that_targets_other_interpreters()
        _call([sys.executable, "-m", "venv", *(["--without-pip"] if outer_pip else []), str(venv)],
              "creating the environment with venv")
        requirements.write_text("".join(line + "\n" for line in plan.requirements), encoding="utf-8")
        installer = [sys.executable, "-m", "pip", "--python", str(python)] if outer_pip else [str(python), "-m", "pip"]
        _call([*installer, "install", "--progress-bar", "off", "--no-compile", "-r", str(requirements)],
              "installing the run's packages with pip", progress=progress)
    requirements.unlink(missing_ok=True)
    return str(python)


def _pip_that_targets_other_interpreters() -> bool:
    """Whether this interpreter has a pip that can install into another one (``--python``, 22.3+)."""
    from importlib import metadata

    try:
        major, minor = (int(part) for part in metadata.version("pip").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (22, 3)


def _child_environment(plan: Plan, spec_file: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("TRACKLET_SWEEP_ID", "TRACKLET_SWEEP_TRIAL", "TRACKLET_REPRODUCE")}
    env.update(plan.variables)
    env["TRACKLET_DIR"] = str(plan.root)
    env["TRACKLET_REPRODUCE"] = str(spec_file)
    if plan.env != "current":  # the new environment's own packages, not this process's path
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    return env
