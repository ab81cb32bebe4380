"""``RecordedRun``: one run as its record log tells it, read lazily, straight from the log.

``tracklet.Api`` (``tracklet/api/local.py``) lists a data root's runs as ``RecordedRun``s; the
store answers cross-run queries above this layer.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Sequence

from tracklet.core import identity
from tracklet.core.layout import PARTS_DIR, RunPaths
from tracklet.core.parsecost import parse_record
from tracklet.core.parts import last_record_time, merge_parts, run_state, sets_state
from tracklet.core.reader import (
    Alert, Checkpoint, ConsoleLine, History, MetricDefinition, RunState, damage_summary, replay, run_state_label,
    warn_damage,
)
from tracklet.core.recordlog import Damage, read_first_payload
from tracklet.core.runuser import RunUser
from tracklet.core.redact import redact_command, redact_url
from tracklet.proto import records_pb2 as pb
from tracklet.errors import RunNotFound  # noqa: F401  (defined there; imported from here too)


def _first_start(log_file: Path) -> pb.RunStart | None:
    """The ``RunStart`` that is log ``log_file``'s first frame, reading that frame alone; None
    where there is none (no log, an empty one, a damaged or unreadable head)."""
    try:
        payload = read_first_payload(log_file)
        record = parse_record(payload) if payload is not None else None  # bounded memory (core/parsecost.py)
    except Exception:  # a damaged or unreadable log lists under its id; reading it says what is wrong
        return None
    if record is None or record.WhichOneof("kind") != "run_start" or not record.run_start.run_id:
        return None
    return record.run_start


class RecordedRun:
    """A run as its record log tells it. Read lazily on first use; :meth:`refresh` reads again."""

    def __init__(self, paths: RunPaths, *, files_dir: Path | None = None) -> None:
        self._paths = paths
        self._files_dir = files_dir
        self._state: RunState | None = None
        self._label: str | None = None
        self._first: pb.RunStart | None = None
        self._first_path = paths.log_file  # the log _first is from (_first_log)
        self._known: dict[str, Any] | None = None  # name, tags...: see _identity
        self._exit_code: int | None = None  # a shared run's, where its parts set its state (core/parts.py)
        self._shared_exit = False

    def _start_record(self) -> pb.RunStart | None:
        """The run's first ``RunStart``: from the full read if done, else from the first frame of
        its log alone (cheap, for listing and sorting many runs; ``_first_log``)."""
        if self._state is not None:
            return self._state.start
        if self._first is None:
            self._first_path, self._first = self._paths.log_file, pb.RunStart()
            start = _first_start(self._paths.log_file)
            if start is not None:
                self._first = start
            elif self._paths.part is None:  # a shared run's first part by label that recorded a start
                for label in self._paths.parts():
                    log_file = self._paths.part_paths(label).log_file
                    start = _first_start(log_file)
                    if start is not None:
                        self._first_path, self._first = log_file, start
                        break
        return self._first if self._first.run_id else None

    def _first_log(self) -> Path:
        """The log whose start is the run's (as a full read's ``merge_parts`` has it): its own,
        else (a shared run whose primary never started, or left its log without a start: killed
        as it created it) its first part by label that recorded one."""
        if self._state is None:
            self._start_record()
        return self._first_path

    # identity known without reading the log
    @property
    def id(self) -> str:
        return self._paths.run_id

    @property
    def project(self) -> str:
        return self._paths.project

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    @property
    def dir(self) -> str:
        return str(self._paths.run_dir)

    @property
    def data_root(self) -> Path:
        """The data root the run's log is in (where its artifacts are, for a local run)."""
        return self._paths.root

    @property
    def files_dir(self) -> Path:
        """Where the run's files (``diff.patch``, the code snapshot, ...) are read from: its
        ``files/`` directory, or the copy a server made of the files synced to it."""
        return self._files_dir if self._files_dir is not None else self._paths.files_dir

    def refresh(self) -> "RecordedRun":
        self._known = None
        self._shared_exit = False
        # a shared run whose primary never started (no run.tlog): its parts are the run
        primary = self._paths.part is not None or self._paths.log_file.exists() or not self._paths.parts()
        try:
            state = replay(self._paths.log_file) if primary else RunState()
        except OSError as error:  # unreadable (permissions, I/O error): a damaged run, not a failed listing
            state = RunState()
            size = 0
            try:
                size = self._paths.log_file.stat().st_size
            except OSError:
                pass
            state.damage = Damage(0, size, f"unreadable: {error.strerror or error}")
            state.damages = [state.damage]
        label = run_state_label(state, self._paths.log_file) if primary else "running"
        warn_damage(state, self._paths.log_file, live=label == "running")
        if self._paths.part is None:
            merge_parts(state, self._paths)  # a shared run's secondary writers (docs/shared-runs.md)
            if not primary or any(sets_state(info) for info in state.parts.values()):
                own = (label, state.exit.exit_code if state.exit is not None else None) if primary else None
                label, self._exit_code = run_state(own, state.parts)
                self._shared_exit = True
        self._state, self._label = state, label
        return self

    @property
    def _read(self) -> RunState:
        if self._state is None:
            self.refresh()
        assert self._state is not None
        return self._state

    @property
    def state(self) -> str:
        """``running``, ``finished``, ``failed`` or ``crashed``."""
        if self._label is None:
            self.refresh()
        assert self._label is not None
        return self._label

    @property
    def preempting(self) -> float | None:
        """When the run's last session said it expects to be stopped and resumed
        (``Run.mark_preempting``, W&B's ``run.mark_preempting()``; seconds since the epoch), or
        None: not marked, or resumed since."""
        return self._read.preempting or None

    # Name, tags, notes, group and job type: the RunStart's, changed by any RunUpdate after it.

    def _identity(self) -> dict[str, Any]:
        if self._state is not None:
            return self._state.identity
        if self._known is None:  # not read yet: the first frame and the RunUpdates only
            start = self._start_record()
            self._known = {"name": "", "tags": [], "notes": "", "group": "", "job_type": ""}
            if start is not None:
                try:
                    self._known = identity.read_identity(self._first_log(), start)
                except OSError:  # unreadable now: the start's values; reading the run says what is wrong
                    self._known = identity.of_start(start)
        return self._known

    @property
    def name(self) -> str:
        return self._identity()["name"] or self.id

    @property
    def tags(self) -> list[str]:
        return list(self._identity()["tags"])

    @property
    def group(self) -> str:
        return str(self._identity()["group"])

    @property
    def job_type(self) -> str:
        return str(self._identity()["job_type"])

    @property
    def notes(self) -> str:
        return str(self._identity()["notes"])

    @property
    def created_at(self) -> float | None:
        """Start time, seconds since the epoch."""
        start = self._start_record()
        return start.start_time if start is not None else None

    @property
    def last_step(self) -> int | None:
        """The last step in the history (None when nothing was logged)."""
        return self._read.last_step

    @property
    def updated_at(self) -> float | None:
        """When the run last wrote a record that carries a time: its last session's start, its
        last history row or its exit (seconds since the epoch), the store's ``updated_at``; None
        for a log without a start. A shared run's: the latest of any of its writers'."""
        state = self._read
        if state.parts:
            return state.merged_updated_at
        return last_record_time(state)

    @property
    def exit_code(self) -> int | None:
        end = self._read.exit
        if self._shared_exit:  # a shared run whose state its parts set too (core/parts.py)
            return self._exit_code
        return end.exit_code if end is not None else None

    @property
    def error(self) -> str | None:
        end = self._read.exit
        return end.error or None if end is not None else None

    @property
    def traceback(self) -> str | None:
        end = self._read.exit
        return end.traceback or None if end is not None else None

    @property
    def runtime(self) -> float | None:
        """Seconds from start to exit (or to the last record while running)."""
        state = self._read
        if state.start is None:
            return None
        if state.exit is not None:
            return state.exit.end_time - state.start.start_time
        if state.batches and state.batches[-1].times:
            return state.batches[-1].times[-1] - state.start.start_time
        return None

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._read.config)

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self._read.summary)

    @property
    def user(self) -> RunUser | None:
        """Who ran it: the OS user name its process recorded (``metadata["username"]``), unverified;
        None for a run recorded without one. Read from the log's first record alone."""
        start = self._start_record()
        return RunUser(name=start.username) if start is not None and start.username else None

    @property
    def metadata(self) -> dict[str, Any]:
        """Where and how the run ran: host, command, Python, git state, packages, hardware."""
        state = self._read
        info: dict[str, Any] = {}
        start = state.start
        if start is not None:
            info.update(
                host=start.host,
                pid=start.pid,
                python=start.python_version,
                platform=start.platform,
                command=redact_command(start.command),  # logs recorded before redaction too
                cwd=start.cwd,
                tracklet_version=start.tracklet_version,
                sessions=len(state.sessions),
                reproduces=start.reproduces or None,
            )
            if start.username:  # the OS user, as W&B's metadata names it (core/runuser.py)
                info["username"] = start.username
        info.update(copy.deepcopy(state.seeds))  # seeds, seeds_dropped, seeds_unknown (core/seeds.py)
        env = state.environment
        if env is not None:
            info["git"] = {
                "commit": env.git_commit,
                "branch": env.git_branch,
                "remote": redact_url(env.git_remote),
                "root": env.git_root,
                "dirty": env.git_dirty,
                "diff_sha256": env.git_diff_sha256,
            } if env.git_root else None
            info.update(
                hostname=env.hostname,
                os=env.os,
                executable=env.executable,
                cpu_model=env.cpu_model,
                cpu_count=env.cpu_count,
                memory_total_bytes=env.memory_total_bytes,
                gpus=list(env.gpus) or _monitored_gpu_names(state),
                packages={p.name: p.version for p in env.packages},
                package_sources=[
                    {"name": p.name, "version": p.version, "url": p.url, "editable": p.editable, "vcs": p.vcs,
                     "commit": p.commit, "requested_revision": p.requested_revision}
                    for p in env.packages if p.url
                ],
                python_implementation=env.python_implementation,
                variables=dict(sorted(env.variables.items())),
                cuda_version=env.cuda_version,
                cudnn_version=env.cudnn_version,
                code={
                    "program": env.program,
                    "files": [{"path": f.path, "size_bytes": f.size_bytes, "sha256": f.sha256} for f in env.code_files],
                    "skipped": list(env.code_skipped),
                    # the code artifact version holding them ("" for the older form: files/code/)
                    "artifact": next((f"{ref.project}/{ref.name}:v{ref.version}" for ref in state.artifacts_logged
                                      if ref.type == "code"), ""),
                },
            )
            if env.incomplete:
                info["environment_incomplete"] = list(env.incomplete)
                info["environment_incomplete_reasons"] = dict(sorted(env.incomplete_reasons.items()))
        if state.parts:  # a shared run's secondary writers, as the store's metadata has them
            info["parts"] = copy.deepcopy(state.parts)
            if self._paths.part is None and not self._paths.log_file.exists():
                info["no_primary"] = True  # its primary never started: the run is its parts (docs/shared-runs.md)
        return info

    @property
    def start_record(self) -> pb.RunStart | None:
        """The run's first ``RunStart`` record as written (every field; ``metadata`` has the
        usual ones), or None when the log has none."""
        return self._read.start

    @property
    def environment_record(self) -> pb.Environment | None:
        """The run's ``Environment`` record as written (git state, packages with their sources,
        the code snapshot, variables: what ``tracklet reproduce`` reads), or None."""
        return self._read.environment

    @property
    def used_artifacts(self) -> list[dict[str, Any]]:
        """The artifact versions this run used (``use_artifact``), in order, each once:
        ``{"project", "name", "type", "version", "digest"}`` (``version`` is N of vN); a run's logged
        table it read is type ``run_table``, ``run-<id>-<key>`` (docs/tables.md#lineage)."""
        return _distinct_versions(self._read.artifacts_used)

    @property
    def logged_artifacts(self) -> list[dict[str, Any]]:
        """The artifact versions this run logged (``log_artifact``, and its code snapshot: type
        ``code``), in order, each once; the same keys as ``used_artifacts``."""
        return _distinct_versions(self._read.artifacts_logged)

    @property
    def parts(self) -> dict[str, dict[str, Any]]:
        """A shared run's secondary writers (docs/shared-runs.md), by label: each one's ``state``
        (``running``, ``finished``, ``failed``, ``crashed``), ``exit_code``, ``host``, ``pid``,
        ``start_time`` and ``last_step``; {} for a run with one writer."""
        return {label: dict(info) for label, info in self._read.parts.items()}

    @property
    def console(self) -> list[ConsoleLine]:
        return list(self._read.console)

    @property
    def alerts(self) -> list[Alert]:
        return list(self._read.alerts)

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints recorded with ``log_checkpoint`` (or by an integration), in order."""
        return list(self._read.checkpoints)

    @property
    def metric_definitions(self) -> list[MetricDefinition]:
        return list(self._read.metric_definitions)

    @property
    def damaged(self) -> bool:
        """True when part of the record log could not be read (see :attr:`damage`)."""
        return self.damage is not None

    @property
    def damage(self) -> str | None:
        """What of the record log could not be read, in one line (damaged regions skipped, invalid
        records skipped); ``None`` when every byte was read. A running run's half-written last
        frame is not damage."""
        return damage_summary(self._read, live=self.state == "running")

    def table(self, key: str, step: int | None = None, *, version: int | None = None) -> Any:
        """The table logged under ``key`` as a lazy query (``tracklet.media.query.TableQuery``:
        ``.filter("score > 0.9")``, ``.sort(col, descending=True)``, ``.page(0, 100)``, ``len()``,
        ``.to_pandas()``, ``.to_arrow()``): the version at ``step`` (default: the latest; for an
        INCREMENTAL table every increment up to it), or run-table version ``v<version>``
        (docs/tables.md#version-numbers: by its record; a shared run's writers may log a key at
        one step). ``TableNotFound`` if there is none."""
        from tracklet.core.extensions import load

        tables = self._read.tables
        if version is not None:
            from tracklet.core.run_tables import records_of_version
            from tracklet.errors import TableNotFound

            chosen = records_of_version(tables, key, version)
            if chosen is None:
                raise TableNotFound(f"no version v{version} of table {key!r} in this run")
            return load("tables").open_table(self._paths.root, chosen, key)
        return load("tables").open_table(self._paths.root, tables, key, step)

    def table_keys(self) -> list[str]:
        """The keys this run logged tables under (``tracklet.Table``), in the order first logged."""
        from tracklet.core.extensions import load

        return list(load("tables").table_keys(self._read.tables))

    def keys(self) -> list[str]:
        """Every key logged to the history, in first-use order."""
        return [self._read.key_names[k] for k in sorted(self._read.key_names)]

    def history(self, keys: Sequence[str] | None = None) -> History:
        """Columns ``_step``, ``_timestamp``, ``_runtime`` and one per key (``None`` where missing)."""
        return self._read.history(keys)

    def media(self, key: str | None = None, kind: str | None = None) -> list[Any]:
        """The media logged under ``key`` (every key if None; ``kind``: "image", "audio", ...), in
        step order: ``tracklet.media.read.MediaItem``s with ``step``, ``caption``, ``path``,
        ``to_numpy()``, masks and boxes (docs/media.md)."""
        from tracklet.core.extensions import load

        kept = load("media").retained(self._read.media, self.media_retention)
        return list(load("media").media_items(kept, self._paths.root, key, kind))

    @property
    def media_retention(self) -> dict[str, int]:
        """Keys whose older media a retention policy retired (``tracklet media prune``), each with
        its first kept step; ``media()`` leaves out what came before it (docs/media.md)."""
        from tracklet.core.extensions import load

        return dict(load("media").read_cutoffs(self._paths.run_dir))

    def images(self, key: str | None = None) -> list[Any]:
        """The images logged under ``key`` (see :meth:`media`)."""
        return self.media(key, kind="image")

    def media_keys(self) -> list[str]:
        """Every key media were logged under, in the order first logged (not the record log's
        order, which differs across keys: ``tracklet.core.reader.keys_in_logged_order``)."""
        from tracklet.core.reader import keys_in_logged_order

        return keys_in_logged_order(self._read.media)

    def system_metrics(self, stat: str = "mean") -> History:
        """System metrics (GPU, CPU, memory, disk, network) per stats window: ``_timestamp``,
        ``_runtime`` and one column per metric (names and units: docs/system-metrics.md), holding
        the window's mean, or its max with ``stat="max"``."""
        return self._read.system_metrics(stat)

    @property
    def system_info(self) -> dict[str, Any]:
        """What the system monitor found at start: visible GPUs, driver versions, notes."""
        info = self._read.system_info
        if info is None:
            return {}
        return {
            "gpus": [
                {"index": g.index, "nvml_index": g.nvml_index, "name": g.name, "uuid": g.uuid,
                 "memory_total_bytes": g.memory_total_bytes}
                for g in info.gpus
            ],
            "driver_version": info.driver_version,
            "cuda_driver_version": info.cuda_driver_version,
            "physical_gpu_count": info.physical_gpu_count,
            "cuda_visible_devices": info.cuda_visible_devices,
            "notes": list(info.notes),
        }

    def files(self) -> list[str]:
        """Captured files, relative to the run's ``files/`` directory; a shared run's secondary
        writers' files (each in its ``parts/<label>.files/``) as ``parts/<label>/<name>``, the
        names a server lists them by (``file_path`` finds each on disk)."""
        found = set(_files_under(self._paths.files_dir))
        if self._paths.part is None:
            for label in self._paths.parts():
                found.update(f"{PARTS_DIR}/{label}/{name}"
                             for name in _files_under(self._paths.part_paths(label).files_dir, posix=True))
        return sorted(found)

    def file_path(self, name: str) -> Path:
        """Where the run's file ``name`` (as ``files()`` lists it) is on disk."""
        return self._paths.file_path(name)

    def __repr__(self) -> str:
        return f"<tracklet RecordedRun {self.path}>"


def _files_under(base: Path, posix: bool = False) -> list[str]:
    """The files below ``base``, relative to it; [] when it isn't a directory."""
    if not base.is_dir():
        return []
    return [p.relative_to(base).as_posix() if posix else str(p.relative_to(base)) for p in base.rglob("*")
            if p.is_file()]


def _monitored_gpu_names(state: RunState) -> list[str]:
    """With system metrics on, the monitor's SystemInfo names the GPUs (NVML is opened once)."""
    return [gpu.name for gpu in state.system_info.gpus] if state.system_info is not None else []


def _distinct_versions(refs: Iterable[Any]) -> list[dict[str, Any]]:
    """Artifact version references in order, each version once, as plain dicts."""
    seen: dict[tuple[str, str, int], dict[str, Any]] = {}
    for ref in refs:
        seen.setdefault((ref.project, ref.name, ref.version), {
            "project": ref.project, "name": ref.name, "type": ref.type, "version": ref.version,
            "digest": ref.digest})
    return list(seen.values())
