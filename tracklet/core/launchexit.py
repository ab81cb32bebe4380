"""``tracklet run``'s exit code correction: the launcher sees the script's real exit code, which a
script's interpreter can't always tell its runs.

A script ending with ``raise SystemExit(n)`` raised in a function (``def main(): ... raise
SystemExit(2)``) goes through no hook that tracklet can set at no cost to the training thread
(see ``core/lifecycle.py``): its runs, finished at interpreter exit, record exit code 0. So the
launched process writes one line per run it finished at exit into the file the launcher named in
``TRACKLET_LAUNCH_REPORT`` (:func:`report_exit`): the run's record log, where its last frame ends
and the exit record's fields. Once the process has exited, the launcher compares each with the
real exit code and, where they differ, appends a second ``RunExit`` to the run's log with the real
code and the first one's time and error (:func:`correct_exits`): readers and the store take a
run's last exit record (``core/reader.py``, ``store/ingest.py``), as they take a resumed session's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

REPORT_ENV = "TRACKLET_LAUNCH_REPORT"
LAUNCHER_ENV = "TRACKLET_LAUNCHER_PID"
# What the launcher reads of a report, at most: a line per run, a traceback at most in each.
MAX_REPORT_BYTES = 16 << 20
# Bytes the log may have grown by after the line was written (a worker that outlived finish()'s
# timeout wrote them), checked frame by frame before appending after them.
MAX_TAIL_BYTES = 64 << 20
_FIELDS = {"exit_code": int, "end_time": float, "runtime": float, "error": str, "traceback": str}


def report_exit(run: Any) -> None:
    """In the process ``tracklet run`` started (not in the processes it starts): say which exit
    record ``run`` wrote as it was finished at interpreter exit. Never raises."""
    try:
        path = os.environ.get(REPORT_ENV)
        if not path or os.environ.get(LAUNCHER_ENV) != str(os.getppid()):
            return
        fields = run._exit_fields
        sender = run._sender
        if fields is None or sender is None or run._paths is None:
            return
        from tracklet.core.recordlog import RecordLogWriter

        writer = next((sink for sink in sender.sinks if isinstance(sink, RecordLogWriter)), None)
        if writer is None or writer._fd >= 0 or writer._pending:  # not closed with every frame written
            return
        line = {"log": str(writer.path), "end": writer.offset,
                **{key: value for key, value in fields.items() if key in _FIELDS}}
        settings = run.settings
        if settings.mode == "online" and settings.base_url:  # its server holds the first exit: sent there too
            paths = run._paths
            line["online"] = {"server": settings.base_url, "root": str(paths.root), "project": paths.project,
                              "run_id": paths.run_id}
        data = (json.dumps(line) + "\n").encode()
        # No O_CREAT: the launcher made the file; an inherited name of a gone one creates nothing.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except Exception:  # the run is recorded; only the launcher's correction is lost
        pass


def os_status(code: int) -> int:
    """The status a process exiting with ``code`` reports to its parent (POSIX: its low 8 bits,
    so ``sys.exit(256)`` is 0 and ``sys.exit(-1)`` is 255)."""
    return code & 0xFF if os.name == "posix" else code & 0xFFFFFFFF


def correct_exits(report: Path, code: int, corrected: list[Online] | None = None) -> list[str]:
    """In the launcher, once the process it started has exited with ``code`` (128 + N when killed
    by signal N): give each run it reported another exit code a last ``RunExit`` with ``code``.
    Returns what could not be corrected, one message each (the run keeps its first exit).
    ``corrected``: gets each corrected online run (``Online``), whose server must be sent the new
    record (the run's uploader had stopped: cli/launch.py syncs it)."""
    from tracklet.core.recordlog import RecordLogError, append_record

    problems: list[str] = []
    try:
        with open(report, "rb") as file:
            data = file.read(MAX_REPORT_BYTES)
    except OSError as error:
        return [f"cannot read the exit report {report}: {error}"]
    for raw in data.splitlines():
        entry = _entry(raw)
        if entry is None:
            continue  # a line cut short by a killed process, or not ours
        log, end, fields = entry
        recorded = fields["exit_code"]
        if os_status(recorded) == os_status(code):
            continue
        try:
            append_record(log, end, _exit_payload({**fields, "exit_code": code}), max_tail=MAX_TAIL_BYTES)
        except (OSError, RecordLogError) as error:
            problems.append(f"{log}: the run keeps exit code {recorded} though the command exited with {code}: {error}")
            continue
        online = _online(raw, log)
        if online is not None and corrected is not None:
            corrected.append(online)
    return problems


@dataclasses.dataclass(frozen=True)
class Online:
    """A corrected run recorded online: its server, data root, project and id."""

    server: str
    root: Path
    project: str
    run_id: str


def _online(raw: bytes, log: Path) -> Online | None:
    """The report line's online run, if it names one whose log is ``log``."""
    found = json.loads(raw).get("online")
    if not isinstance(found, dict) or not all(isinstance(found.get(key), str)
                                              for key in ("server", "root", "project", "run_id")):
        return None
    online = Online(found["server"], Path(found["root"]), found["project"], found["run_id"])
    from tracklet.core.layout import RunPaths

    try:
        paths = RunPaths(online.root, online.project, online.run_id)
    except ValueError:
        return None
    return online if paths.log_file == log else None


def _entry(raw: bytes) -> tuple[Path, int, dict[str, Any]] | None:
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(line, dict):
        return None
    log, end = line.get("log"), line.get("end")
    if not isinstance(log, str) or type(end) is not int or end < 0:
        return None
    fields: dict[str, Any] = {}
    for key, kind in _FIELDS.items():
        value = line.get(key)
        if value is None:
            continue
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            return None
        fields[key] = value
    if "exit_code" not in fields or not -(1 << 31) <= fields["exit_code"] < (1 << 31):
        return None
    return Path(log), end, fields


def _exit_payload(fields: dict[str, Any]) -> bytes:
    from tracklet.core.run import _exit_record

    return _exit_record(fields).SerializeToString()
