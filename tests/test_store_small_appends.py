"""A server's indexing of small appends (an online run's upload, about once a second), on SQLite
and a real PostgreSQL: what many small appends leave in the store equals one pass over the whole
log, a steady append reads none of the series rows and blocks it rewrites back from the store (the
indexer kept them from the append before), and what the indexer kept is never used once another
writer changed the run, nor after a transaction that rolled back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import RecordLogWriter
from tracklet.proto import records_pb2 as pb
from tracklet.store import Store
from tracklet.store.ingest import Indexer

import conftest
from benchmarks.store import upload_ends
from test_store_robustness import _store_content

PROJECT, RUN = "p", "online"
ROWS_PER_RECORD = 8


def _log(directory: Path, steps: int, seed: int) -> bytes:
    """A run's record log: ``steps`` rows of 3 floats, ``ROWS_PER_RECORD`` a record (what an online
    run's worker writes); the same length for any ``seed``, with other values."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = RecordLogWriter(directory / "log")
    rng = np.random.default_rng(seed)
    start = pb.Record()
    start.run_start.run_id, start.run_start.project, start.run_start.name = RUN, PROJECT, RUN
    start.run_start.start_time = 1.8e9
    writer.write(start.SerializeToString())
    for first in range(0, steps, ROWS_PER_RECORD):
        record = pb.Record()
        batch = record.history
        if first == 0:
            for key in range(3):
                batch.new_keys.add(id=key, name=f"metric_{key}")
        batch.steps.extend(range(first, first + ROWS_PER_RECORD))
        batch.times.extend((1.8e9 + np.arange(first, first + ROWS_PER_RECORD) * 0.01).tolist())
        for key in range(3):
            batch.columns.add(key=key).floats.extend(rng.standard_normal(ROWS_PER_RECORD).tolist())
        writer.write(record.SerializeToString())
    writer.close()
    return (directory / "log").read_bytes()


def _cuts(data: bytes, piece: int = 2048) -> list[int]:
    """Where each upload of about ``piece`` bytes of whole frames ends."""
    return upload_ends(data, piece)


class _Server:
    """A server's side of the run: its copy of the log under ``tmp_path/server``, grown upload by
    upload, and a store that one indexer keeps up to date after each upload."""

    def __init__(self, tmp_path: Path, store_url: str, engine: sa.Engine | None = None) -> None:
        """``engine``: index into it as it is (an older schema), not into a ``Store`` of ``store_url``."""
        self.root = tmp_path / "server"
        self.paths = RunPaths(self.root, PROJECT, RUN)
        self.paths.log_file.parent.mkdir(parents=True, exist_ok=True)
        if engine is None:
            self.store = Store(store_url, root=self.root)
            engine = self.store.engine
        self.indexer = Indexer(engine, self.root, liveness=lambda _: True)

    def hold(self, data: bytes) -> None:
        self.paths.log_file.write_bytes(data)

    def upload(self, data: bytes, ends: list[int]) -> None:
        """``data`` uploaded up to each of ``ends`` in turn, indexed after each."""
        for end in ends:
            self.hold(data[:end])
            self.indexer.index_run(self.paths)


def _indexer(store: Store, root: Path) -> Indexer:
    return Indexer(store.engine, root, liveness=lambda _: True)


def _whole(tmp_path: Path, fresh_url, root: Path) -> dict:
    """What one pass over the run's log under ``root`` stores (in a fresh store of the same backend)."""
    store = Store(fresh_url(tmp_path / "whole"), root=root)
    _indexer(store, root).index_run(RunPaths(root, PROJECT, RUN))
    content = _store_content(store.engine)
    store.close()
    return content


def test_many_small_appends_store_what_one_pass_over_the_whole_log_stores(tmp_path, store_url, fresh_url):
    """Upload by upload across block and pyramid level boundaries (1,024 points a block, 16 a
    summary entry), the series, their blocks and the run's row equal one pass over the log."""
    data = _log(tmp_path / "client", steps=3000, seed=0)
    server = _Server(tmp_path, store_url)
    server.upload(data, _cuts(data))
    assert _store_content(server.store.engine) == _whole(tmp_path, fresh_url, server.root)
    server.store.close()


def test_a_steady_small_append_reads_no_series_blocks_back(tmp_path, store_url):
    """The series an append extends and the blocks it rewrites (each level's last) were kept from
    the append before: it writes them without reading them from the store (two statements and
    the blocks' decoding saved on every upload of every online run)."""
    data = _log(tmp_path / "client", steps=1000, seed=0)
    cuts = _cuts(data)
    server = _Server(tmp_path, store_url)
    server.upload(data, cuts[:4])
    statements: list[str] = []
    sa.event.listen(server.store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    server.upload(data, cuts[4:5])
    assert any("INSERT INTO blocks" in sql for sql in statements)
    assert not [sql for sql in statements if sql.startswith("SELECT") and ("FROM blocks" in sql or "FROM series" in sql)]
    server.store.close()


def test_what_an_indexer_kept_is_not_used_after_another_writer_indexed_the_run_anew(tmp_path, store_url, fresh_url):
    """Another process rebuilds the store from a log recorded again under the same id, of the same
    length (so the run's offset and its series' counts are those the first indexer left, and on
    SQLite the series ids too): the first indexer's next append reads the new blocks from the store."""
    first, again = _log(tmp_path / "one", steps=600, seed=0), _log(tmp_path / "two", steps=600, seed=1)
    assert len(first) == len(again)
    cuts = _cuts(first)
    server = _Server(tmp_path, store_url)
    server.upload(first, cuts[:4])
    server.hold(again[: cuts[3]])
    _indexer(server.store, server.root).index(rebuild=True)  # another process (tracklet index --rebuild)
    server.upload(again, cuts[5:6])
    assert _store_content(server.store.engine) == _whole(tmp_path, fresh_url, server.root)
    server.store.close()


def test_what_a_rolled_back_append_wrote_is_not_kept(tmp_path, store_url, fresh_url):
    """An append whose transaction fails at its last statement (here: the database refuses the
    series counts, after the blocks were rewritten) leaves the store as it was; the next append,
    which succeeds, stores what one pass stores."""
    data = _log(tmp_path / "client", steps=600, seed=0)
    cuts = _cuts(data)
    server = _Server(tmp_path, store_url)
    server.upload(data, cuts[:3])
    before = _store_content(server.store.engine)
    refuse = [True]

    def fail_series_update(connection, cursor, statement, parameters, context, executemany):
        if refuse[0] and statement.startswith("UPDATE series"):
            raise RuntimeError("refused")
    sa.event.listen(server.store.engine, "before_cursor_execute", fail_series_update)
    with pytest.raises(RuntimeError, match="refused"):
        server.upload(data, cuts[4:5])
    assert _store_content(server.store.engine) == before
    refuse[0] = False
    server.indexer.index_run(server.paths)
    assert _store_content(server.store.engine) == _whole(tmp_path, fresh_url, server.root)
    server.store.close()


def test_summaries_of_nan_and_inf_merge_under_numpy_errors_raised():
    """A summary level merges entries without a finite value (NaN min and max) with others, even in
    a process that made numpy raise on every floating-point error (``np.seterr(all="raise")``, as a
    training script may): min and max skip them, a bucket of none stays NaN, and nothing raises."""
    from tracklet.store import blocks as B

    values = np.array([np.nan, np.nan, 1.0, np.inf, -2.0, np.nan, -np.inf, 3.0])
    entries = B.point_entries(np.arange(len(values)), values)
    with np.errstate(all="raise"):
        merged = B.merge(entries, np.array([0, 2, 4, 6]))
    assert np.isnan(merged["min"][0]) and np.isnan(merged["max"][0])
    assert list(merged["min"][1:]) == [1.0, -2.0, 3.0] and list(merged["max"][1:]) == [1.0, -2.0, 3.0]
    assert list(merged["count"]) == [2, 2, 2, 2] and list(merged["nonfinite"]) == [2, 1, 1, 1]


def test_what_the_indexer_keeps_is_bounded_least_recently_appended_runs_out_first():
    """However many runs a server indexes, the tails it keeps stay under ``max_bytes``: a run's
    tails leave when newer runs need the room, and a run appended to again is the newest."""
    from tracklet.store.tail_cache import RunTails, SeriesTail, TailCache

    def tails(points: int) -> RunTails:
        run = RunTails()
        run.series[1] = SeriesTail(points, 0, {(0, 0): (np.arange(points), np.zeros(points))})
        return run

    cache = TailCache(max_bytes=3 * 16 * 100)  # three runs of 100 points (16 bytes each)
    for run_pk in (1, 2, 3):
        cache.stage(run_pk, (run_pk, 1.0, "running"), tails(100))
        cache.commit()
    cache.stage(1, (10, 2.0, "running"), cache.take(1, (1, 1.0, "running")))  # run 1 appended to again: the newest
    cache.commit()
    cache.stage(4, (4, 1.0, "running"), tails(100))
    cache.commit()
    assert cache.take(2, (2, 1.0, "running")).series == {}  # the least recently appended run went
    assert cache.take(3, (3, 1.0, "running")).series and cache.take(1, (10, 2.0, "running")).series and cache.take(4, (4, 1.0, "running")).series
    cache.stage(5, (5, 1.0, "running"), tails(1000))  # more than the whole cache holds: not kept
    cache.commit()
    assert cache.take(5, (5, 1.0, "running")).series == {}


def test_a_store_migrated_from_0009_indexes_its_runs_again_and_equals_one_pass(tmp_path, fresh_url):
    """Migration 0010: a 0009 indexer left stale summary entries in runs it indexed while they
    recorded; every run is indexed again from its log (here stale entries are two series' level-2
    blocks swapped: valid blocks, wrong content), and the store then equals one pass over the log."""
    from tracklet.store.schema import blocks, series

    data = _log(tmp_path / "client", steps=3000, seed=0)
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = conftest.store_at_revision(url, "0009")
    server = _Server(tmp_path, url, engine)  # the server's side over the 0009 store, indexed upload by upload
    server.upload(data, _cuts(data))
    with engine.begin() as connection:
        level_two = {key: connection.execute(
            sa.select(blocks.c.series_id, blocks.c.data).join(series, series.c.id == blocks.c.series_id).where(
                series.c.key == key, blocks.c.level == 2)).one() for key in ("metric_0", "metric_1")}
        for key, other in (("metric_0", "metric_1"), ("metric_1", "metric_0")):
            connection.execute(blocks.update().where(blocks.c.series_id == level_two[key].series_id,
                                                     blocks.c.level == 2).values(data=level_two[other].data))
    _assert_migrating_indexes_again(tmp_path, fresh_url, url, engine, server)


def _assert_migrating_indexes_again(tmp_path: Path, fresh_url, url: str, engine: sa.Engine, server: _Server) -> None:
    """The store at ``url`` (``engine``, at an older revision, where ``server`` indexed its run
    upload by upload and the test made it what an older indexer left) differs from one pass over
    the run's log; migrated to head and indexed, it equals one pass."""
    whole = _whole(tmp_path, fresh_url, server.root)
    assert _store_content(engine) != whole  # what the old indexer left is visible
    engine.dispose()
    migrated = Store(url, root=server.root)  # migrates to head
    _indexer(migrated, server.root).index_run(server.paths)
    assert _store_content(migrated.engine) == whole
    migrated.close()


def _logged(steps: int, seed: int) -> dict[str, np.ndarray]:
    """The values ``_log(..., steps, seed)`` logged, by key."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[np.ndarray]] = {f"metric_{key}": [] for key in range(3)}
    for _ in range(0, steps, ROWS_PER_RECORD):
        for key in range(3):
            values[f"metric_{key}"].append(rng.standard_normal(ROWS_PER_RECORD))
    return {key: np.concatenate(parts) for key, parts in values.items()}


def _blocks_written(engine: sa.Engine) -> list[tuple[int, int, int, int]]:
    """(series id, level, seq, entries) of every block row the engine's statements insert or
    upsert, as the database driver gets them."""
    written: list[tuple[int, int, int, int]] = []

    def note(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO blocks"):
            names = [name.strip() for name in statement[statement.index("(") + 1 : statement.index(")")].split(",")]
            for row in parameters if executemany else [parameters]:
                row = row if isinstance(row, dict) else dict(zip(names, row))
                written.append((row["series_id"], row["level"], row["seq"], row["count"]))
    sa.event.listen(engine, "before_cursor_execute", note)
    return written


def test_a_small_append_rewrites_only_the_pieces_its_points_fall_in(tmp_path, store_url, fresh_url):
    """A level's last block, while partial, is stored in pieces of ``PIECE_SIZE`` entries: an
    upload rewrites the piece its first point falls in and writes the pieces after it, not the
    whole partial block (which re-encoded and wrote ~50 times the bytes uploaded); a block that
    fills up is written whole, a level-0 one once. The store still equals one pass."""
    from tracklet.store import blocks as B

    import collections

    data = _log(tmp_path / "client", steps=3000, seed=0)
    server = _Server(tmp_path, store_url)
    written = _blocks_written(server.store.engine)
    most = 0  # open-block rows one upload wrote for one (series, level)
    for end in _cuts(data):
        before = len(written)
        server.upload(data, [end])
        rows = collections.Counter((series_id, level) for series_id, level, _, count in written[before:]
                                   if count < B.BLOCK_SIZE)
        most = max(most, *rows.values(), 0)
    assert most == 2  # the piece its first point falls in and the next (a 2 KiB upload crosses at most one edge)
    assert written and all(count <= B.PIECE_SIZE or count == B.BLOCK_SIZE for *_, count in written)
    full = [(series_id, seq) for series_id, level, seq, count in written if level == 0 and count == B.BLOCK_SIZE]
    assert len(full) == len(set(full)) == 4 * 2  # 3 metrics and _timestamp, 2 full blocks each
    assert _store_content(server.store.engine) == _whole(tmp_path, fresh_url, server.root)
    server.store.close()


def test_uploads_of_any_size_over_filled_summary_blocks_read_back_every_value(tmp_path, store_url, fresh_url):
    """Uploads of 1 to ~40 frames, past a full level-1 block (16,384 points), every fifth indexed
    by a new indexer (a restarted server, which keeps nothing: it reads the open blocks' pieces
    back from the store): the store equals one pass, and every logged value reads back exactly."""
    steps = 17_000
    data = _log(tmp_path / "client", steps=steps, seed=3)
    frame_ends = _cuts(data, piece=1)
    rng = np.random.default_rng(0)
    ends, at = [], 0
    while at < len(frame_ends) - 1:
        at = min(at + int(rng.integers(1, 40)), len(frame_ends) - 1)
        ends.append(frame_ends[at])
    server = _Server(tmp_path, store_url)
    for number, end in enumerate(ends):
        if number % 5 == 4:
            server.indexer = _indexer(server.store, server.root)
        server.upload(data, [end])
    assert _store_content(server.store.engine) == _whole(tmp_path, fresh_url, server.root)
    for key, values in _logged(steps, seed=3).items():
        (history,) = server.store.history(f"{PROJECT}/{RUN}", key, buckets=None)
        assert history.exact and np.array_equal(history.steps, np.arange(steps))
        assert np.array_equal(history.values, values)
        (summary,) = server.store.history(f"{PROJECT}/{RUN}", key, buckets=10)
        assert summary.count.sum() == steps and summary.min.min() == values.min() and summary.max.max() == values.max()
    server.store.close()


def test_an_append_rolled_back_as_a_block_fills_up_leaves_its_pieces(tmp_path, store_url, fresh_url):
    """The append that fills a level's open block writes it whole and deletes its other pieces;
    if its transaction then fails, the pieces are all still there (the store as before it), and
    the next append stores what one pass stores."""
    data = _log(tmp_path / "client", steps=1500, seed=0)
    server = _Server(tmp_path, store_url)
    statements: list[str] = []
    refuse = [True]

    def refuse_counts_after_deleting_pieces(connection, cursor, statement, *rest):
        statements.append(statement)
        if refuse[0] and statement.startswith("UPDATE series") and any(
                sql.startswith("DELETE FROM blocks") for sql in statements):
            raise RuntimeError("refused")
    sa.event.listen(server.store.engine, "before_cursor_execute", refuse_counts_after_deleting_pieces)
    cuts = _cuts(data)
    failed = None
    for number, end in enumerate(cuts):
        before = _store_content(server.store.engine)
        statements.clear()
        try:
            server.upload(data, [end])
        except RuntimeError:
            failed = number
            break
    assert failed is not None and failed < len(cuts) - 1, "no append filled a block"
    assert _store_content(server.store.engine) == before
    refuse[0] = False
    server.upload(data, cuts[failed:])
    assert _store_content(server.store.engine) == _whole(tmp_path, fresh_url, server.root)
    server.store.close()


def _reads_back_exactly(store: Store, logged: dict[str, np.ndarray]) -> None:
    """Every key of the run reads back as logged so far: steps 0..n-1, each value exact, and a
    zoomed-out read's buckets count every point and keep the true min and max."""
    for key, values in logged.items():
        (points,) = store.history(f"{PROJECT}/{RUN}", key, buckets=None)
        count = len(points.steps)
        assert np.array_equal(points.steps, np.arange(count)), key
        assert np.array_equal(points.values, values[:count]), key
        (buckets,) = store.history(f"{PROJECT}/{RUN}", key, buckets=7)
        if count:
            assert buckets.count.sum() == count, key
            assert (buckets.min.min(), buckets.max.max()) == (values[:count].min(), values[:count].max()), key


def test_a_store_migrated_from_0010_keeps_its_index_and_appends_to_its_open_blocks(tmp_path, fresh_url):
    """Migration 0011 converts nothing: a 0010 indexer stored each level's partial last block as
    one row (made here by joining the pieces, as this indexer does once a run ended), which this
    indexer takes as a joined block. Migrated, the store keeps every row; the run's next uploads
    (indexed by a kept indexer and by fresh ones) read back every value after each, and the store
    then equals one pass. Migrated back down, the indexed data goes (0010's indexer would write
    over the pieces after the first) and each run's log is to be read again from its first byte."""
    from alembic import command
    from alembic.config import Config

    from tracklet.store.engine import MIGRATIONS
    from tracklet.store.ingest import join_open_blocks
    from tracklet.store.schema import blocks
    from tracklet.store.schema import runs as runs_table

    steps = 6000
    data = _log(tmp_path / "client", steps=steps, seed=1)
    cuts = _cuts(data)
    half = len(cuts) // 2
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = conftest.store_at_revision(url, "0010")
    server = _Server(tmp_path, url, engine)
    server.upload(data, cuts[:half])
    with engine.begin() as connection:
        join_open_blocks(connection, connection.execute(sa.select(runs_table.c.id)).scalar_one())
    before = _store_content(engine)
    engine.dispose()
    store = Store(url, root=server.root)  # migrates to head
    assert _store_content(store.engine) == before
    logged = _logged(steps, 1)
    for number, end in enumerate(cuts[half:]):
        if number % 3 == 0:
            server.indexer = _indexer(store, server.root)
        server.upload(data, [end])
        _reads_back_exactly(store, logged)
    assert _store_content(store.engine) == _whole(tmp_path, fresh_url, server.root)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0010")
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(blocks)).scalar() == 0
        assert connection.execute(sa.select(runs_table.c.log_offset)).scalar_one() == 0
    store.close()


def _ended_log(directory: Path, steps: int, seed: int, resumed: int = 0, *, exited: bool = True) -> bytes:
    """``_log``'s run finished after ``steps`` rows (or, not ``exited``, killed: no exit record);
    with ``resumed``, then resumed for that many rows more and finished."""
    data = _log(directory, steps, seed)
    writer = RecordLogWriter(directory / "log", resume=True)
    rng = np.random.default_rng(seed + 1)
    end = pb.Record()
    end.exit.exit_code, end.exit.end_time = 0, 1.8e9 + steps
    if exited:
        writer.write(end.SerializeToString())
    if resumed:
        start = pb.Record()
        # A resumed session's start need not repeat the run's identity (no name here) and may come
        # from another machine: the run keeps its first start's, however its log was uploaded.
        start.run_start.run_id, start.run_start.project, start.run_start.host = RUN, PROJECT, "elsewhere"
        start.run_start.resumed = True
        start.run_start.start_time = 1.8e9 + steps + 1
        writer.write(start.SerializeToString())
        for first in range(steps, steps + resumed, ROWS_PER_RECORD):
            record = pb.Record()
            record.history.steps.extend(range(first, first + ROWS_PER_RECORD))
            record.history.times.extend((1.8e9 + np.arange(first, first + ROWS_PER_RECORD) * 0.01).tolist())
            for key in range(3):
                record.history.columns.add(key=key).floats.extend(rng.standard_normal(ROWS_PER_RECORD).tolist())
            writer.write(record.SerializeToString())
        end.exit.end_time = 1.8e9 + steps + resumed
        writer.write(end.SerializeToString())
    writer.close()
    assert (directory / "log").read_bytes().startswith(data)
    return (directory / "log").read_bytes()


def _logged_resumed(steps: int, resumed: int, seed: int) -> dict[str, np.ndarray]:
    """The values ``_ended_log(..., steps, seed, resumed)`` logged, by key."""
    rng = np.random.default_rng(seed + 1)
    more: dict[str, list[np.ndarray]] = {f"metric_{key}": [] for key in range(3)}
    for _ in range(steps, steps + resumed, ROWS_PER_RECORD):
        for key in range(3):
            more[f"metric_{key}"].append(rng.standard_normal(ROWS_PER_RECORD))
    return {key: np.concatenate([values, *more[key]]) for key, values in _logged(steps, seed).items()}


def _open_rows(engine: sa.Engine) -> dict[tuple[int, int], int]:
    """Rows of each (series, level) holding fewer than a full block's entries."""
    from tracklet.store import blocks as B
    from tracklet.store.schema import blocks

    with engine.connect() as connection:
        return {(row.series_id, row.level): row.rows for row in connection.execute(
            sa.select(blocks.c.series_id, blocks.c.level, sa.func.count().label("rows"))
            .where(blocks.c.count < B.BLOCK_SIZE).group_by(blocks.c.series_id, blocks.c.level))}


@pytest.mark.parametrize("exit_alone", [False, True])
def test_a_finished_runs_open_blocks_are_one_row_each(tmp_path, store_url, fresh_url, exit_alone):
    """Once a run finished, each level's open block is stored as one row again (a chart reads one
    row per level of it, not up to 16 pieces), whether its last upload held points or only the
    exit record, and the store equals one pass over the log (which indexes a run of the data
    root's runs together with others: written whole there)."""
    data = _ended_log(tmp_path / "client", steps=3000, seed=0)
    frame_ends = _cuts(data, piece=1)
    before_exit = frame_ends[-2] if exit_alone else frame_ends[-1]
    cuts = [*(end for end in _cuts(data) if end < before_exit), before_exit, len(data)]
    server = _Server(tmp_path, store_url)
    server.upload(data, cuts)
    open_rows = _open_rows(server.store.engine)
    assert open_rows and set(open_rows.values()) == {1}
    whole = _whole(tmp_path, fresh_url, server.root)
    assert _store_content(server.store.engine) == whole
    together = Store(fresh_url(tmp_path / "together"), root=server.root)
    assert _indexer(together, server.root).index().runs_updated == 1
    assert _store_content(together.engine) == whole
    together.close()
    server.store.close()


def test_a_resumed_runs_appends_to_its_joined_open_blocks_store_what_one_pass_stores(tmp_path, store_url, fresh_url):
    """A run finished (its open blocks joined), then resumed: its appends write the joined blocks
    as pieces again, uploads indexed by one indexer or each by a new one, and once it finished
    again the store equals one pass over the whole log."""
    steps, resumed = 3000, 1000
    data = _ended_log(tmp_path / "client", steps=steps, seed=0, resumed=resumed)
    exit_end = _cuts(data, piece=1)[steps // ROWS_PER_RECORD + 1]  # the start, the records, the exit
    cuts = sorted({*_cuts(data)[:-1], exit_end, len(data)})  # one upload ends with the exit: joined
    logged = _logged_resumed(steps, resumed, seed=0)
    for restart in (False, True):
        server = _Server(tmp_path / str(restart), store_url)
        for end in cuts:
            if restart:
                server.indexer = _indexer(server.store, server.root)
            server.upload(data, [end])
            if end == exit_end:
                assert set(_open_rows(server.store.engine).values()) == {1}  # ended: joined
            _reads_back_exactly(server.store, logged)
        assert set(_open_rows(server.store.engine).values()) == {1}
        assert _store_content(server.store.engine) == _whole(tmp_path / str(restart), fresh_url, server.root)
        server.store.close()


def test_a_run_found_crashed_has_its_open_blocks_joined_and_resumed_appends_to_them(tmp_path, store_url, fresh_url):
    """A run whose uploads stopped without an exit record is found crashed by another process's
    pass (no new bytes): its open blocks are joined into one row each, as a finished run's. Then
    resumed, its uploads to the indexer that kept its series as pieces append to the joined
    blocks (the run's state is part of what that indexer checks): its series equal one pass."""
    data = _ended_log(tmp_path / "client", steps=3000, seed=0, resumed=1000, exited=False)
    killed_at = _cuts(data, piece=1)[3000 // ROWS_PER_RECORD]  # the start and 375 records
    cuts = _cuts(data)
    server = _Server(tmp_path, store_url)
    server.upload(data, [*(end for end in cuts if end < killed_at), killed_at])
    assert max(_open_rows(server.store.engine).values()) > 1  # recording: in pieces
    Indexer(server.store.engine, server.root, liveness=lambda _: False).index_run(server.paths)
    assert server.store.run(PROJECT, RUN, fields=("state",))["state"] == "crashed"
    assert set(_open_rows(server.store.engine).values()) == {1}
    logged = _logged_resumed(3000, 1000, seed=0)
    for end in [*(end for end in cuts if end > killed_at), len(data)]:
        server.upload(data, [end])
        _reads_back_exactly(server.store, logged)
    whole = _whole(tmp_path, fresh_url, server.root)
    content = _store_content(server.store.engine)
    assert (content["series"], content["blocks"]) == (whole["series"], whole["blocks"])
    server.store.close()


def _start_frame(name: str, host: str, *, resumed: bool, at: float, tag: str) -> bytes:
    record = pb.Record()
    start = record.run_start
    start.run_id, start.project, start.name, start.host = RUN, PROJECT, name, host
    start.resumed, start.start_time = resumed, at
    start.tags.append(tag)
    return record.SerializeToString()


def _identity_uploaded(tmp_path: Path, store_url: str, payloads: list[bytes]) -> list[dict]:
    """The run's name, host and tags in the store after a log of ``payloads`` is uploaded whole,
    then (another server) with its first frame alone first."""
    directory = tmp_path / "client"
    directory.mkdir()
    writer = RecordLogWriter(directory / "log")
    for payload in payloads:
        writer.write(payload)
    writer.close()
    data = (directory / "log").read_bytes()
    fields = ("name", "host", "tags")
    found = []
    for ends in ([len(data)], [_cuts(data, piece=1)[0], len(data)]):
        server = _Server(tmp_path / str(len(ends)), store_url)
        server.upload(data, ends)
        run = server.store.run(PROJECT, RUN, fields=fields)
        found.append({field: run[field] for field in fields})
        server.store.close()
    return found


@pytest.mark.parametrize("first_resumed", [False, True])
def test_a_runs_identity_is_its_first_starts_however_its_log_is_uploaded(tmp_path, store_url, fresh_url,
                                                                         first_resumed):
    """A run's name, host, tags... are its first session's start's; a later session's resumed
    start (here with no name, from another machine) changes none of them, whether it arrives in the
    same upload or one of its own, and also where the log's first start is itself a resumed one
    (a run resumed from another store's copy)."""
    starts = [_start_frame("first-name", "h1", resumed=first_resumed, at=1.8e9, tag="t0"),
              _start_frame("", "elsewhere", resumed=True, at=1.8e9 + 10, tag="t1")]
    assert _identity_uploaded(tmp_path, store_url, starts) == [{"name": "first-name", "host": "h1", "tags": ["t0"]}] * 2


def test_a_run_whose_first_upload_held_no_start_takes_its_identity_from_the_first_start(tmp_path, store_url):
    """A log whose first frames are not a start (its first frame torn, a copy cut short at the
    front) gets a run row from its first upload; the first start that arrives later, resumed or
    not, still gives the run its name, host and tags, as one pass over the log does."""
    history = pb.Record()
    history.history.steps.append(0)
    history.history.times.append(1.8e9)
    frames = [history.SerializeToString(), _start_frame("resumed-name", "h2", resumed=True, at=1.8e9 + 10, tag="t1")]
    assert _identity_uploaded(tmp_path, store_url, frames) == [{"name": "resumed-name", "host": "h2", "tags": ["t1"]}] * 2
