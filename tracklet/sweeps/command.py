"""A trial's command line from the sweep's ``command`` and W&B's macros.

The default command is W&B's: ``${env} ${interpreter} ${program} ${args}``. Macros (whole list
items, as W&B substitutes them):

- ``${env}``: ``/usr/bin/env``; ``${interpreter}``: the agent's own Python (``sys.executable``,
  so the trial runs in the agent's environment; W&B uses ``python`` from ``PATH``);
  ``${program}``: the config's ``program``.
- ``${args}``: ``--name=value`` per top-level parameter; ``${args_no_hyphens}``: ``name=value``;
  ``${args_no_boolean_flags}``: ``--name`` for a true boolean, nothing for a false one, else
  ``--name=value``; ``${args_json}``: one argument, the parameters as a JSON object;
  ``${args_json_file}``: the path of a file holding that JSON.
- ``${envvar:NAME}``: the agent's environment variable ``NAME`` (also inside an item).

Values are formatted as W&B formats them (Python's ``str``: ``True``, ``0.001``, a nested
parameter's dict as ``{'lr': 0.1}``), so scripts written for W&B's agent parse them unchanged.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tracklet.errors import SweepError

DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
_ENVVAR = re.compile(r"\$\{envvar:([A-Za-z_][A-Za-z0-9_]*)\}")


def build_command(command: Sequence[str] | None, program: str | None, config: Mapping[str, Any],
                  json_file: Path | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The argument list for one trial with ``config`` (the trial's nested parameters)."""
    environ = os.environ if environ is None else environ
    template = list(command or DEFAULT_COMMAND)
    if program is None and "${program}" in template:
        raise SweepError("the sweep has no program: to run (give program: or a command: in its config)")
    flags = [f"--{name}={value}" for name, value in config.items()]
    macros: dict[str, list[str]] = {
        "env": ["/usr/bin/env"],
        "interpreter": [sys.executable],
        "program": [program or ""],
        "args": flags,
        "args_no_hyphens": [f"{name}={value}" for name, value in config.items()],
        "args_no_boolean_flags": [f"--{name}" if value is True else f"--{name}={value}"
                                  for name, value in config.items() if value is not False],
        "args_json": [json.dumps(dict(config))],
    }
    line: list[str] = []
    for item in template:
        if item.startswith("${") and item.endswith("}") and item[2:-1] in macros:
            line.extend(macros[item[2:-1]])
        elif item == "${args_json_file}":
            if json_file is None:
                raise SweepError("${args_json_file} needs a file to write the parameters to")
            json_file.write_text(json.dumps(dict(config)))
            line.append(str(json_file))
        else:
            line.append(_ENVVAR.sub(lambda match: _envvar(match.group(1), environ), item))
    return line


def check_command(command: Sequence[str] | None, program: str | None,
                  environ: Mapping[str, str] | None = None) -> None:
    """Raise ``SweepError`` if the sweep's command can't be built for any trial (no program, an
    ``${envvar:NAME}`` not set), before an agent runs one; writes nothing (``${args_json_file}``'s
    file is each trial's own)."""
    template = ["${args_json}" if item == "${args_json_file}" else item for item in (command or DEFAULT_COMMAND)]
    build_command(template, program, {}, environ=environ)


def _envvar(name: str, environ: Mapping[str, str]) -> str:
    if name not in environ:
        raise SweepError(f"the sweep's command uses ${{envvar:{name}}} but {name} is not set in the agent's "
                         "environment")
    return environ[name]
