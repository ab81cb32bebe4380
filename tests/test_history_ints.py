"""Ints logged as ints read back as ints on every path, as W&B gives them: a run's record log
keeps them exact (``Column.ints``, ``Column.bools``), and the store keeps, beside the float64s
charts read, how each point was logged and the ints exactly (``store/blocks.py``'s ``Logged``).
So a server's history, ``tracklet.Api``'s store histories, W&B's ``run.history()`` and
``scan_history()`` against a server give ``3`` for an epoch logged as 3 (not ``3.0``), ``True`` for
a bool, an int past 2**53 exactly, and a float logged as 3.0 stays ``3.0``. A key that mixes ints
and floats gives each value as logged (W&B's rule; a pandas column of both is float64)."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

import tracklet
from tracklet.core.recordlog import RecordLogWriter, scan
from tracklet.proto import records_pb2 as pb
from tracklet.store import blocks as B
from tracklet.store.schema import blocks

from conftest import QUIET
from test_store_small_appends import _cuts, _Server, _whole
from test_store_robustness import _store_content

BIG = 2**53 + 1  # the first int a float64 can't hold
# key: (value logged at each of the 3 steps, what W&B gives back)
LOGGED = {
    "epoch": ([0, 1, 2], [0, 1, 2]),
    "neg": ([-7, -8, -9], [-7, -8, -9]),
    "tokens": ([BIG, BIG + 2, 2**63 - 1], [BIG, BIG + 2, 2**63 - 1]),
    "seed": ([np.int64(BIG), np.int64(-BIG), np.int32(5)], [BIG, -BIG, 5]),
    "flag": ([True, False, True], [True, False, True]),
    "three": ([3.0, 3.0, 3.0], [3.0, 3.0, 3.0]),
    "loss": ([0.5, 0.25, math.inf], [0.5, 0.25, math.inf]),
    "mixed": ([1, 2.5, 3], [1, 2.5, 3]),
}


def _same(found: list, expected: list) -> bool:
    """Equal value by value with the type kept (True is not 1, 3 is not 3.0)."""
    return len(found) == len(expected) and all(type(a) is type(b) and a == b for a, b in zip(found, expected))


def _log(run: tracklet.Run) -> None:
    for step in range(3):
        run.log({key: logged[step] for key, (logged, _) in LOGGED.items()})


def test_every_read_path_of_a_server_and_of_a_store_gives_ints_for_ints(root, servers, tmp_path):
    server = servers(tmp_path / "srv")
    run = tracklet.init(project="p", dir=str(root), mode="online", settings={**QUIET, "base_url": server.url})
    _log(run)
    run.finish()
    keys = list(LOGGED)

    remote = tracklet.Api(base_url=server.url)
    history = remote.run(run.path).history()
    for key, (_, expected) in LOGGED.items():
        assert _same(history[key], expected), (key, history[key])
    for series in remote.history(run.path, keys, buckets=None):
        assert _same(series.as_logged(), LOGGED[series.key][1]), (series.key, series.as_logged())
    import io
    import json

    from tracklet.core.export import export_history

    exported = io.StringIO()
    export_history(remote.run(run.path), "jsonl", exported, keys=["epoch", "tokens", "flag", "three"])
    lines = [json.loads(line) for line in exported.getvalue().splitlines()]
    assert [(line["epoch"], line["tokens"], line["flag"], line["three"]) for line in lines][-1] == (2, 2**63 - 1, True, 3.0)
    assert '"three":3.0' in exported.getvalue().splitlines()[-1] and '"epoch":2,' in exported.getvalue()
    exported = io.StringIO()
    export_history(remote.run(run.path), "csv", exported, keys=["epoch", "tokens", "flag"])
    assert exported.getvalue().splitlines()[-1].endswith(f",2,{2**63 - 1},true")
    summary = remote.run(run.path).summary
    assert summary["epoch"] == 2 and type(summary["epoch"]) is int and summary["tokens"] == 2**63 - 1

    answer = httpx.get(f"{server.url}/api/v1/runs/{run.path}/history", params={"keys": ",".join(keys), "buckets": 0})
    series = {item["key"]: item for item in answer.json()["series"]}
    assert series["tokens"]["values"] == [BIG, BIG + 2, 2**63 - 1]  # JSON integers, exact
    assert series["flag"]["values"] == [1, 0, 1] and series["flag"]["bools"] == [0, 1, 2]  # numbers for charts
    assert series["three"]["values"] == [3.0, 3.0, 3.0] and "bools" not in series["three"]
    assert answer.text.count('"values":[3.0,3.0,3.0]') == 1  # a float logged as 3.0 stays a JSON float
    compare = httpx.get(f"{server.url}/api/v1/projects/p/history",
                        params={"keys": "epoch,flag", "runs": run.id, "buckets": 0}).json()["series"]
    assert {item["key"]: item["values"] for item in compare} == {"epoch": [0, 1, 2], "flag": [1, 0, 1]}

    import tracklet.compat.wandb as wandb

    api_run = wandb.Api(overrides={"base_url": server.url}).run(run.path)
    rows = api_run.history(pandas=False)
    scanned = list(api_run.scan_history())
    for key, (_, expected) in LOGGED.items():
        assert _same([row[key] for row in rows], expected), key
        assert _same([row[key] for row in scanned], expected), key
    assert [f"{row['epoch']}" for row in scanned] == ["0", "1", "2"]  # what f"epoch {epoch}" prints
    frame = api_run.history()
    dtypes = {key: str(frame[key].dtype) for key in LOGGED}
    assert dtypes == {"epoch": "int64", "neg": "int64", "tokens": "int64", "seed": "int64", "flag": "bool",
                      "three": "float64", "loss": "float64", "mixed": "float64"}
    assert frame["tokens"].tolist() == [BIG, BIG + 2, 2**63 - 1]

    # The same log in a local store: Api.history's exact series give the values as logged.
    local = tracklet.Api(tmp_path / "srv")
    for series in local.history(run.path, keys, buckets=None):
        assert _same(series.as_logged(), LOGGED[series.key][1]), series.key
        assert series.values.dtype == np.float64  # what charts read stays float64


def _typed_log(directory: Path, steps: int, ended: bool = False) -> bytes:
    """A run's record log of small records (an online run's): ints, bools, floats and one key
    whose type changes every few rows (several columns of one key in a batch); ``ended``: then
    its exit record."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = RecordLogWriter(directory / "log")
    start = pb.Record()
    start.run_start.run_id, start.run_start.project, start.run_start.name = "online", "p", "online"
    start.run_start.start_time = 1.8e9
    writer.write(start.SerializeToString())
    for first in range(0, steps, 8):
        record = pb.Record()
        batch = record.history
        if first == 0:
            for key, name in enumerate(("tokens", "flag", "loss", "mixed")):
                batch.new_keys.add(id=key, name=name)
        rows = range(first, first + 8)
        batch.steps.extend(rows)
        batch.times.extend([1.8e9 + row * 0.01 for row in rows])
        batch.columns.add(key=0).ints.extend([BIG + row for row in rows])
        batch.columns.add(key=1).bools.extend([row % 3 == 0 for row in rows])
        batch.columns.add(key=2).floats.extend([float(row) for row in rows])
        batch.columns.add(key=3, rows=[0, 1, 2, 3]).ints.extend(list(rows)[:4])
        batch.columns.add(key=3, rows=[4, 5, 6, 7]).floats.extend([row + 0.5 for row in rows][4:])
        writer.write(record.SerializeToString())
    if ended:
        record = pb.Record()
        record.exit.exit_code, record.exit.end_time = 0, 1.8e9 + steps
        writer.write(record.SerializeToString())
    writer.close()
    return (directory / "log").read_bytes()


def _logged_steps(data: bytes, end: int) -> int:
    """How many rows the history records within the log's first ``end`` bytes hold: what an
    upload of that much of it logged."""
    records = [pb.Record.FromString(payload) for _, payload in scan(data[:end]).payloads]
    return sum(len(record.history.steps) for record in records if record.WhichOneof("kind") == "history")


def _expected(steps: int) -> dict[str, list]:
    return {"tokens": [BIG + row for row in range(steps)], "flag": [row % 3 == 0 for row in range(steps)],
            "loss": [float(row) for row in range(steps)],
            "mixed": [row if row % 8 < 4 else row + 0.5 for row in range(steps)]}


def test_small_appends_keep_how_each_point_was_logged(tmp_path, store_url, fresh_url):
    """Upload by upload across block boundaries (the tails kept between appends, read back from the
    store, open blocks in pieces, then joined), every point reads back as logged, and the store
    equals one pass over the whole log."""
    data = _typed_log(tmp_path / "client", steps=2600, ended=True)
    server = _Server(tmp_path, store_url)
    server.upload(data, [end for end in _cuts(data) if end < len(data)] + [len(data)])  # the last one ends it
    assert server.store.runs("p")[0]["state"] == "finished"  # its open blocks written whole
    for series in server.store.history("p/online", list(_expected(2600)), buckets=None):
        assert _same(series.as_logged(), _expected(2600)[series.key]), series.key
    # A run found crashed: its open blocks, in pieces, are joined into one row each.
    crashed = _Server(tmp_path / "crashed", fresh_url(tmp_path / "crashed-store"))
    cut = [end for end in _cuts(data) if end < len(data)]
    crashed.upload(data, cut)
    uploaded = _logged_steps(data, cut[-1])
    type(crashed.indexer)(crashed.store.engine, crashed.root, liveness=lambda _: False).index_run(crashed.paths)
    assert crashed.store.runs("p")[0]["state"] == "crashed"
    with crashed.store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.max(blocks.c.count)).where(blocks.c.level == 0)).scalar() > B.PIECE_SIZE
    for series in crashed.store.history("p/online", list(_expected(2600)), buckets=None):
        assert _same(series.as_logged(), _expected(uploaded)[series.key]), series.key
    crashed.store.close()
    assert _store_content(server.store.engine) == _whole(tmp_path, fresh_url, server.root)
    # Charts and summaries read the float64s: an int past 2**53 is the nearest double there.
    (tokens,) = server.store.history("p/online", "tokens", buckets=10)
    assert not tokens.exact and tokens.last[-1] == float(BIG + tokens.steps[-1])
    server.store.close()


def test_blocks_written_before_tracklet_kept_ints_read_as_floats_and_later_points_as_logged(tmp_path, store_url):
    """A store indexed by an older tracklet (level-0 blocks of float64s alone: the same bytes without
    the part that says how points were logged) reads as it did, floats; points appended after the
    upgrade to those very blocks read as logged. No re-index needed."""
    data = _typed_log(tmp_path / "client", steps=400)
    server = _Server(tmp_path, store_url)
    ends = _cuts(data)
    half = next(end for end in ends if end > len(data) // 2)
    server.upload(data, [end for end in ends if end <= half])
    with server.store.engine.begin() as connection:  # what an older indexer wrote
        for row in connection.execute(sa.select(blocks).where(blocks.c.level == 0)).all():
            steps, values = B.decode_points(row.data)
            connection.execute(blocks.update().where(blocks.c.series_id == row.series_id, blocks.c.level == 0,
                                                     blocks.c.seq == row.seq).values(data=B.encode_points(steps, values)))
    before = _logged_steps(data, half)
    old = {series.key: series for series in server.store.history("p/online", ["tokens", "flag"], buckets=None)}
    assert old["flag"].logged is None and _same(old["flag"].as_logged(), [float(v) for v in _expected(before)["flag"]])
    assert _same(old["tokens"].as_logged(), [float(v) for v in _expected(before)["tokens"]])
    indexer = type(server.indexer)(server.store.engine, server.root, liveness=lambda _: True)  # nothing kept
    indexer.index_run(server.paths)  # no new bytes yet
    server.indexer = indexer
    server.upload(data, [end for end in ends if end > half])
    (tokens,) = server.store.history("p/online", "tokens", buckets=None)
    found = tokens.as_logged()
    assert _same(found[:before], [float(v) for v in _expected(before)["tokens"]])
    total = _logged_steps(data, ends[-1])
    assert _same(found[before:], _expected(total)["tokens"][before:]) and 0 < before < total
    server.store.close()


def test_a_float_series_stores_no_more_than_before():
    """Blocks of points logged as floats are byte for byte what older tracklets wrote (no part
    saying how they were logged); a block with ints has one, and reads them back exactly."""
    steps = np.arange(1000, dtype=np.int64)
    values = np.linspace(0, 1, 1000)
    plain = B.encode_points(steps, values)
    assert B.encode_points(steps, values, B.floats_logged(1000)) == plain
    assert B.decode_block(plain)[2] is None
    ints = np.arange(1000, dtype=np.int64) + BIG
    logged = B.Logged(np.full(1000, B.INT, dtype=np.uint8), ints)
    _, decoded_values, decoded = B.decode_block(B.encode_points(steps, ints.astype(np.float64), logged))
    assert decoded is not None and decoded.ints.tolist() == ints.tolist() and B.decode_points(plain)[1].tolist() == values.tolist()
    assert B.as_logged(decoded_values, decoded) == ints.tolist()


HUGE = {"above": 2**70, "below": -2**63 - 1}  # ints outside int64: the record log keeps their digits


@pytest.mark.parametrize("mode", ["local", "served", "online"])
def test_ints_outside_int64_read_back_exact_in_summary_config_and_history_on_every_path(root, servers, tmp_path,
                                                                                          monkeypatch, mode):
    """An int outside int64 (W&B's JSON keeps it exact) reads back exact from a data root, from a
    server reading that data root and from a server an online run uploaded to: in the summary, the
    config and the history (the store's series hold the nearest float, for charts; the history
    takes the exact value from the server's copy of the record log). A number logged later at
    the same step takes its place, as everywhere."""
    import tracklet.compat.wandb as wandb

    monkeypatch.setenv("TRACKLET_DIR", str(root))
    if mode == "online":
        server = servers(tmp_path / "srv")
        monkeypatch.setenv("TRACKLET_MODE", "online")
        monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    run = wandb.init(project="p", config=dict(HUGE), settings=wandb.Settings(silent=True))
    run.log({**HUGE, "step_int": 1}, step=0)
    run.log({"above": 3, "below": 2**64}, step=1)
    run.log({"above": 2**70 + 1}, step=2)
    run.log({"above": 4}, step=2)  # the last value at a step wins
    run.summary["nested"] = {"n": 2**70}
    run.finish()
    url = {"local": None, "served": lambda: servers(root).url, "online": lambda: server.url}[mode]
    api = wandb.Api(overrides={"base_url": url()}) if url else wandb.Api()
    found = api.run(f"p/{run.id}")
    assert found.config == HUGE and type(found.config["above"]) is int
    assert found.summary["above"] == 4 and found.summary["below"] == 2**64 and found.summary["nested"] == {"n": 2**70}
    for rows in (found.history(pandas=False), list(found.scan_history())):
        assert [(row["above"], row["below"]) for row in rows[:2]] == [(2**70, -2**63 - 1), (3, 2**64)]
        assert rows[2]["above"] == 4 and type(rows[0]["above"]) is int
    assert found.history()["above"].tolist() == [2**70, 3, 4]  # a pandas column of Python ints
    own = tracklet.Api(base_url=url()) if url else tracklet.Api(root)
    history = own.run(f"p/{run.id}").history(["above", "below"])
    assert history["above"] == [2**70, 3, 4] and history["below"] == [-2**63 - 1, 2**64, None]
    assert all(type(value) is int for value in history["above"])
