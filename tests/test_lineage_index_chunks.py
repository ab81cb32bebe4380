"""A run table's lineage edges indexed over many chunks of its run's log (store/lineage.py
``write_edges``, ``TableNumbers``): every chunk numbers the table's versions on exactly as one pass
over the whole log does (writers' numbers, logs without one, gaps), while the store's earlier
versions of a table are read once per indexing pass, not again by every chunk (that read grew with
what was indexed: a run logging a table every step made its first indexing quadratic)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import RecordLogWriter
from tracklet.proto import records_pb2 as pb
from tracklet.store import Store

LOGS = 1000


def _write_log(root: Path, run_id: str, plus_ones: list[int], end: bool = True) -> None:
    """A run logging table ``preds`` once per step with these ``version_plus_one`` (0: no writer's
    number), a little history between logs so that the log spans many chunks."""
    paths = RunPaths(root, "tl", run_id)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    writer = RecordLogWriter(paths.log_file)
    start = pb.Record()
    start.run_start.run_id, start.run_start.project, start.run_start.start_time = run_id, "tl", 1.8e9
    writer.write(start.SerializeToString())
    for step, plus_one in enumerate(plus_ones):
        record = pb.Record()
        if step == 0:
            record.history.new_keys.add(id=0, name="loss")
        record.history.steps.append(step)
        record.history.times.append(1.8e9 + step)
        record.history.columns.add(key=0, floats=[0.5])
        writer.write(record.SerializeToString())
        table = pb.Record(table_logged=pb.TableLogged(
            key="preds", step=step, time=1.8e9 + step, log_mode=pb.TableLogged.LOG_MODE_INCREMENTAL, table_id="t",
            increment=step, version_plus_one=plus_one))
        writer.write(table.SerializeToString())
    if end:
        writer.write(pb.Record(exit=pb.RunExit(exit_code=0, end_time=1.8e9 + len(plus_ones))).SerializeToString())
    writer.close()


def _edges(store: Store, run_id: str) -> list[tuple[int, str, str, int]]:
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            sa.text("select e.seq, e.direction, e.name, e.version from artifact_edges e join runs r on r.id = e.run_pk"
                    " where r.run_id = :run order by e.seq"), {"run": run_id})]


def _index(root: Path, chunk_bytes: int | None) -> tuple[Store, list[str]]:
    """A fresh store's first indexing of ``root``, ``chunk_bytes`` of log a chunk; the statements
    that read a run table's stored versions (``count(distinct version)``)."""
    store = Store(f"sqlite:///{root.parent}/store-{chunk_bytes}.db", root=root)
    reads: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "count(DISTINCT artifact_edges.version)" in statement:
            reads.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    indexer = store.indexer()
    if chunk_bytes is not None:
        indexer.chunk_bytes = chunk_bytes
    report = indexer.index()
    assert not report.failed and report.runs_updated, report
    return store, reads


# writers' numbers in order; none at all (logs before the field); writers' numbers with gaps and
# repeats (a writer killed after taking one, two machines' counters) among logs without one
CASES = {
    "writers": [n + 1 for n in range(LOGS)],
    "old": [0] * LOGS,
    "mixed": [(n + 1 if n % 7 else 0) if n % 100 != 50 else n + 40 for n in range(LOGS)],
}


def test_a_table_logged_every_step_is_numbered_over_many_chunks_as_in_one_pass_reading_its_versions_once(tmp_path):
    root = tmp_path / "data"
    for run_id, plus_ones in CASES.items():
        _write_log(root, run_id, plus_ones)
    whole, _ = _index(root, None)  # the log in one chunk
    chunked, reads = _index(root, 2048)  # ~50 chunks a run
    try:
        for run_id in CASES:
            expected = _edges(whole, run_id)
            assert len(expected) == LOGS and len({version for *_, version in expected}) == LOGS
            assert _edges(chunked, run_id) == expected, run_id
            assert chunked.run_table_last("tl", f"run-{run_id}-preds") == max(version for *_, version in expected)
        assert [version for *_, version in _edges(whole, "writers")] == list(range(LOGS))
        assert [version for *_, version in _edges(whole, "old")] == list(range(LOGS))
        # A new run's later chunks number on from what its first chunk wrote: no chunk read the
        # table's stored versions again (one read per chunk before: ~50 a run).
        assert reads == []
    finally:
        whole.close()
        chunked.close()


def test_a_run_indexed_again_reads_its_tables_versions_once_a_pass_and_numbers_on(tmp_path):
    """A run the store indexed before (a server's append, a live run indexed as it logs): the
    pass reads the table's stored versions once, then numbers on chunk by chunk."""
    root = tmp_path / "data"
    mixed = CASES["mixed"]
    _write_log(root, "mixed", mixed[:LOGS // 2], end=False)
    store, reads = _index(root, 2048)
    try:
        assert reads == []  # a new run: its chunks number on from the first's
        log = RunPaths(root, "tl", "mixed").log_file
        indexed = log.read_bytes()
        log.unlink()
        _write_log(root, "mixed", mixed)  # the whole log: its first half as indexed, more after it
        assert log.read_bytes().startswith(indexed)
        indexer = store.indexer()
        indexer.chunk_bytes = 2048
        assert not indexer.index().failed
        assert len(reads) == 1  # the pass's first chunk; its ~25 others number on from it
        whole, _ = _index(root, None)
        try:
            assert len(_edges(whole, "mixed")) == LOGS
            assert _edges(store, "mixed") == _edges(whole, "mixed")
        finally:
            whole.close()
    finally:
        store.close()
