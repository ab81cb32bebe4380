"""The sweep journal is read once per controller operation, locally and on a server's tables:
Optuna's ``JournalStorage`` asks its backend on every storage call (dozens per ask), but while an
operation holds the sweep's lock nobody else appends. What another process appended between
operations is still seen by the next one."""

from __future__ import annotations


import pytest
import sqlalchemy as sa

from tracklet.sweeps.controller import Lease, LocalController, create_sweep
from tracklet.sweeps.journal import BatchedJournalFile

pytest.importorskip("optuna")

CONFIG = {"method": "optuna", "sampler": "tpe", "seed": 3, "metric": {"name": "f", "goal": "minimize"},
          "parameters": {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(4)}}


def _value(lease: Lease) -> float:
    return sum((v - 0.3) ** 2 for v in lease.config.values())


def test_a_local_operation_reads_the_journal_file_once_and_sees_other_controllers_trials(tmp_path, monkeypatch):
    sweep_id = create_sweep(tmp_path, {**CONFIG, "run_cap": 30}, project="p")
    first, second = LocalController(tmp_path, sweep_id), LocalController(tmp_path, sweep_id)  # two agent processes
    reads: list[int] = []
    original = BatchedJournalFile._lines

    def counted(self: BatchedJournalFile, start: int, end: int | None = None):  # a spy: the real read runs
        reads.append(start)
        return original(self, start, end)

    monkeypatch.setattr(BatchedJournalFile, "_lines", counted)
    numbers = []
    for i in range(24):  # past TPE's startup trials: the sampler reads the study many times per ask
        controller = first if i % 2 == 0 else second
        reads.clear()
        lease = controller.next_trial(f"agent{i % 2}")
        assert isinstance(lease, Lease)
        assert len(reads) == 1, f"ask {i} read the journal file {len(reads)} times"
        numbers.append(lease.trial)
        controller.tell(lease, _value(lease))
    assert numbers == list(range(24))  # each controller saw the other's trials: no number twice
    status = first.status()
    assert status["counts"] == {"complete": 24}
    assert [row["trial"] for row in second.status()["trials"]] == list(range(24))


def test_a_server_operation_reads_the_journal_rows_once_and_sees_other_processes_entries(tmp_path):
    from tracklet.server.schema import migrate
    from tracklet.server.sweeps_db import ServerController, create_server_sweep
    from tracklet.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", root=tmp_path)
    migrate(store.engine)
    sweep_id = create_server_sweep(store.engine, tmp_path, {**CONFIG, "run_cap": 30}, project="p")
    first, second = ServerController(store.engine, sweep_id), ServerController(store.engine, sweep_id)
    selects: list[str] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "sweep_journal" in statement:
            selects.append(statement)

    numbers = []
    for i in range(24):
        controller = first if i % 2 == 0 else second
        selects.clear()
        lease = controller.next_trial(f"agent{i % 2}")
        assert isinstance(lease, Lease)
        assert len(selects) == 1, f"ask {i} read the journal rows {len(selects)} times"
        numbers.append(lease.trial)
        controller.tell(lease, _value(lease))
    assert numbers == list(range(24))
    assert second.status()["counts"] == {"complete": 24}
    store.close()
