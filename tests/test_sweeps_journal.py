"""The sweep journal file is read once per local controller operation:
Optuna's ``JournalStorage`` asks its backend on every storage call (dozens per ask), but while an
operation holds the sweep's lock nobody else appends. What another process appended between
operations is still seen by the next one."""

from __future__ import annotations


import pytest

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
