"""Server-mode sweeps: each sweep's Optuna study, leases and state in the server's database.

A sweep created against a server (``tracklet sweep create --url``, ``wandb.sweep`` online) lives in
three of the server's own tables (``schema.py``): ``sweep_studies`` (one row per sweep: its project,
normalized config and state as JSON), ``sweep_journal`` (the study as Optuna's journal: one row per
journal entry, numbered from 0) and ``sweep_leases`` (a row per leased trial: agent, expiry). Agents never open the database: they talk HTTP to
the routes in ``routes_sweeps_write.py``, and the server runs the controller.

:class:`ServerController` is the local controller's algorithm (``tracklet.sweeps.controller``:
ask/tell, leases, reaping lapsed leases, requeueing grid points, pruning) over these tables. Every
operation is one database transaction that first locks the sweep's row (``SELECT ... FOR UPDATE``
on PostgreSQL; within a process a lock per sweep as well), reads what other server processes
appended, and writes the journal entries, leases and state it made before it commits. A heartbeat
is the one call that takes neither lock, so beats never queue behind an ask (a GP ask can take a
while): it reads its lease's row and, only when a quarter of the ttl has passed since the expiry
was last moved, moves it on with one ``UPDATE`` (while it has not passed). Most beats of an agent
beating every second are thus a read: no write transaction, no wait for the database's write lock
(on SQLite one writer at a time: 64 agents' beats each taking it queued behind each other). A
reaper that read the lease before the beat may still fail the trial; the next beat then says it
is lost. A server
killed at any point (``kill -9``) loses the operation in flight entirely, and nothing it handed
out: an answer is sent only after the commit. ``next_trial`` takes the agent's request id, so an
agent that never got the answer and asks again gets the same trial, not a second one.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from optuna.storages.journal import BaseJournalBackend

from tracklet.core.settings import check_name
from tracklet.errors import SweepNotFound
from tracklet.server import audit
from tracklet.server.schema import sweep_journal, sweep_leases, sweep_studies
from tracklet.sweeps import gp_imports, space
from tracklet.sweeps.controller import (
    IMPUTED,
    LAPSED,
    Lease,
    LocalController,
    check_engine,
    Next,
    TrialResult,
    _optuna,
    parse_sweep_id,
    trial_run_id,
    uses_gp,
    warm_start,
    warm_start_from_store,
)
from tracklet.sweeps.spec import SweepSpec, parse


class TableJournal(BaseJournalBackend):
    """Optuna's journal over ``sweep_journal`` rows of one sweep. Reads go through the connection
    the caller set (``connection``: the operation's transaction), else a short one of their own;
    appends wait for :meth:`flush`, which inserts them in the operation's transaction."""

    def __init__(self, engine: sa.Engine, sweep_id: str, *, read_only: bool = False) -> None:
        self.engine = engine
        self.sweep_id = sweep_id
        self.read_only = read_only
        self._local = threading.local()
        self._logs: list[dict[str, Any]] = []  # every entry read so far, in order
        self._pending: list[dict[str, Any]] = []

    @property
    def connection(self) -> sa.Connection | None:
        """The transaction of the operation running on this thread, if any (never another thread's)."""
        return getattr(self._local, "connection", None)

    @connection.setter
    def connection(self, connection: sa.Connection | None) -> None:
        self._local.connection = connection

    def _catch_up(self) -> None:
        statement = (sa.select(sweep_journal.c.seq, sweep_journal.c.log)
                     .where(sweep_journal.c.sweep_id == self.sweep_id, sweep_journal.c.seq >= len(self._logs))
                     .order_by(sweep_journal.c.seq))
        if self.connection is not None:
            rows = self.connection.execute(statement).all()
        else:
            with self.engine.connect() as connection:
                rows = connection.execute(statement).all()
        for row in rows:
            if row.seq != len(self._logs):  # rows are written whole per transaction: a gap is damage
                raise ValueError(f"sweep {self.sweep_id}'s journal misses entry {len(self._logs)}")
            self._logs.append(json.loads(row.log))

    @property
    def count(self) -> int:
        return len(self._logs)

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        self._catch_up()
        return self._logs[log_number_from:] + self._pending[max(0, log_number_from - len(self._logs)):]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self.read_only:
            raise ValueError("this sweep journal is read-only (the dashboard never changes a sweep)")
        self._pending.extend(logs)

    def flush(self) -> None:
        """Insert the pending entries through the operation's connection (committed with it)."""
        if not self._pending:
            return
        assert self.connection is not None, "a journal flush needs the operation's transaction"
        self._catch_up()
        start = len(self._logs)
        self.connection.execute(sweep_journal.insert(), [
            {"sweep_id": self.sweep_id, "seq": start + i, "log": json.dumps(log, separators=(",", ":"))}
            for i, log in enumerate(self._pending)])
        self._logs.extend(self._pending)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()


def _storage(journal: TableJournal) -> Any:
    from optuna.storages import JournalStorage

    return JournalStorage(journal)


def create_server_sweep(engine: sa.Engine, root: Path, config: Any, *, project: str,
                        sweep_id: str | None = None, created_by: str | None = None, store: Any = None) -> str:
    """Validate ``config`` and create its study in the server's tables; returns the sweep's id.
    A warm start reads the project's runs from ``store`` (the server's: every run it ingested,
    its logs under the data root or ``--logs`` segments), else from the data root ``root``."""
    from tracklet.sweeps.controller import _new_sweep_id

    spec = check_engine(parse(config))
    check_name("project", project)
    sweep_id = check_name("sweep id", sweep_id) if sweep_id else _new_sweep_id()
    optuna = _optuna()
    directions = [("maximize" if m.maximize else "minimize") for m in spec.objectives] or ["minimize"]
    info: dict[str, Any] = {"id": sweep_id, "project": project, "config": spec.config, "created": time.time(),
                            "created_by": created_by}
    with engine.begin() as connection:
        if connection.execute(sa.select(sweep_studies.c.id).where(sweep_studies.c.id == sweep_id)).first():
            raise ValueError(f"sweep {sweep_id!r} exists already")
        journal = TableJournal(engine, sweep_id)
        journal.connection = connection
        study = optuna.create_study(storage=_storage(journal), study_name=sweep_id, directions=directions)
        if spec.warm_start is not None:
            source = spec.warm_start.get("project") or project
            info["warm_start"] = (warm_start_from_store(study, spec, store, source) if store is not None
                                  else warm_start(study, spec, root, source))
        connection.execute(sweep_studies.insert().values(
            id=sweep_id, project=project, info=json.dumps(info), state=json.dumps({"state": "running"}),
            created_at=info["created"]))
        journal.flush()
    if uses_gp(spec):  # its agents' asks will need the GP's modules: import them meanwhile (gp_imports)
        gp_imports.start()
    return sweep_id


def sweep_info(engine: sa.Engine, sweep_id: str) -> dict[str, Any] | None:
    """The sweep's row as ``sweep.json`` holds it locally (id, project, config, created), or None."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(sweep_studies.c.info).where(sweep_studies.c.id == sweep_id)).first()
    return None if row is None else json.loads(row.info)


def project_sweep_infos(engine: sa.Engine, project: str) -> list[dict[str, Any]]:
    """``project``'s server sweeps (info plus state), newest first."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(sweep_studies.c.info, sweep_studies.c.state)
                                  .where(sweep_studies.c.project == project)
                                  .order_by(sweep_studies.c.created_at.desc())).all()
    return [{**json.loads(row.info), "state": json.loads(row.state).get("state", "running")} for row in rows]


def readable_sweep_infos(engine: sa.Engine, may_read: Callable[[str], bool], *, project: str | None = None,
                         limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` server sweeps (info plus state) of the projects ``may_read`` allows (only
    ``project``'s, if given), and how many there are in all: ``tracklet sweep ls --url``."""
    with engine.connect() as connection:
        names = connection.execute(sa.select(sweep_studies.c.project).distinct()).scalars().all()
        projects = sorted(name for name in names if (project is None or name == project) and may_read(name))
        if not projects:
            return [], 0
        where = sweep_studies.c.project.in_(projects) if project is not None or len(projects) < len(names) else sa.true()
        total = int(connection.execute(sa.select(sa.func.count()).select_from(sweep_studies).where(where)).scalar_one())
        rows = connection.execute(sa.select(sweep_studies.c.info, sweep_studies.c.state).where(where)
                                  .order_by(sweep_studies.c.created_at.desc(), sweep_studies.c.id).limit(limit)).all()
    return [{**json.loads(row.info), "state": json.loads(row.state).get("state", "running")} for row in rows], total


# A heartbeat writes its lease's new expiry only once this share of the ttl has passed since the
# expiry was last moved: an agent beating every second (a sweep that prunes) writes every ttl/4,
# not every second, and its lease still lasts at least 3/4 of the ttl after any beat.
RENEW_SHARE = 0.25
_LEASE_KEY = (sweep_leases.c.sweep_id == sa.bindparam("b_sweep"), sweep_leases.c.trial == sa.bindparam("b_trial"),
              sweep_leases.c.agent == sa.bindparam("b_agent"))
_LEASE_EXPIRY = sa.select(sweep_leases.c.expires).where(*_LEASE_KEY)
_RENEW_LEASE = (sweep_leases.update().where(*_LEASE_KEY, sweep_leases.c.expires >= sa.bindparam("b_now"))
                .values(expires=sa.bindparam("b_until")))


class _Operation(threading.local):
    """What the operation running on this thread holds: its transaction, the sweep's row as it
    read or wrote it, the lease rows as it last read or wrote them. Per thread, because readers that
    take no lock (``_state``, ``lease_record``) run beside an operation on another thread and
    must never use its connection (one that did met it closed mid-query)."""

    def __init__(self) -> None:
        self.connection: sa.Connection | None = None
        self.row: Any = None
        self.lease_rows: dict[str, dict[str, Any]] = {}


class ServerController(LocalController):
    """A sweep's controller over the server's tables (see the module docstring)."""

    def __init__(self, engine: sa.Engine, sweep_id: str, *, root: Path | None = None) -> None:
        self.engine = engine
        self.sweep_id = parse_sweep_id(sweep_id)
        info = sweep_info(engine, self.sweep_id)
        if info is None:
            raise SweepNotFound(f"no sweep {self.sweep_id!r} on this server")
        self.info = info
        self.root = Path(root) if root is not None else Path(".")
        self.dir = self.root / "sweeps" / self.sweep_id  # never written: trials live in the tables
        self._spec = parse(info["config"])
        self.project = info["project"]
        self._storage_obj = None
        self._cached_sampler = None
        self._max_agents = 1
        self._pruner_obj = None
        self._study_obj = None
        self._plain_sampler = None
        self._journal: TableJournal | None = None
        self._op = _Operation()
        self._thread_lock = threading.RLock()
        self._request: str | None = None

    @property
    def spec(self) -> SweepSpec:
        return self._spec

    # ------------------------------------------------------------ the lock, the study, the row

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One operation: one transaction holding the sweep's row lock; what it wrote is committed
        with it, or rolled back with it (and the kept study dropped, as its memory holds it)."""
        with self._thread_lock:
            try:
                with self.engine.begin() as connection:
                    self._op.row = connection.execute(
                        sa.select(sweep_studies.c.state)
                        .where(sweep_studies.c.id == self.sweep_id).with_for_update()).one()
                    self._op.connection = connection
                    self._op.lease_rows = {}
                    if self._journal is not None:
                        self._journal.connection = connection
                    yield
                    self._flush()
            except BaseException:
                if self._journal is not None:
                    self._journal.discard()
                self._storage_obj = None
                self._study_obj = None
                self._journal = None
                raise
            finally:
                if self._journal is not None:
                    self._journal.connection = None
                self._op.connection = None
                self._op.row = None

    def _flush(self) -> None:
        if self._journal is not None:
            self._journal.flush()

    def _new_storage(self) -> Any:
        self._journal = TableJournal(self.engine, self.sweep_id)
        self._journal.connection = self._op.connection
        return _storage(self._journal)

    def _write_trial(self, number: int, data: dict[str, Any]) -> None:
        """Nothing: the agent writes the trial's file on its own machine from the lease."""

    def _state(self) -> dict[str, Any]:
        if self._op.row is not None:
            return json.loads(self._op.row.state)
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(sweep_studies.c.state).where(sweep_studies.c.id == self.sweep_id)).one()
        return json.loads(row.state)

    def _leases(self) -> dict[str, Any]:
        """The sweep's leases as the local controller keeps them: trial -> record (agent, expires, ...)."""
        statement = sa.select(sweep_leases.c.trial, sweep_leases.c.agent, sweep_leases.c.expires,
                              sweep_leases.c.record).where(sweep_leases.c.sweep_id == self.sweep_id)
        if self._op.connection is not None:
            rows = self._op.connection.execute(statement).all()
        else:
            with self.engine.connect() as connection:
                rows = connection.execute(statement).all()
        leases = {str(row.trial): {**json.loads(row.record), "agent": row.agent, "expires": row.expires}
                  for row in rows}
        if self._op.connection is not None:
            self._op.lease_rows = {number: dict(record) for number, record in leases.items()}
        return leases

    def _update(self, **values: str) -> None:
        assert self._op.connection is not None, "the sweep's row is written inside an operation"
        self._op.connection.execute(sweep_studies.update().where(sweep_studies.c.id == self.sweep_id).values(**values))
        self._op.row = types.SimpleNamespace(**{"state": self._op.row.state, **values})  # what the row holds now

    def _save_leases(self, leases: dict[str, Any]) -> None:
        """Write what changed since the operation read the leases: rows of leases gone are deleted,
        new ones inserted, changed ones updated (the expiry only when it changed here, so a
        heartbeat that moved it meanwhile is not undone)."""
        connection = self._op.connection
        assert connection is not None, "leases are written inside an operation"
        key = (sweep_leases.c.sweep_id == self.sweep_id)
        for number in [n for n in self._op.lease_rows if n not in leases]:
            connection.execute(sweep_leases.delete().where(key, sweep_leases.c.trial == int(number)))
        for number, record in leases.items():
            before = self._op.lease_rows.get(number)
            if before == record:
                continue
            rest = json.dumps({k: v for k, v in record.items() if k not in ("agent", "expires")})
            if before is None:
                connection.execute(sweep_leases.insert().values(sweep_id=self.sweep_id, trial=int(number),
                                                                agent=record["agent"], expires=record["expires"],
                                                                record=rest))
                continue
            changes: dict[str, Any] = {"record": rest, "agent": record["agent"]}
            if record["expires"] != before.get("expires"):
                changes["expires"] = record["expires"]
            connection.execute(sweep_leases.update().where(key, sweep_leases.c.trial == int(number)).values(**changes))
        self._op.lease_rows = {number: dict(record) for number, record in leases.items()}

    def _changed(self, what: str, **detail: Any) -> None:
        """Audit the change (``audit.changed``): it makes the routine call it is part of (an
        agent's ``next`` or heartbeat, ``audit.ROUTINE``) write its event, in the operation's
        transaction, which has not committed yet; on another call it adds to the event's detail."""
        audit.changed(what, **detail)

    def heartbeat(self, lease: Lease) -> bool:
        """Renew ``lease``; False once it lapsed (or isn't ``lease.agent``'s). No lock: one read of
        the lease's row, and a write (one ``UPDATE``) only when its expiry is due, i.e. once
        ``RENEW_SHARE`` of the ttl has passed since it was last moved (see the module docstring)."""
        now = time.time()
        key = {"b_sweep": self.sweep_id, "b_trial": lease.trial, "b_agent": lease.agent}
        with self.engine.connect() as connection:
            expires = connection.execute(_LEASE_EXPIRY, key).scalar_one_or_none()
        if expires is None or expires < now:
            return False
        if expires >= now + lease.ttl * (1.0 - RENEW_SHARE):
            return True
        with self.engine.begin() as connection:
            renewed = connection.execute(_RENEW_LEASE, {**key, "b_now": now, "b_until": now + lease.ttl})
        return bool(renewed.rowcount)

    def _write_state(self, **changes: Any) -> None:
        self._update(state=json.dumps({**self._state(), **changes}))

    def _lease_record(self, agent: str, ttl: float) -> dict[str, Any]:
        record = super()._lease_record(agent, ttl)
        record.pop("host", None)  # the server's, not the agent's (the agent's name says where it runs)
        if self._request is not None:
            record["request"] = self._request
        return record

    # ------------------------------------------------------------ idempotent agent calls

    def next_trial(self, agent: str, *, ttl: float = 60.0, resume_trial: int | None = None,
                   request: str | None = None) -> Next:
        """As the local controller's; ``request`` (the agent's id for this ask) makes it safe to
        repeat: an ask whose answer was lost (the server died after committing it) gets the same
        lease again."""
        with self._thread_lock:
            if request is not None:
                with self._locked():
                    leases = self._leases()
                    for number, record in leases.items():
                        if record.get("agent") == agent and record.get("request") == request:
                            record.update(self._lease_record(agent, ttl))
                            self._changed("lease granted", trial=int(number), repeated=True)
                            self._save_leases(leases)
                            return self._lease_of(int(number), agent, ttl)
            self._request = request
            try:
                return super().next_trial(agent, ttl=ttl, resume_trial=resume_trial)
            finally:
                self._request = None

    def _lease_of(self, number: int, agent: str, ttl: float) -> Lease:
        study = self._study()
        frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, number))
        return Lease(self.sweep_id, number, trial_run_id(self.sweep_id, number), self.project,
                     space.decode(self._spec, frozen.params), agent, ttl)

    def tell(self, lease: Lease, value: float | Sequence[float] | None, error: str | None = None, *,
             stopped: bool | None = None) -> TrialResult:
        """As the local controller's; told again (the agent never got the first answer), it
        answers how the trial ended instead of calling it lapsed."""
        with self._thread_lock:
            with self._locked():
                record = self._leases().get(str(lease.trial))
                if record is None or record.get("agent") != lease.agent:
                    done = self._ended(lease)
                    if done is not None:
                        return done
            return super().tell(lease, value, error, stopped=stopped)

    def _ended(self, lease: Lease) -> TrialResult | None:
        """How trial ``lease.trial`` ended, if ``lease.agent`` ended it (not lapsed)."""
        study = self._study()
        try:
            frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, lease.trial))
        except KeyError:
            return None
        if frozen.user_attrs.get("agent") != lease.agent or frozen.user_attrs.get(LAPSED):
            return None
        state = frozen.state.name.lower()
        if state == "complete" and frozen.user_attrs.get(IMPUTED):
            return TrialResult(lease.trial, "failed", None, str(frozen.user_attrs.get("error", "failed")))
        if state == "complete":
            objectives = self._spec.objectives
            values = tuple(frozen.values or ())
            shown = ", ".join(f"{m.name} = {v:g}" for m, v in zip(objectives, values)) if objectives else "done"
            return TrialResult(lease.trial, "complete", values[0] if len(values) == 1 and objectives else None,
                               shown, tuple(v for v in values if math.isfinite(v)) if objectives else ())
        if state == "fail":
            return TrialResult(lease.trial, "failed", None, str(frozen.user_attrs.get("error", "failed")))
        if state == "pruned":
            return TrialResult(lease.trial, "pruned", frozen.value, f"pruned at step {frozen.last_step}")
        return None

    # ------------------------------------------------------------ pruning from ingested metrics

    def lease_record(self, trial: int) -> dict[str, Any] | None:
        return self._leases().get(str(trial))

    def mark_reported(self, lease: Lease, step: int) -> None:
        """Remember the last step reported to the pruner (the next look starts after it)."""
        with self._locked():
            leases = self._leases()
            record = leases.get(str(lease.trial))
            if record is not None and record.get("agent") == lease.agent:
                record["reported"] = max(step, int(record.get("reported", -1)))
                self._save_leases(leases)


_kept: dict[tuple[int, str], ServerController] = {}
_controllers_lock = threading.Lock()
MAX_KEPT = 64  # sweeps whose controller (study, sampler) a server process keeps between requests


def controller(engine: sa.Engine, sweep_id: str, root: Path) -> ServerController:
    """The process's controller of ``sweep_id`` (kept: its study and sampler carry over between
    requests, as an agent process's do locally); ``SweepNotFound`` if there is none."""
    key = (id(engine), parse_sweep_id(sweep_id))
    with _controllers_lock:
        found = _kept.get(key)
        if found is not None:
            _kept[key] = _kept.pop(key)  # most recent last
            return found
    made = ServerController(engine, sweep_id, root=root)
    with _controllers_lock:
        found = _kept.setdefault(key, made)
        while len(_kept) > MAX_KEPT:
            _kept.pop(next(iter(_kept)))
    if found is made:  # a GP sweep's modules import in the background from the first call naming it
        found.prepare()  # (``gp_imports``), if the server's start did not begin them (``sweeps_warm``)
    return found


def active_gp_sweep(engine: sa.Engine, root: Path) -> str | None:
    """The id of a sweep in the server's tables whose agents will ask the GP (``uses_gp``) and
    which may still ask: running or paused, not finished (its run cap or grid not reached, as
    the dashboard's reader sums it up, replaying the journal); None if there is none, or no sweep
    table yet. ``sweeps_warm`` starts the GP's imports at a server's start when there is one."""
    if not sa.inspect(engine).has_table(sweep_studies.name):
        return None
    with engine.connect() as connection:
        rows = connection.execute(sa.select(sweep_studies.c.id, sweep_studies.c.info, sweep_studies.c.state)
                                  .order_by(sweep_studies.c.created_at.desc())).all()
    for row in rows:
        if json.loads(row.state).get("state", "running") not in ("running", "paused"):
            continue
        try:
            if not uses_gp(parse(json.loads(row.info)["config"])):
                continue
            if reader(engine, row.id, root).summary()["state"] == "finished":
                continue
        except Exception:  # noqa: BLE001 - a sweep whose config or journal doesn't read: not one to warm for
            continue
        return str(row.id)
    return None


def journal_version(engine: sa.Engine, sweep_id: str) -> int:
    """How many journal entries the sweep has (grows with every operation that changed the study)."""
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(sweep_journal)
                                      .where(sweep_journal.c.sweep_id == sweep_id)).scalar_one())


def reader(engine: sa.Engine, sweep_id: str, root: Path) -> Any:
    """The dashboard's reader of a server sweep (``tracklet.sweeps.view.SweepReader``: no lock, no
    write; the journal replayed from committed rows, so always whole operations); kept per process."""
    from tracklet.sweeps.view import SweepReader, kept_reader

    sweep_id = parse_sweep_id(sweep_id)

    def make() -> SweepReader:
        return SweepReader(root, sweep_id, controller=ServerController(engine, sweep_id, root=root),
                           backend=lambda: TableJournal(engine, sweep_id, read_only=True),
                           version=lambda: journal_version(engine, sweep_id))

    return kept_reader((f"server:{id(engine)}", sweep_id), make)
