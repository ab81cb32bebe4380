"""W&B's sweep command line over tracklet: ``wandb sweep`` and ``wandb agent`` (docs/wandb-compat.md).

Under ``tracklet run --wandb`` a ``wandb`` executable that runs :func:`main` comes first on
``PATH`` (``cli/launch.py``), and ``python -m wandb`` resolves to this layer's ``__main__``, so a
job script written for W&B works unchanged::

    wandb sweep --project demo sweep.yaml        # prints W&B's lines, the id among them
    wandb agent --count 20 demo/SWEEP_ID         # runs the sweep's program per trial

The sweep lives where ``wandb.sweep`` puts it: tracklet's data root (local mode), or the server
with ``TRACKLET_MODE=online`` and ``TRACKLET_BASE_URL``. Only the sweep commands are provided;
``login``, ``online``, ``offline`` and ``disabled`` are accepted and do nothing (tracklet records
locally unless told otherwise); any other command exits 2 saying so.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tracklet.compat.wandb._messages import termerror, termlog, termwarn

SWEEP_STATES = {"stop": "stopped", "cancel": "stopped", "pause": "paused", "resume": "running"}
ACCEPTED = frozenset({"login", "online", "offline", "disabled", "enabled"})  # nothing to do in tracklet
# What to run instead, for commands job scripts use after training (an offline run's upload, a
# run's files): tracklet has them under its own names.
HINTS = {
    "sync": ": tracklet recorded the runs in its data root as they ran (no wandb/offline-run-* folders); "
            "`tracklet sync --all` (or `tracklet sync PROJECT/RUN_ID`) sends them to the tracklet server at "
            "$TRACKLET_BASE_URL",
    "artifact": ": use `tracklet artifact` (ls, get, put, rm, gc)",
    "restore": ": `tracklet reproduce PROJECT/RUN_ID` checks out a run's code, diff and config",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wandb", description="W&B's sweep commands, provided by tracklet.")
    parser.add_argument("--version", action="store_true", help="Print the W&B version the layer follows.")
    commands = parser.add_subparsers(dest="command")
    sweep = commands.add_parser("sweep", help="Create a sweep from a config file, or control one.")
    sweep.add_argument("-p", "--project", default=None)
    sweep.add_argument("-e", "--entity", default=None)
    sweep.add_argument("--name", default=None, help="The sweep's name (the config's name: key).")
    sweep.add_argument("--controller", action="store_true", help="Accepted: tracklet needs no controller.")
    sweep.add_argument("--verbose", action="store_true")
    sweep.add_argument("--update", default=None, metavar="SWEEP_ID")
    for flag in SWEEP_STATES:
        sweep.add_argument(f"--{flag}", action="store_true")
    sweep.add_argument("config_yaml_or_sweep_id")
    agent = commands.add_parser("agent", help="Run trials of a sweep: its program, once per trial.")
    agent.add_argument("-p", "--project", default=None)
    agent.add_argument("-e", "--entity", default=None)
    agent.add_argument("--count", type=int, default=None)
    agent.add_argument("--forward-signals", action="store_true", help="Accepted: signals always stop the trial.")
    agent.add_argument("sweep_id")
    for name in sorted(ACCEPTED):
        commands.add_parser(name, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``wandb sweep ...`` / ``wandb agent ...``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    known = {"sweep", "agent", *ACCEPTED}
    first = next((a for a in args_list if not a.startswith("-")), None)
    if first is not None and first not in known:
        termerror(f"`wandb {first}` is not provided by tracklet's W&B layer (only `wandb sweep` and "
                  f"`wandb agent`){HINTS.get(first, '')}; see docs/wandb-compat.md")
        return 2
    args = _parser().parse_args(args_list)
    if args.version:
        from tracklet.compat.redirect import WANDB_VERSION

        print(f"wandb, version {WANDB_VERSION} (tracklet's W&B layer)")
        return 0
    if args.command is None:
        _parser().print_help()
        return 0
    if args.command in ACCEPTED:
        termlog(f"`wandb {args.command}`: nothing to do, tracklet records locally unless "
                "TRACKLET_MODE=online (docs/wandb-compat.md)")
        return 0
    from tracklet.compat.wandb.errors import Error, UsageError

    try:
        if args.command == "sweep":
            return _sweep(args)
        return _agent(args)
    except UsageError as error:  # a bad config, an unknown sweep
        termerror(str(error))
        return 2
    except Error as error:  # the agent stopped: its trials failed in a row
        termerror(str(error))
        return 1
    except KeyboardInterrupt:
        return 130


def _sweep(args: argparse.Namespace) -> int:
    from tracklet.compat.wandb._sweeps import agent_command, create_sweep, set_state
    from tracklet.errors import SweepSpecError
    from tracklet.sweeps.spec import load_text

    if args.update:
        termerror("wandb sweep --update is not supported by tracklet: create a new sweep (tracklet sweep extend "
                  "sets a new run cap)")
        return 2
    flags = [flag for flag in SWEEP_STATES if getattr(args, flag)]
    if len(flags) > 1:
        termerror(f"choose one of --{', --'.join(flags)}")
        return 2
    if flags:
        flag = flags[0]
        if flag == "cancel":
            termwarn("--cancel stops the sweep: running trials finish, no new ones start")
        set_state(args.config_yaml_or_sweep_id, SWEEP_STATES[flag])
        termlog(f"Sweep {args.config_yaml_or_sweep_id}: {SWEEP_STATES[flag]}")
        return 0
    path = Path(args.config_yaml_or_sweep_id)
    try:
        text = path.read_text()
    except OSError as error:
        termerror(f"can't read the sweep config {path}: {error.strerror or error}")
        return 2
    try:
        config = load_text(text)
    except SweepSpecError as error:
        termerror(f"{path}: {error}")
        return 2
    if args.name and isinstance(config, dict):
        config["name"] = args.name
    termlog(f"Creating sweep from: {path}")
    sweep_id, project = create_sweep(config, project=args.project)
    entity = args.entity or os.environ.get("WANDB_ENTITY")
    termlog(f"Creating sweep with ID: {sweep_id}")
    reference = f"{entity}/{project}/{sweep_id}" if entity else f"{project}/{sweep_id}"
    termlog(f"Run sweep agent with: {agent_command(reference)}")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from tracklet.compat.wandb._sweeps import run_agent

    if args.count is not None and args.count < 1:
        termerror(f"--count must be >= 1; got {args.count}")
        return 2
    termlog(f"Starting wandb agent (tracklet) for sweep {args.sweep_id}")
    run_agent(args.sweep_id, function=None, entity=args.entity, project=args.project, count=args.count)
    return 0
