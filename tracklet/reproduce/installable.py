"""Whether a run's pinned packages can still be installed, asked before anything is done
(docs/reproduce.md, "The plan").

A version can vanish from an index (yanked, deleted, a private index no longer configured) or
never have been on the ones this machine uses. ``--env venv|uv`` would then fail at the install,
after the working tree was checked out: the plan asks uv instead whether each ``name==version``
resolves from the package sources pip on this machine uses (``execute.pip_sources``), without
dependencies and without touching any environment (``uv pip compile --no-deps``). uv names one
requirement it can't find per answer, so a found one is left out and the rest asked again, up to
``MAX_ROUNDS`` times. uv's cache is asked first (offline), the indexes only about what it lacks.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

TIMEOUT = 60.0  # seconds for each question to uv (an index over the network)
MAX_ROUNDS = 6
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
# uv's reasons for a root requirement it can't satisfy: the package, or the pinned version, is not
# in any of the sources ("not found in the package registry", "there is no version of X==1.0").
NOT_FOUND = re.compile(r"Because (?:there is no version of )?([A-Za-z0-9][A-Za-z0-9._-]*?)(?:==\S+)? "
                       r"(?:was not found|and you require)")


@dataclasses.dataclass
class Check:
    """``missing``: ``name==version`` requirements no source has; ``error``: why the check could not
    answer (uv absent, the index unreachable, ...), "" when it did; ``more``: rounds ran out."""

    missing: list[str] = dataclasses.field(default_factory=list)
    error: str = ""
    more: bool = False


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _ask(uv: str, lines: Sequence[str], sources: Sequence[str], python: str, offline: bool,
         folder: Path) -> tuple[bool, str, str]:
    """``(resolved, the requirement name uv could not find or "", uv's error text)``."""
    listing = folder / "requirements.txt"
    listing.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    command = [uv, "pip", "compile", "--quiet", "--no-deps", "--no-header", *(["--offline"] if offline else []),
               "--python", python, *sources, str(listing), "-o", str(folder / "resolved.txt")]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired:
        return False, "", f"uv did not answer within {TIMEOUT:.0f} s"
    except OSError as error:
        return False, "", f"can't run uv: {error.strerror or error}"
    if done.returncode == 0:
        return True, "", ""
    text = " ".join(done.stderr.split())
    found = NOT_FOUND.search(text)
    return False, _normal(found.group(1)) if found else "", text[-400:] or f"uv exit status {done.returncode}"


def check(requirements: Sequence[str], uv: str, sources: Sequence[str], python: str = sys.executable) -> Check:
    """Which of ``requirements``' ``name==version`` lines can't be found in ``sources`` (uv options:
    ``--index-url`` ...) for interpreter ``python``. Other lines (local paths, VCS URLs) are left out.

    uv's cache answers first (offline: a fraction of a second for hundreds of packages, where the
    indexes take seconds); a package the cache lacks is then asked of the sources alone."""
    pending = {_normal(match.group(1)): line for line in requirements if (match := PINNED.match(line.strip()))}
    result = Check()
    with tempfile.TemporaryDirectory(prefix="tracklet-installable-") as temporary:
        folder = Path(temporary)
        for _ in range(MAX_ROUNDS):
            if not pending:
                return result
            resolved, name, error = _ask(uv, list(pending.values()), sources, python, True, folder)
            if resolved:
                return result
            if name not in pending:
                break  # not a package the cache lacks: the sources answer for all
            line = pending.pop(name)
            resolved, missing, error = _ask(uv, [line], sources, python, False, folder)
            if not resolved:
                if missing != name:
                    result.error = error
                    return result
                result.missing.append(line)
        for _ in range(MAX_ROUNDS):
            if not pending:
                return result
            resolved, name, error = _ask(uv, list(pending.values()), sources, python, False, folder)
            if resolved:
                return result
            if name not in pending:
                result.error = error
                return result
            result.missing.append(pending.pop(name))
    result.more = bool(pending)
    return result
