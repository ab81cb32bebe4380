"""One JSON policy for NaN and ±inf (``tracklet.core.jsonsafe``): everything tracklet writes as JSON
is strict JSON, a non-finite float in it the string "NaN", "Infinity" or "-Infinity". Tested at
each output: the function, the server's responses (and the remote Api reading them back), export
(jsonl, csv histogram cells, parquet json columns) and the CLI's ``--json``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import serverproc

import tracklet
from tracklet.core.export import export_history
from tracklet.core.jsonsafe import dumps, float_from_json, json_floats, json_safe

REPO = Path(__file__).resolve().parents[1]
QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}
NAN, INF = float("nan"), float("inf")
TEXTS = {"NaN", "Infinity", "-Infinity"}


def strict(text: str):
    """Parse ``text`` as strict JSON: the bare tokens NaN/Infinity are a failure."""
    def refuse(token: str):
        raise AssertionError(f"non-strict JSON token {token} in {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def test_the_policy_function():
    value = {"a": NAN, "b": [INF, -INF, 1.5, np.float32("nan"), np.float64(-INF)], "c": (np.int64(3), True, None),
             "h": tracklet.Histogram(np_histogram=([1, 2], [-INF, 0.0, INF])), 4: "NaN"}
    expected = {"a": "NaN", "b": ["Infinity", "-Infinity", 1.5, "NaN", "-Infinity"], "c": [3, True, None],
                "h": {"edges": ["-Infinity", 0.0, "Infinity"], "counts": [1, 2], "nan_count": 0, "inf_count": 0},
                "4": "NaN"}
    assert json_safe(value) == expected
    assert strict(dumps(value)) == expected and strict(dumps(value, indent=2)) == expected
    assert json_floats(np.array([1.0, NAN, INF, -INF])) == [1.0, "NaN", "Infinity", "-Infinity"]
    assert json_floats(np.array([1, 2], dtype=np.int64)) == [1, 2]
    back = [float_from_json(v) for v in ["NaN", "Infinity", "-Infinity", None, 2]]
    assert math.isnan(back[0]) and back[1:3] == [INF, -INF] and math.isnan(back[3]) and back[4] == 2.0


def _record(root: Path) -> tracklet.Run:
    run = tracklet.init(project="p", id="r", dir=str(root), settings=QUIET, config={"lr": 0.1})
    for step, loss in enumerate([1.0, NAN, INF, -INF, 0.5]):
        run.log({"loss": loss, "mixed": "text" if step == 0 else loss,
                 "h": tracklet.Histogram(np_histogram=([1], [-INF, 0.0]))})
    run.summary["best"] = INF
    run.finish()
    return run


def test_export_writes_the_strings(root):
    _record(root)
    recorded = tracklet.Api(root).run("p/r")

    out = io.StringIO()
    export_history(recorded, "jsonl", out)
    rows = [strict(line) for line in out.getvalue().splitlines()]
    assert [row["loss"] for row in rows] == [1.0, "NaN", "Infinity", "-Infinity", 0.5]
    assert rows[0]["h"]["edges"] == ["-Infinity", 0.0]

    out = io.StringIO()
    export_history(recorded, "csv", out)
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert strict(table[0]["h"])["edges"] == ["-Infinity", 0.0]  # a histogram cell is strict JSON too

    pq = pytest.importorskip("pyarrow.parquet")
    path = root / "out.parquet"
    export_history(recorded, "parquet", path)
    mixed = pq.read_table(path).column("mixed").to_pylist()  # str and float: a json-encoded column
    assert [strict(cell) for cell in mixed] == ["text", "NaN", "Infinity", "-Infinity", 0.5]


def test_cli_json_is_strict(root):
    _record(root)
    for args in (["show", "p/r", "--json"], ["runs", "p", "--json"]):
        result = serverproc.cli(*args, env={"TRACKLET_DIR": str(root)})
        assert result.returncode == 0, result.stderr
        data = strict(result.stdout)
        summary = (data[0] if isinstance(data, list) else data)["summary"]
        assert summary["best"] == "Infinity" and summary["loss"] == 0.5


def test_server_json_is_strict_and_the_remote_api_reads_the_values_back(root, servers):
    _record(root)
    server = servers()
    synced = serverproc.cli("sync", "--url", server.url, "-q", "p/r", env={"TRACKLET_DIR": str(root)})
    assert synced.returncode == 0, synced.stderr

    with httpx.Client(base_url=server.url, timeout=60) as http:
        def get(url: str, **params):
            response = http.get(url, params=params)
            assert response.status_code == 200, response.text
            return strict(response.text)

        exact = get("/api/v1/runs/p/r/history", keys="loss", buckets=0)["series"][0]
        assert exact["values"] == [1.0, "NaN", "Infinity", "-Infinity", 0.5]
        bucketed = get("/api/v1/runs/p/r/history", keys="loss", buckets=2)["series"][0]
        assert all(v in TEXTS or isinstance(v, (int, float)) or v is None for v in bucketed["last"])
        compare = get("/api/v1/projects/p/history", runs="r", keys="loss", buckets=0)["series"][0]
        assert compare["values"] == [1.0, "NaN", "Infinity", "-Infinity", 0.5]
        get("/api/v1/runs/p/r")
        get("/api/v1/projects/p/runs")
        get("/api/v1/runs/p/r/system", buckets=10)

    api = tracklet.Api(base_url=server.url)
    loss = api.run("p/r").history(["loss"])["loss"]
    assert loss[0] == 1.0 and math.isnan(loss[1]) and loss[2:] == [INF, -INF, 0.5]  # as the local Api reads it
    (series,) = api.history("p/r", "loss", buckets=None)
    assert math.isnan(series.values[1]) and series.values[2] == INF and series.values[3] == -INF
