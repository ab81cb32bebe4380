"""History export (tracklet.core.export): exact round trips through CSV, JSON Lines and Parquet."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys

import numpy as np
import pytest

import tracklet
from tracklet.core.export import FORMATS, MissingDependency, export_history
from tracklet.core.reader import History
from tracklet.core.values import INT64_MAX, INT64_MIN, Histogram, histogram_of

NAN, INF = float("nan"), float("inf")
WEIGHTS = np.linspace(-1.0, 1.0, 257) ** 3
GIVEN = Histogram(np_histogram=([3, 0, 7], [0.0, 0.25, 0.5, 1.0]))
ODD_TEXT = 'comma, "quote"\nnewline and ünïcødé ✓'

# What the test run logs, one dict per step. Keys are missing from some rows on purpose; "mix"
# holds an int, a str and a float; "num" an int then a float (logged in rows with different key
# sets, which the recorder keeps as separate typed columns).
LOGGED = [
    {"f": 1.5, "i": INT64_MAX, "s": "héllo", "ünï/κey": 0.1, "b": True, "mix": 1, "g": -0.0},
    {"f": NAN, "i": INT64_MIN, "h": WEIGHTS, "mix": "two", "g": 1e308},
    {"f": INF, "s": ODD_TEXT, "ünï/κey": 0.30000000000000004, "g": 2.0},
    {"f": -INF, "i": 0, "b": False, "mix": 2.5, "h": GIVEN, "g": 5e-324},
    {"f": 0.1, "i": -1, "num": 3, "g": 1 / 3},
    {"f": 2.0, "num": 2.5, "s": "nan"},
]
KEYS = ["f", "i", "s", "ünï/κey", "b", "mix", "g", "h", "num"]


def expected_value(value):
    """What a logged value is recorded as: numpy arrays become histograms."""
    if isinstance(value, np.ndarray):
        return histogram_of(value)
    return value


def same(a, b) -> bool:
    """Exact equality: same type, NaN equals NaN, and -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    run = tracklet.init(
        dir=str(root), project="exports", config={"lr": 0.1},
        settings={"console": "off", "capture_environment": False},
    )
    for row in LOGGED:
        run.log(row)
    run.finish()
    return tracklet.Api(root).run(run.path)


def expected_cell(step: int, key: str):
    value = LOGGED[step].get(key)
    return None if value is None else expected_value(value)


def test_history_is_what_was_logged(recorded):
    history = recorded.history()
    assert list(history) == ["_step", "_timestamp", "_runtime", *KEYS]
    assert history["_step"] == list(range(len(LOGGED)))
    for key in KEYS:
        for step, value in enumerate(history[key]):
            assert same(value, expected_cell(step, key)), (key, step, value)


# ---------------------------------------------------------------- CSV


def decode_csv(cell: str, like):
    if isinstance(like, Histogram):
        return json.loads(cell)
    kind = type(like)
    if kind is bool:
        return {"true": True, "false": False}[cell]
    if kind is int:
        return int(cell)
    if kind is float:
        assert not re.fullmatch(r"-?\d+", cell), f"float written like an int: {cell!r}"
        return float(cell)
    return cell


def test_csv_round_trip(recorded, tmp_path):
    target = tmp_path / "history.csv"
    assert export_history(recorded, "csv", target) == len(LOGGED)
    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    assert header == ["_step", "_timestamp", "_runtime", *KEYS]
    assert len(body) == len(LOGGED)
    history = recorded.history()
    for step, cells in enumerate(body):
        record = dict(zip(header, cells))
        assert int(record["_step"]) == step
        assert float(record["_timestamp"]) == history["_timestamp"][step]
        assert float(record["_runtime"]) == history["_runtime"][step]
        for key in KEYS:
            expected = expected_cell(step, key)
            if expected is None:
                assert record[key] == "", (key, step)
                continue
            decoded = decode_csv(record[key], expected)
            if isinstance(expected, Histogram):
                assert decoded == expected.to_dict()
            else:
                assert same(decoded, expected), (key, step, record[key])
    # The documented spellings.
    assert [r[header.index("f")] for r in body][:4] == ["1.5", "nan", "inf", "-inf"]
    assert body[0][header.index("b")] == "true" and body[3][header.index("b")] == "false"
    assert body[0][header.index("i")] == "9223372036854775807"
    assert body[1][header.index("i")] == "-9223372036854775808"
    assert body[0][header.index("g")] == "-0.0"


def test_csv_to_text_and_binary_streams(recorded):
    text = io.StringIO()
    export_history(recorded, "csv", text)
    binary = io.BytesIO()
    export_history(recorded, "csv", binary)
    assert binary.getvalue().decode("utf-8") == text.getvalue()
    assert "\r" not in text.getvalue()  # "\n" line endings
    assert not binary.closed  # the caller's stream stays open


# ---------------------------------------------------------------- JSON Lines


def _refuse_constant(token: str):
    raise AssertionError(f"non-standard JSON constant {token} in the output")


def json_expected(value):
    if isinstance(value, Histogram):
        return value.to_dict()
    if type(value) is float and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def test_jsonl_round_trip(recorded, tmp_path):
    target = tmp_path / "history.jsonl"
    export_history(recorded, "jsonl", target)
    lines = target.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # every row ends with a newline
    rows = [json.loads(line, parse_constant=_refuse_constant) for line in lines[:-1]]
    assert len(rows) == len(LOGGED)
    history = recorded.history()
    for step, row in enumerate(rows):
        assert row["_step"] == step
        assert row["_timestamp"] == history["_timestamp"][step]
        assert row["_runtime"] == history["_runtime"][step]
        logged_keys = [k for k in KEYS if k in LOGGED[step]]
        assert list(row) == ["_step", "_timestamp", "_runtime", *logged_keys]  # missing keys are absent
        for key in logged_keys:
            expected = json_expected(expected_cell(step, key))
            assert same(row[key], expected), (key, step, row[key])
    assert [row["f"] for row in rows[:4]] == [1.5, "NaN", "Infinity", "-Infinity"]
    assert float(rows[1]["f"]) != float(rows[1]["f"])  # float() reads the strings back
    assert rows[0]["i"] == INT64_MAX and rows[1]["i"] == INT64_MIN
    assert rows[1]["h"] == histogram_of(WEIGHTS).to_dict()
    assert rows[3]["h"] == {"edges": [0.0, 0.25, 0.5, 1.0], "counts": [3, 0, 7], "nan_count": 0, "inf_count": 0}
    assert rows[0]["ünï/κey"] == 0.1 and rows[2]["s"] == ODD_TEXT


def test_jsonl_to_binary_stream_is_utf8(recorded):
    out = io.BytesIO()
    export_history(recorded, "jsonl", out)
    assert "ünï/κey".encode() in out.getvalue()


# ---------------------------------------------------------------- Parquet


def test_parquet_round_trip(recorded, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "history.parquet"
    export_history(recorded, "parquet", target)
    table = pq.read_table(target)
    schema = table.schema
    assert schema.names == ["_step", "_timestamp", "_runtime", *KEYS]
    types = {name: schema.field(name).type for name in schema.names}
    assert types["_step"] == pa.int64() and types["_timestamp"] == pa.float64()
    assert types["f"] == pa.float64() and types["g"] == pa.float64() and types["ünï/κey"] == pa.float64()
    assert types["i"] == pa.int64()
    assert types["b"] == pa.bool_()
    assert types["s"] == pa.string()
    assert types["num"] == pa.float64()  # ints and floats, all exact as doubles
    assert types["mix"] == pa.string()  # int, str and float: JSON text per cell
    assert schema.field("mix").metadata == {b"tracklet.encoding": b"json"}
    assert pa.types.is_struct(types["h"])
    assert schema.metadata[b"tracklet.run"] == recorded.path.encode()

    columns = table.to_pydict()
    history = recorded.history()
    assert columns["_step"] == history["_step"]
    assert columns["_timestamp"] == history["_timestamp"]
    assert columns["_runtime"] == history["_runtime"]
    for key in ("f", "g", "i", "b", "s", "ünï/κey"):
        for step, value in enumerate(columns[key]):
            assert same(value, expected_cell(step, key)), (key, step, value)
    assert columns["num"][4:] == [3.0, 2.5]
    assert [None if v is None else json.loads(v) for v in columns["mix"]] == [1, "two", None, 2.5, None, None]
    assert type(json.loads(columns["mix"][0])) is int
    assert columns["h"][1] == histogram_of(WEIGHTS).to_dict()
    assert columns["h"][3] == GIVEN.to_dict()
    assert columns["h"][0] is None


def test_parquet_to_binary_stream(recorded):
    pq = pytest.importorskip("pyarrow.parquet")
    out = io.BytesIO()
    export_history(recorded, "parquet", out)
    out.seek(0)
    assert pq.read_table(out).num_rows == len(LOGGED)
    with pytest.raises(TypeError, match="binary"):
        export_history(recorded, "parquet", io.StringIO())


class FakeRun:
    """Just enough of RecordedRun for export_history."""

    path = "fake/run"

    def __init__(self, columns: dict):
        rows = len(next(iter(columns.values())))
        self._history = History(
            {"_step": list(range(rows)), "_timestamp": [1.0] * rows, "_runtime": [0.0] * rows, **columns}
        )

    def keys(self):
        return [k for k in self._history if not k.startswith("_")]

    def history(self, keys=None):
        if keys is None:
            return self._history
        return History({k: self._history[k] for k in ("_step", "_timestamp", "_runtime", *keys)})


def test_parquet_fallbacks_for_mixed_and_empty_columns():
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    run = FakeRun({
        "empty": [None, None, None],
        "bool_float": [True, 1.5, None],
        "huge_int_float": [INT64_MAX, 0.5, None],
        "hist_str": [GIVEN, "x", None],
        "int_nan": [1, NAN, -INF],
    })
    out = io.BytesIO()
    export_history(run, "parquet", out)
    out.seek(0)
    table = pq.read_table(out)
    assert table.schema.field("empty").type == pa.null()
    assert table.column("empty").to_pylist() == [None] * 3
    for key in ("bool_float", "huge_int_float", "hist_str"):
        assert table.schema.field(key).type == pa.string()
    decoded = {k: [None if v is None else json.loads(v) for v in table.column(k).to_pylist()]
               for k in ("bool_float", "huge_int_float", "hist_str")}
    assert decoded["bool_float"] == [True, 1.5, None]
    assert decoded["huge_int_float"] == [INT64_MAX, 0.5, None]  # not rounded through a double
    assert decoded["hist_str"] == [GIVEN.to_dict(), "x", None]
    ints = table.column("int_nan").to_pylist()
    assert table.schema.field("int_nan").type == pa.float64()
    assert ints[0] == 1.0 and math.isnan(ints[1]) and ints[2] == -INF


def test_missing_pyarrow_says_how_to_install(recorded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    target = tmp_path / "history.parquet"
    with pytest.raises(MissingDependency, match=re.escape("pip install 'tracklet[parquet]'")):
        export_history(recorded, "parquet", target)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- options and errors


def test_keys_select_and_order_columns(recorded):
    out = io.StringIO()
    export_history(recorded, "csv", out, keys=["num", "_step", "f", "num"])
    header = out.getvalue().split("\n", 1)[0]
    assert header == "_step,_timestamp,_runtime,num,f"
    out = io.StringIO()
    export_history(recorded, "jsonl", out, keys=["b"])
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [sorted(r) for r in rows][0] == ["_runtime", "_step", "_timestamp", "b"]
    assert [r.get("b") for r in rows] == [True, None, None, False, None, None]


def test_unknown_key_is_refused(recorded):
    with pytest.raises(KeyError, match="nope"):
        export_history(recorded, "csv", io.StringIO(), keys=["f", "nope"])


def test_unknown_format_names_the_allowed_ones(recorded, tmp_path):
    with pytest.raises(ValueError, match="csv, jsonl, parquet"):
        export_history(recorded, "xlsx", tmp_path / "x.xlsx")
    assert list(tmp_path.iterdir()) == []
    assert FORMATS == ("csv", "jsonl", "parquet")
    export_history(recorded, "CSV", io.StringIO())  # case does not matter


def test_failed_export_leaves_no_file(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot print")

    run = FakeRun({"x": [1.0, Unprintable(), 2.0]})
    target = tmp_path / "out.csv"
    target.write_text("previous")
    with pytest.raises(RuntimeError, match="cannot print"):
        export_history(run, "csv", target)
    assert target.read_text() == "previous"  # untouched, and no temporary left behind
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_missing_directory_names_it(recorded, tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        export_history(recorded, "csv", tmp_path / "absent" / "x.csv")
    assert caught.value.filename == str(tmp_path / "absent")


# ---------------------------------------------------------------- Parquet memory on sparse runs


def _log_run(root, name: str, rows: list[dict]) -> tracklet.RecordedRun:
    run = tracklet.init(dir=str(root), project="memory", id=name,
                        settings={"console": "off", "capture_environment": False, "system_metrics": False})
    for row in rows:
        run.log(row)
    run.finish()
    return tracklet.Api(root).run(run.path)


class _Read:
    """A recorded run whose history is already read (what the export itself costs is measured)."""

    def __init__(self, path: str, history) -> None:
        self.path = path
        self._history = history

    def history(self, keys=None):
        return self._history


def _parquet_cost(run) -> tuple[int, int]:
    """(bytes the run's history holds once read, peak bytes traced above that while writing it as
    Parquet): Python objects and numpy buffers, as ``tracemalloc`` sees them."""
    import tracemalloc

    pytest.importorskip("pyarrow")
    with open(os.devnull, "wb") as sink:
        export_history(run, "parquet", sink)  # imports and caches first: not what an export costs
        tracemalloc.start()
        try:
            history = run.history()
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            export_history(_Read(run.path, history), "parquet", sink)
            return held, tracemalloc.get_traced_memory()[1] - held
        finally:
            tracemalloc.stop()


def test_parquet_export_of_a_sparse_run_costs_what_its_values_do_not_keys_x_rows(tmp_path):
    """5,000 keys, each logged once (a key per step), beside 10 keys in 500 rows: the same 5,000
    values. Row groups built as keys x rows (3 of them for 5,000 columns, a dense buffer of
    ~1,700 rows for each key in each) made writing the sparse run peak at ~25 MB, ~18x what its
    whole history holds once read; writing either run now costs about what its history holds
    (a run of values costs a few Arrow arrays: ~2x here, for runs of one value each)."""
    keys = 5000
    dense = _log_run(tmp_path, "dense", [{f"m{k}": step + k / 8 for k in range(10)} for step in range(keys // 10)])
    sparse = _log_run(tmp_path, "sparse", [{f"key/{step}": step / 8} for step in range(keys)])
    for run in (dense, sparse):
        held, writing = _parquet_cost(run)
        assert writing < 3 * held, (run.path, writing, held)


def test_parquet_sparse_columns_of_every_type_read_back_in_place(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = 5000
    at = {0, 1, 2, 700, 701, 2500, 4999}
    columns = {
        "rare_float": [float(r) / 3 if r in at else None for r in range(rows)],
        "rare_int": [r * 10 if r in at else None for r in range(rows)],
        "rare_bool": [r % 2 == 0 if r in at else None for r in range(rows)],
        "rare_str": [f"s{r}" if r in at else None for r in range(rows)],
        "rare_hist": [GIVEN if r in at else None for r in range(rows)],
        "rare_mix": [(r if r % 2 else "x") if r in at else None for r in range(rows)],
        "half": [float(r) if r % 2 else None for r in range(rows)],  # many short runs
        "nan_tail": [NAN if r > 4000 else None for r in range(rows)],
        "never": [None] * rows,
    }
    out = io.BytesIO()
    export_history(FakeRun(columns), "parquet", out)
    out.seek(0)
    table = pq.read_table(out)
    assert table.schema.field("rare_int").type == pa.int64()
    assert table.schema.field("rare_hist").type.num_fields == 4
    read_back = table.to_pydict()
    for key, expected in columns.items():
        got = read_back[key]
        if key == "rare_hist":
            expected = [None if v is None else v.to_dict() for v in expected]
        elif key == "rare_mix":
            got = [None if v is None else json.loads(v) for v in got]
        assert len(got) == rows
        assert all(same(g, e) if e is not None else g is None for g, e in zip(got, expected)), key
