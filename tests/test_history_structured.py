"""History values W&B keeps as JSON or text (lists of strings, nested lists, tuples, sets, lists
of dicts, bytes) and the kinds W&B refuses (complex, timedelta) are recorded and read back: in the
history, the summary, exports, the store, a server's copy, W&B's ``run.history()`` and the
dashboard's tables. A value too large or too deep is dropped alone, with a warning naming its key,
by the writer and by every reader of a record log."""

from __future__ import annotations

import datetime
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import tracklet
from tracklet.cli.main import main
from tracklet.core.decode import RecordDecoder
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import frame, read_log
from tracklet.core.validate import check_record
from tracklet.core.values import MAX_NESTING, MAX_STRUCTURED_BYTES, iso_duration, to_value_message
from tracklet.proto import records_pb2 as pb

from conftest import QUIET, read

# (logged, recorded): what each kind is recorded as, the W&B history value where W&B keeps one.
KINDS = {
    "generated": (["a cat", "a dog"], ["a cat", "a dog"]),
    "top_k": ([[1, 2], [3, 4]], [[1, 2], [3, 4]]),
    "pair": ((1, "x"), [1, "x"]),
    "tags": ({"b", "a", "c"}, ["a", "b", "c"]),  # W&B: the set's iteration order; here sorted
    "records": ([{"label": "cat", "p": 0.9}, {"label": "dog", "p": 0.1}],
                [{"label": "cat", "p": 0.9}, {"label": "dog", "p": 0.1}]),
    "holes": ([1, None, "x"], [1, None, "x"]),
    "nested": ([{"a": [1, {"b": None}]}], [{"a": [1, {"b": None}]}]),
    "empty": ([], []),
    "flags": ([True, 0, 2.5], [True, 0, 2.5]),
    "raw": (b"caf\xc3\xa9", "café"),
    "not_utf8": (b"\xffa\xfe", "\\xffa\\xfe"),
    "z": (1 + 2j, "1+2j"),
    "epoch_time": (datetime.timedelta(minutes=1, seconds=30), "PT1M30S"),
    "in_list": ([datetime.timedelta(days=-1), 2j, b"b"], ["-P1D", "2j", "b"]),
    "np_strings": (np.array(["a", "b"]), ["a", "b"]),
    "when": (np.datetime64("2024-01-02T03:04:05"), "2024-01-02T03:04:05"),
    "day": (np.datetime64("2024-01-02"), "2024-01-02"),
    "when_ns": (np.datetime64("2024-01-02T03:04:05.000000001"), 1704164645000000001),
    "np_items": ([np.float32(0.5), np.int64(3), "s"], [0.5, 3, "s"]),
}


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN, types kept (True is not 1)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _log_every_kind(run: tracklet.Run, steps: int = 3) -> None:
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), **{key: logged for key, (logged, _) in KINDS.items()},
                 "with_nan": ["x", math.nan, [math.inf]]})


def _check_recorded(history, summary) -> None:
    for key, (_, recorded) in KINDS.items():
        assert all(_same(value, recorded) for value in history[key]), (key, history[key])
        assert _same(summary[key], recorded), (key, summary[key])
    assert history["loss"] == [1.0, 0.5, 1.0 / 3]
    nan_list = history["with_nan"][-1]
    assert nan_list[0] == "x" and math.isnan(nan_list[1]) and nan_list[2] == [math.inf]


def test_every_kind_round_trips_in_history_and_summary(start, tmp_path):
    run = start()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracklet.TrackletWarning)  # none of them is dropped any more
        _log_every_kind(run)
        run.finish()
    recorded = read(run)
    _check_recorded(recorded.history(), recorded.summary)
    # the summary the live run wrote (not only the one a reader folds from history)
    assert _same(run.summary["records"], KINDS["records"][1])
    rows = list(recorded.history().rows())
    assert _same(rows[0]["top_k"], [[1, 2], [3, 4]])


def test_exports_write_structured_values_as_json(start, tmp_path):
    run = start()
    run.log({"generated": ["a cat", "a dog"], "loss": 1.0})
    run.log({"generated": [{"p": math.nan}], "loss": 2.0})
    run.finish()
    root = str(tmp_path / "data")
    runner = CliRunner()
    cells = {}
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"export.{fmt}"
        done = runner.invoke(main, ["--dir", root, "export", run.path, "-f", fmt, "-o", str(out)])
        assert done.exit_code == 0, done.output
        cells[fmt] = out
    import csv

    with open(cells["csv"], newline="") as handle:
        column = [row["generated"] for row in csv.DictReader(handle)]
    assert [json.loads(cell) for cell in column] == [["a cat", "a dog"], [{"p": "NaN"}]]
    lines = [json.loads(line) for line in cells["jsonl"].read_text().splitlines()]
    assert [line["generated"] for line in lines] == [["a cat", "a dog"], [{"p": "NaN"}]]
    import pyarrow.parquet as pq

    table = pq.read_table(cells["parquet"])
    assert [json.loads(cell) for cell in table.column("generated").to_pylist()] == [["a cat", "a dog"], [{"p": "NaN"}]]


def test_a_list_changed_after_log_is_recorded_as_it_was_logged(start):
    run = start()
    generated: list = []
    for step in range(3):
        generated.append(f"sample {step}")
        nested = [[step], {"inner": [step]}]
        run.log({"generated": generated, "nested": nested, "loss": float(step)})
        nested[0].append(99)
        nested[1]["inner"].clear()
    generated.clear()
    run.finish()
    history = read(run).history()
    assert history["generated"] == [["sample 0"], ["sample 0", "sample 1"], ["sample 0", "sample 1", "sample 2"]]
    assert history["nested"] == [[[step], {"inner": [step]}] for step in range(3)]


def test_a_key_whose_type_changes_between_rows_keeps_every_value(start, root):
    from tracklet.store import Store

    run = start()
    for value in (1.5, ["a", "b"], 2.5, [[1], [2]], "text", 3):
        run.log({"x": value, "loss": 0.0})
    run.finish()
    history = read(run).history()
    assert history["x"] == [1.5, ["a", "b"], 2.5, [[1], [2]], "text", 3]
    assert read(run).summary["x"] == 3
    # the store charts the numbers of the key and nothing else
    store = Store(f"sqlite:///{root / 'store.sqlite'}", root=root)
    store.index()
    (series,) = store.history(run.path, "x", buckets=None)
    assert series.steps.tolist() == [0, 2, 5] and series.values.tolist() == [1.5, 2.5, 3.0]


def test_the_store_keeps_the_last_structured_value_as_the_summary(root, store_url):
    from tracklet.store import Store

    run = tracklet.init(project="p", dir=str(root), settings=QUIET)
    for step in range(3):
        run.log({"loss": float(step), "generated": [f"s{step}", None, math.nan]})
    run.finish()
    store = Store(store_url, root=root)
    store.index()
    (row,) = store.runs("p", fields=("summary", "keys"))
    assert row["summary"]["generated"] == ["s2", None, None]  # NaN: null in the store's JSON (jsonsafe.py)
    assert store.history(run.path, "generated", buckets=None) == []  # never a series to chart


def test_one_bad_value_in_a_batch_is_dropped_alone_with_a_warning_naming_its_key(start):
    run = start()
    looped: list = ["x"]
    looped.append(looped)
    too_deep: list = []
    inner = too_deep
    for _ in range(MAX_NESTING + 2):
        inner.append([])
        inner = inner[0]
    huge = ["x" * 1000] * (MAX_STRUCTURED_BYTES // 1000 + 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step, bad in enumerate((looped, too_deep, huge)):
            run.log({"loss": float(step), "gen": ["ok", step], "bad": ["fine", step]})
            run.log({"loss": float(step) + 0.5, "gen": ["ok", step], "bad": bad})
        run.finish()
    messages = [str(w.message) for w in caught if issubclass(w.category, tracklet.TrackletWarning)]
    bad = [m for m in messages if "'bad'" in m]
    assert bad and all("dropped" in m for m in bad)
    assert any("contains itself" in m for m in bad)
    assert not [m for m in messages if "'gen'" in m or "'loss'" in m]
    history = read(run).history()
    assert history["loss"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert history["gen"] == [["ok", s] for s in (0, 0, 1, 1, 2, 2)]
    assert history["bad"] == [["fine", 0], None, ["fine", 1], None, ["fine", 2], None]


def test_strict_mode_accepts_exactly_what_is_recorded(start):
    run = start(settings={"strict": True})
    run.log({"generated": ["a", "b"], "z": 1j, "td": datetime.timedelta(seconds=2), "raw": b"x", "s": {1, "a"}})
    looped: list = []
    looped.append(looped)
    with pytest.raises(TypeError, match="'bad'.*contains itself"):
        run.log({"ok": 1.0, "bad": looped})
    with pytest.raises(TypeError, match="'big'.*KiB"):
        run.log({"ok": 1.0, "big": ["x" * 1000] * (MAX_STRUCTURED_BYTES // 1000 + 10)})
    with pytest.raises(TypeError, match="'emb'.*KiB"):
        run.log({"ok": 1.0, "emb": [[0.5] * 1000] * 1000})
    for dropped in (np.array([1j, 2j]), np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]")):
        with pytest.raises(TypeError, match="'arr'"):  # recorded as nothing for more than one element
            run.log({"ok": 1.0, "arr": dropped})
    run.log({"one": np.array([1j]), "day": np.array(["2024-01-01"], dtype="datetime64[D]"),
             "words": np.array(["a", "b"])})
    run.finish()
    history = read(run).history()
    assert history["generated"] == [["a", "b"], None] and history["z"] == ["1j", None]
    assert history["td"] == ["PT2S", None]
    assert history["one"] == [None, "1j"] and history["day"] == [None, "2024-01-01"]
    assert history["words"] == [None, ["a", "b"]]
    assert "ok" not in history


@pytest.mark.parametrize("delta", [
    datetime.timedelta(seconds=90), datetime.timedelta(days=1, seconds=5), datetime.timedelta(0),
    datetime.timedelta(microseconds=500000), datetime.timedelta(days=-1), datetime.timedelta(seconds=-1.5),
    datetime.timedelta(days=401, hours=1, microseconds=1), datetime.timedelta(minutes=61), datetime.timedelta.max,
    datetime.timedelta.min, datetime.timedelta(days=-3, microseconds=10)])
def test_a_timedelta_is_the_iso_duration_wandbs_json_encoder_writes(delta):
    pydantic_core = pytest.importorskip("pydantic_core")  # what W&B's history JSON is written with
    assert iso_duration(delta) == json.loads(pydantic_core.to_json(delta))


# ---------------------------------------------------------------- record logs from disk and uploads


def _value(plain) -> pb.Value:
    value = pb.Value()
    to_value_message(plain, value)
    return value


def _deep(levels: int) -> list:
    value: list = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


def _log_with_bad_values(root) -> RunPaths:
    """A run whose log (written by hand, as a hostile or broken writer could) holds, in one batch,
    a good structured value, one too large and one too deep under key ``gen``, and a number key."""
    run = tracklet.init(project="p", id="r", dir=str(root), settings=QUIET)
    run.log({"loss": 0.0, "gen": ["first"]})
    run.finish()
    paths = RunPaths(root, "p", "r")
    record = pb.Record()
    batch = record.history
    batch.steps.extend([1, 2, 3])
    batch.times.extend([1.0, 2.0, 3.0])
    keys = {definition.name: definition.id for r in _records(paths) if r.HasField("history")
            for definition in r.history.new_keys}
    batch.columns.add(key=keys["loss"]).floats.extend([1.0, 2.0, 3.0])
    gen = batch.columns.add(key=keys["gen"])
    gen.values.extend([_value(["ok"]), _value(["x" * (MAX_STRUCTURED_BYTES + 1)]), _value(_deep(MAX_NESTING + 1))])
    with open(paths.log_file, "ab") as handle:
        handle.write(frame(record.SerializeToString()))
    return paths


def _records(paths: RunPaths) -> list[pb.Record]:
    records = []
    for _, payload in read_log(paths.log_file).payloads:
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def test_a_reader_drops_a_too_large_or_too_deep_value_from_disk_and_keeps_the_rest(root):
    paths = _log_with_bad_values(root)
    recorded = tracklet.Api(root).run("p/r")
    with pytest.warns(tracklet.TrackletWarning, match="dropped a structured value of 'gen'"):
        history = recorded.history()
    assert history["loss"] == [0.0, 1.0, 2.0, 3.0]
    assert history["gen"] == [["first"], ["ok"], None, None]
    assert recorded.summary["gen"] == ["ok"]
    decoder = RecordDecoder()
    decoder.fold(read_log(paths.log_file).payloads, lambda record: None)
    assert decoder.partial_count == 1 and "'gen'" in decoder.invalid[0].reason
    assert "bytes" in decoder.invalid[0].reason and "and 1 more" in decoder.invalid[0].reason


def test_a_server_accepts_an_upload_holding_a_value_no_writer_writes_and_drops_that_value_alone(
        root, servers, tmp_path):
    # A value over the limits (a writer with another cap, an importer) used to make the server
    # refuse the whole frame: ``tracklet sync`` resent it forever and the run's later data never
    # arrived. Readers drop such a value alone, so the server accepts it and keeps the rest.
    from tracklet.client.sync import SyncClient

    paths = _log_with_bad_values(root)
    for bad in (["x" * (MAX_STRUCTURED_BYTES + 1)], _deep(MAX_NESTING + 1)):
        record = pb.Record()
        record.history.new_keys.add(id=0, name="gen")
        record.history.steps.append(0)
        record.history.times.append(1.0)
        record.history.columns.add(key=0).values.append(_value(bad))
        assert check_record(record, 0) == 1
    server = servers(tmp_path / "srv")
    with SyncClient(server.url) as client:
        client.sync_run(paths)
    with pytest.warns(tracklet.TrackletWarning, match="dropped a structured value of 'gen'"):
        copy = tracklet.Api(tmp_path / "srv").run("p/r").history()
    assert copy["loss"] == [0.0, 1.0, 2.0, 3.0] and copy["gen"] == [["first"], ["ok"], None, None]
    remote = tracklet.Api(base_url=server.url).run("p/r").history(keys=["loss"])
    assert remote["loss"] == [0.0, 1.0, 2.0, 3.0]


def test_a_log_written_before_structured_values_still_reads(start):
    # an old log holds only the value fields 3..8; a column of each next to a structured one reads
    run = start()
    for _ in range(2):
        run.log({"f": 0.5, "i": 2, "b": True, "s": "t", "h": tracklet.Histogram(np.arange(5.0)), "big": 2**70,
                 "l": ["x"]})
    run.finish()
    history = read(run).history()
    assert history["f"] == [0.5, 0.5] and history["i"] == [2, 2] and history["b"] == [True, True]
    assert history["s"] == ["t", "t"] and history["big"] == [2**70, 2**70] and history["l"] == [["x"], ["x"]]
    paths = RunPaths(Path(run.dir).parents[3], "test", run.id)
    fields = {field for record in _records(paths) if record.HasField("history")
              for column in record.history.columns for field in ("floats", "values") if len(getattr(column, field))}
    assert fields == {"floats", "values"}


# ---------------------------------------------------------------- W&B's API and online mode


def test_a_wandb_script_reads_its_values_back_through_wandb_api(root):
    import tracklet.compat.wandb as wandb

    quiet = wandb.Settings(console="off", x_disable_stats=True, disable_git=True, x_disable_meta=True)
    run = wandb.init(project="wb", dir=str(root), settings=quiet)
    for epoch in range(3):
        wandb.log({"epoch/loss": 1.0 / (epoch + 1), "generated": ["a cat", "a dog"], "top_k": [[1, 2], [3, 4]],
                   "epoch_time": datetime.timedelta(seconds=epoch)})
    run_id = run.id
    wandb.finish()
    api_run = wandb.Api().run(f"wb/{run_id}")
    rows = api_run.history(pandas=False)
    assert [row["generated"] for row in rows] == [["a cat", "a dog"]] * 3
    assert [row["top_k"] for row in rows] == [[[1, 2], [3, 4]]] * 3
    assert [row["epoch_time"] for row in rows] == ["PT0S", "PT1S", "PT2S"]
    assert [row["top_k"] for row in api_run.scan_history(keys=["top_k"])] == [[[1, 2], [3, 4]]] * 3
    frame_ = api_run.history(keys=["generated"])
    assert frame_["generated"].tolist() == [["a cat", "a dog"]] * 3
    assert api_run.summary["generated"] == ["a cat", "a dog"] and api_run.summary["epoch_time"] == "PT2S"


def test_tracklet_import_wandb_keeps_the_json_values_of_a_real_wandb_run(tmp_path):
    """``tests/data/wandb-structured``: an offline run written by wandb 0.31.0 (``make.py`` there), whose
    history holds W&B's JSON for each kind; every value imports as W&B recorded it."""
    from tracklet.importers import import_wandb

    source = Path(__file__).parent / "data" / "wandb-structured"
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracklet.TrackletWarning)
        (imported,) = import_wandb(source, root=tmp_path)
    run = tracklet.Api(tmp_path).run(imported.path)
    history = run.history()
    assert history["generated"] == [["a cat", "dog 0"], ["a cat", "dog 1"]]
    assert history["top_k"] == [[[1, 2], [3, 4]]] * 2 and history["pair"] == [[1, "x"]] * 2
    assert history["records"] == [[{"label": "cat", "p": 0.5}]] * 2 and history["holes"] == [[1, None, "x"]] * 2
    assert history["empty"] == [[], []] and history["names"] == [["a", "b"]] * 2
    assert all(value[0] == "x" and math.isnan(value[1]) for value in history["with_nan"])
    assert history["raw"] == ["café"] * 2 and history["z"] == ["1+2j"] * 2
    assert history["epoch_time"] == ["PT1M30S", "PT1M31S"] and history["when"] == ["2024-01-02T03:04:05"] * 2
    assert history["mixed"] == [0.5, ["a"]] and history["loss"] == [1.0, 0.5]
    assert run.summary["generated"] == ["a cat", "dog 1"] and run.summary["mixed"] == ["a"]


def test_an_online_run_round_trips_through_a_server(root, servers, tmp_path):
    server = servers(tmp_path / "srv")
    run = tracklet.init(project="p", dir=str(root), mode="online", settings={**QUIET, "base_url": server.url})
    _log_every_kind(run)
    run.finish()
    copy = tracklet.Api(tmp_path / "srv").run(run.path)  # the server's copy of the record log
    _check_recorded(copy.history(), copy.summary)
    remote = tracklet.Api(base_url=server.url).run(run.path)
    summary = remote.summary
    for key, (_, recorded) in KINDS.items():
        assert summary[key] == json.loads(json.dumps(recorded)), key
    assert summary["with_nan"] == ["x", None, [None]]  # NaN and inf: null in the store's JSON
    history = remote.history()  # numbers from the server's store, the rest from its copy of the log
    for key, (_, recorded) in KINDS.items():
        # an int is a number of the store's, kept exact (tests/test_history_ints.py)
        expected = json.loads(json.dumps(recorded))
        assert all(_same(value, expected) for value in history[key]) and len(history[key]) == 3, key
    assert history["with_nan"] == [["x", "NaN", ["Infinity"]]] * 3  # the JSON policy (core/jsonsafe.py)
    assert history["loss"] == [1.0, 0.5, 1.0 / 3]
    import tracklet.compat.wandb as wandb

    rows = wandb.Api(overrides={"base_url": server.url}).run(run.path).history(pandas=False)
    assert [row["top_k"] for row in rows] == [[[1, 2], [3, 4]]] * 3
    import httpx

    url = f"{server.url}/api/v1/runs/{run.path}/values"
    capped = httpx.get(url, params={"keys": "generated,loss,nowhere", "limit": 2}).json()["keys"]
    assert capped == {"generated": {"steps": [0, 1], "values": [["a cat", "a dog"]] * 2, "truncated": True,
                                    "histograms": []}}
    assert httpx.get(url, params={"keys": ","}).status_code == 400
    assert httpx.get(f"{server.url}/api/v1/runs/p/nosuchrun/values", params={"keys": "a"}).status_code == 404


def test_a_servers_history_of_a_key_with_more_values_than_it_answers_warns_and_keeps_every_step(root, servers,
                                                                                                   tmp_path):
    """The values route answers at most 10,000 values a key: the Api's history says which key it
    got the first values of only, and still has a row for every step (None past the cut)."""
    server = servers(tmp_path / "srv")
    run = tracklet.init(project="p", dir=str(root), mode="online", settings={**QUIET, "base_url": server.url})
    for step in range(10_005):
        run.log({"phase": f"p{step}"} if step % 2 else {"phase": f"p{step}", "loss": float(step)})
    run.finish()
    remote = tracklet.Api(base_url=server.url).run(run.path)
    with pytest.warns(tracklet.TrackletWarning, match=r"first values only of phase in the history of p/"):
        history = remote.history(["phase", "loss"])
    assert history["_step"] == list(range(10_005))  # steps holding only a string too
    assert history["phase"][:10_000] == [f"p{step}" for step in range(10_000)] and history["phase"][10_000:] == [None] * 5
    assert history["loss"][:4] == [0.0, None, 2.0, None]


def test_the_values_routes_kept_and_answered_values_are_bounded_by_count_and_bytes(monkeypatch):
    """What the values route keeps of a log and puts in an answer is bounded in bytes counting
    each entry's own cost, so empty strings are not free: a log of a million of them keeps a
    bounded number, marked truncated, and an answer holds what its budget allows."""
    import tracklet.server.routes_values as values

    monkeypatch.setattr(values, "KEPT_BYTES", 1000 * values.ENTRY_BYTES + 10)
    from tracklet.server.log_fold import RunFold

    texts = values._Texts()
    record = pb.Record()
    record.history.new_keys.add(id=0, name="empty")
    record.history.steps.extend(range(5000))
    record.history.columns.add(key=0).strings.extend([""] * 5000)
    texts.apply(record)
    kept = texts.kept["empty"]
    assert len(kept.steps) == 1000 and kept.truncated and kept.steps == list(range(1000))
    monkeypatch.setattr(values, "MAX_BYTES", 10 * values.ENTRY_BYTES)
    answer = values._answer(RunFold.single(texts), {"empty", "absent"}, limit=100)
    assert list(answer.keys) == ["empty"]
    assert answer.keys["empty"].steps == list(range(10)) and answer.keys["empty"].truncated
    again = pb.Record()  # a row at a step already kept replaces its value, at no extra cost
    again.history.steps.append(999)
    again.history.columns.add(key=0).strings.append("last")
    texts.apply(again)
    assert kept.values[-1] == "last" and len(kept.steps) == 1000


def test_the_values_route_keeps_histograms_and_huge_ints_and_a_number_logged_after_one_at_its_step_wins():
    """The values route folds what the store keeps no exact series of: histograms (named by
    position) and ints outside int64 (exact) beside strings; a number logged later at the same
    step replaces the kept value (every reader's rule: the last value wins), so the store's
    number is the one read; a big-int entry that is no int (a damaged log) is left out."""
    import tracklet.server.routes_values as values

    from tracklet.server.log_fold import RunFold

    texts = values._Texts()
    record = pb.Record()
    for key, name in enumerate(("h", "big", "phase")):
        record.history.new_keys.add(id=key, name=name)
    record.history.steps.extend([0, 1, 2, 2])
    histograms = record.history.columns.add(key=0, rows=[0, 2])
    for counts in ([1, 2], [3, 4]):
        histograms.histograms.add(edges=[0.0, 0.5, 1.0], counts=counts)
    record.history.columns.add(key=0, rows=[3]).floats.append(0.25)  # after the histogram at step 2
    record.history.columns.add(key=1, rows=[0, 1, 2]).big_ints.extend([str(2**70), "x1", str(-2**63 - 1)])
    record.history.columns.add(key=2, rows=[1]).strings.append("train")
    record.history.columns.add(key=2, rows=[2]).ints.append(7)  # a number at another step: nothing to replace
    texts.apply(record)
    answer = values._answer(RunFold.single(texts), {"h", "big", "phase"}, limit=100).model_dump()["keys"]
    assert answer["h"] == {"steps": [0], "values": [{"edges": [0.0, 0.5, 1.0], "counts": [1, 2], "nan_count": 0,
                                                     "inf_count": 0}], "truncated": False, "histograms": [0]}
    assert answer["big"] == {"steps": [0, 2], "values": [2**70, -2**63 - 1], "truncated": False, "histograms": []}
    assert answer["phase"] == {"steps": [1], "values": ["train"], "truncated": False, "histograms": []}
    later = pb.Record()  # a later record's number at the last kept step replaces it too
    later.history.steps.append(2)
    later.history.columns.add(key=1).ints.append(5)
    texts.apply(later)
    assert values._answer(RunFold.single(texts), {"big"}, limit=100).keys["big"].steps == [0]


def test_histograms_kept_by_the_values_route_have_a_budget_of_their_own(monkeypatch):
    """Many histograms (``wandb.watch`` logs one per parameter) fill their own budget, never the
    strings': past it a histogram key is truncated and the run's strings are still all kept."""
    import tracklet.server.routes_values as values

    monkeypatch.setattr(values, "HISTOGRAM_KEPT_BYTES", 10 * (values._histogram_size(pb.Histogram(
        edges=[0.0, 1.0], counts=[1])) + values.ENTRY_BYTES))
    from tracklet.server.log_fold import RunFold

    texts = values._Texts()
    record = pb.Record()
    record.history.new_keys.add(id=0, name="grad")
    record.history.new_keys.add(id=1, name="phase")
    record.history.steps.extend(range(50))
    column = record.history.columns.add(key=0)
    for step in range(50):
        column.histograms.add(edges=[0.0, 1.0], counts=[step])
    record.history.columns.add(key=1).strings.extend([f"p{step}" for step in range(50)])
    texts.apply(record)
    answer = values._answer(RunFold.single(texts), {"grad", "phase"}, limit=100).keys
    assert answer["grad"].steps == list(range(10)) and answer["grad"].truncated
    assert [value["counts"] for value in answer["grad"].values] == [[step] for step in range(10)]
    assert answer["phase"].values == [f"p{step}" for step in range(50)] and not answer["phase"].truncated


def test_a_summary_value_the_caller_changes_changes_neither_the_run_nor_its_other_items(start):
    """W&B's ``[[], [], ...]`` is recorded with one shared empty list; what ``run.summary`` hands out
    is the caller's own copy at every level."""
    run = start()
    run.log({"spans": [[], [], []], "meta": [{"a": [1]}, {"a": [1]}]})
    spans = run.summary["spans"]
    spans[0].append("mine")
    assert spans == [["mine"], [], []]
    run.summary.as_dict()["meta"][0]["a"].append(2)
    assert run.summary["spans"] == [[], [], []]
    assert run.summary["meta"] == [{"a": [1]}, {"a": [1]}]
    run.finish()
    assert read(run).summary["spans"] == [[], [], []]
