"""``tracklet run -- COMMAND``: run a script with tracking on, without changing the script.

The command runs as a child process whose ``PYTHONPATH`` starts with a directory holding
tracklet's ``sitecustomize``: in that child, it starts a run (recording the script's command
line, console, environment and system metrics) and turns on :func:`tracklet.autolog`. The exit
code is the command's; the run is finished with it when the script's interpreter exits. Where the
script's interpreter could not see it (``raise SystemExit(n)`` in a function), the launcher, which
sees the process's real exit code, gives the run a last exit record with it (core/launchexit.py).

With ``wandb=True`` (``tracklet run --wandb``) the child and every Python process it starts get
``TRACKLET_WANDB_COMPAT=1``: their ``sitecustomize`` makes ``import wandb`` resolve to
``tracklet.compat.wandb``, and the run starts at the script's own ``wandb.init()`` (with the
launcher's project, name and job type) instead of at startup.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from tracklet.cli.common import CliError, _state

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "integrations" / "_launch"


def launch_environment(project: str | None, name: str | None, job_type: str | None,
                       base: dict[str, str] | None = None, wandb: bool = False,
                       bin_dir: Path | None = None) -> dict[str, str]:
    """The child's environment. ``bin_dir`` (with ``wandb``) goes first on ``PATH``: it holds the
    ``wandb`` command (:func:`write_wandb_command`)."""
    env = dict(os.environ if base is None else base)
    if wandb:
        env["TRACKLET_WANDB_COMPAT"] = "1"
        if bin_dir is not None:
            env["PATH"] = os.pathsep.join(p for p in (str(bin_dir), env.get("PATH", "")) if p)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LAUNCH_DIR), existing) if p)
    env["TRACKLET_LAUNCHER_PID"] = str(os.getpid())
    for key, value in (("TRACKLET_LAUNCH_PROJECT", project), ("TRACKLET_LAUNCH_NAME", name),
                       ("TRACKLET_LAUNCH_JOB_TYPE", job_type)):
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    return env


def write_wandb_command(directory: Path) -> Path:
    """A ``wandb`` executable in ``directory`` that runs W&B's sweep command line over tracklet
    (``tracklet.compat.wandb.cli``: ``wandb sweep``, ``wandb agent``) with this interpreter: under
    ``tracklet run --wandb`` it shadows a real ``wandb`` on ``PATH``, as ``import wandb`` does."""
    import shlex

    path = directory / "wandb"
    path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m tracklet.compat.wandb \"$@\"\n")
    path.chmod(0o755)
    return path


def run_command(command: Sequence[str], *, project: str | None = None, name: str | None = None,
                job_type: str | None = None, wandb: bool = False) -> int:
    """Run ``command`` with tracking on; return its exit code (128 + N when killed by signal N)."""
    import tempfile

    if not command:
        raise ValueError("tracklet run needs a command, e.g. tracklet run -- python train.py")
    if not wandb:
        return _run_child(command, launch_environment(project, name, job_type))
    with tempfile.TemporaryDirectory(prefix="tracklet-wandb-bin-") as bin_dir:
        write_wandb_command(Path(bin_dir))
        return _run_child(command, launch_environment(project, name, job_type, wandb=True, bin_dir=Path(bin_dir)))


def _run_child(command: Sequence[str], env: dict[str, str]) -> int:
    import shutil
    import tempfile

    from tracklet.core.launchexit import REPORT_ENV, Online, correct_exits

    # The child names the exit record of each run it finished at exit here; the runs whose
    # recorded exit code is not the child's real one are corrected (core/launchexit.py), and an
    # online one's server is sent the correction (its uploader stopped with the child).
    report_dir = Path(tempfile.mkdtemp(prefix="tracklet-run-"))
    try:
        report = report_dir / "exits"
        report.touch(mode=0o600)
        code = _wait_child(command, {**env, REPORT_ENV: str(report)})
        corrected: list[Online] = []
        for problem in correct_exits(report, code, corrected):
            print(f"tracklet run: {problem}", file=sys.stderr)
        for online in corrected:
            _send_correction(online)
        return code
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)


def _send_correction(online: Any) -> None:
    """Send an online run's corrected exit to its server (``tracklet sync`` of that one run: its key
    from $TRACKLET_API_KEY or `tracklet login`); on failure, say how to send it later."""
    from tracklet.core.layout import RunPaths

    paths = RunPaths(online.root, online.project, online.run_id)
    try:
        from tracklet.client.sync import SyncClient

        with SyncClient(online.server, give_up_after=10.0) as client:
            client.sync_run(paths)
    except Exception as error:  # the log holds the correction; the server keeps the first exit until synced
        print(f"tracklet run: {online.project}/{online.run_id}: the corrected exit code was not sent to "
              f"{online.server} ({error}); send it with `tracklet --dir {online.root} sync --url {online.server} "
              f"{online.project}/{online.run_id}`", file=sys.stderr)


def _wait_child(command: Sequence[str], env: dict[str, str]) -> int:
    import signal  # here, not at the top: every `tracklet` command imports this module
    import subprocess

    try:
        child = subprocess.Popen(list(command), env=env)
    except FileNotFoundError:
        raise ValueError(f"command not found: {command[0]}") from None
    forwarded = {}

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    # Ctrl-C reaches the child through the terminal's process group; SIGTERM (a scheduler stopping
    # the job) is passed on so the child's run is finished rather than left running.
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            forwarded[signum] = signal.signal(signum, forward)
    previous_int = signal.signal(signal.SIGINT, lambda s, f: None)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        for signum, handler in forwarded.items():
            signal.signal(signum, handler)
    return 128 - code if code < 0 else code


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - thin wrapper for `python -m`
    return run_command(list(sys.argv[1:] if argv is None else argv))


# ---------------------------------------------------------------- the command


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--project", "-p", default=None, help="Project to record the run in (default: $TRACKLET_PROJECT or 'default').")
@click.option("--name", "-n", default=None, help="Run name (default: a generated one).")
@click.option("--job-type", default=None, help="Job type, e.g. train or eval.")
@click.option("--wandb", "wandb", is_flag=True, default=False,
              help="Run a script written for W&B: `import wandb` resolves to tracklet.compat.wandb "
                   "(also in its subprocesses); the run starts at its wandb.init(). See docs/wandb-compat.md.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def run(ctx: click.Context, project: str | None, name: str | None, job_type: str | None, wandb: bool,
        command: tuple[str, ...]) -> None:
    """Run COMMAND (e.g. python train.py ARGS) with tracking on, without changing the script.

    Lightning, Hugging Face, Keras and JAX are recorded automatically (tracklet.autolog); the
    run records the command line, console, environment and system metrics. Exits with the
    command's exit code. Put -- before the command: tracklet run -- python train.py --lr 3e-4
    """
    import os

    state = _state(ctx)
    if state.root_option is not None:
        os.environ["TRACKLET_DIR"] = str(state.root_option)
    try:
        code = run_command(command, project=project, name=name, job_type=job_type, wandb=wandb)
    except ValueError as error:
        raise CliError(str(error)) from None
    ctx.exit(code)
