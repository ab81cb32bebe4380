"""The binary column form of a report's streamed panel data (`GET .../data?format=columns`,
tracklet/reports/columns.py): it answers what the JSON lines answer, with the values and each
bucket's last value as the logged float64s exactly, band extremes as float32 rounded outwards only
where that is faithful, integer x as int32, and x sent once per panel for runs that share it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import QUIET
from fastapi.testclient import TestClient

import tracklet
from tracklet.reports import columns
from tracklet.server.app import create_app
from tracklet.store.query import SeriesHistory

URL = "/api/v1/projects/p/reports"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    """A keyless app over runs a and b of project p: 30 steps of `loss` (b's step 7 NaN, step 9
    inf) and `acc`."""
    root = tmp_path_factory.mktemp("columns") / "srv"
    for index, run_id in enumerate("ab"):
        run = tracklet.init(project="p", id=run_id, dir=str(root), settings=QUIET)
        for step in range(30):
            loss = 1 / (step + 1) + index / 3
            if index == 1 and step in (7, 9):
                loss = math.nan if step == 7 else math.inf
            run.log({"loss": loss, "acc": step / 7})
        run.finish()
    app = create_app(root, auth=False, index_on_start=True)
    with TestClient(app) as client:
        yield client
    app.state.tracklet.store.close()


def _panel(keys: str, extra: str = "") -> str:
    return f"```tracklet-panel\nkeys: {keys}\n{extra}runs:\n  sort: run_id\n```\n"


def _json_lines(http, url: str, params: dict) -> list[dict]:
    answered = http.get(url, params=params)
    assert answered.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in answered.text.splitlines()]


def _column_lines(http, url: str, params: dict) -> tuple[list[dict], bytes]:
    answered = http.get(url, params={**params, "format": "columns"})
    assert answered.status_code == 200 and answered.headers["content-type"] == columns.MEDIA_TYPE
    return columns.decode(answered.content), answered.content


def _number(value) -> float:
    return float(value) if not isinstance(value, str) else {"NaN": math.nan, "Infinity": math.inf,
                                                            "-Infinity": -math.inf}[value]


def test_columns_answer_what_the_json_lines_do_with_exact_values(http):
    markdown = (_panel("[loss, acc]") + _panel("[loss]", "x: relative_time\n")
                + _panel("[loss]", "bogus: 1\n") + "```tracklet-panel\nkeys: [loss]\nruns:\n  filter: \"config.x > 1\"\n```\n")
    report = http.post(URL, json={"markdown": markdown}).json()
    url = f"{URL}/{report['id']}/data"
    for buckets in (0, 4):  # every point, then min/max/last buckets
        params = {"buckets": buckets}
        expected, (decoded, raw) = _json_lines(http, url, params), _column_lines(http, url, params)
        assert [line["index"] for line in decoded] == [0, 1, 2, 3]
        for want, got in zip(expected, decoded):
            assert got["stamp"] == want["stamp"]
            assert {k: v for k, v in got["data"].items() if k != "history"} == \
                   {k: v for k, v in want["data"].items() if k != "history"}
            assert len(got["data"]["history"]["series"]) == len(want["data"]["history"]["series"])
            for mine, theirs in zip(got["data"]["history"]["series"], want["data"]["history"]["series"]):
                assert mine.keys() == theirs.keys()
                for name in mine.keys() - {"min", "max"}:
                    assert mine[name] == theirs[name], (buckets, name)  # x, steps, values, last: exactly
                for name, outward in (("min", -1), ("max", 1)):
                    if name in mine:
                        for sent, logged in zip(map(_number, mine[name]), map(_number, theirs[name])):
                            assert (math.isnan(sent) and math.isnan(logged)) or (
                                (sent - logged) * outward >= 0 and sent == pytest.approx(logged, rel=1e-6))
        assert decoded[2]["data"]["error"].startswith("unknown key 'bogus'")
        assert decoded[3]["data"]["error"] == "the run set matches no runs in project 'p'"
        # Panel 0's four series (two runs, two keys, the same steps) send their x once, as int32.
        header, _ = next(columns.frames(raw))
        x_columns = {series["x"] for series in header["data"]["history"]["series"]}
        assert len(x_columns) == 1 and header["data"]["columns"][x_columns.pop()][0] == "i4"
        if buckets == 0:
            values = next(s for s in decoded[0]["data"]["history"]["series"] if s["run"] == "b" and s["key"] == "loss")
            assert values["values"][7:10] == ["NaN", 1 / 9 + 1 / 3, "Infinity"]
    # A stamp the caller has: a frame with no data, as the JSON line's null.
    stamps = [f"{line['index']}:{line['stamp']}" for line in expected if line["stamp"]]
    again, _ = _column_lines(http, url, {"buckets": 4, "known": stamps})
    assert [line["data"] for line in again[:2]] == [None, None] and again[2]["data"] is not None


def _bucketed(low, high, x=(0, 1)) -> SeriesHistory:
    steps = np.asarray(x, dtype=np.int64)
    return SeriesHistory("p/a", "k", False, steps.astype(np.float64), steps, min=np.asarray(low, dtype=np.float64),
                         max=np.asarray(high, dtype=np.float64), last=np.asarray(high, dtype=np.float64))


@pytest.mark.parametrize("low, high, dtype", [
    ([0.1, -2.5], [0.3, 7.25], "f4"),                          # ordinary values: float32, rounded outwards
    ([1e6, 1e6 + 1e-4], [1e6 + 2e-4, 1e6 + 3e-4], "f8"),       # a spread float32 can't resolve
    ([1.0, 2.0], [5e38, 3.0], "f8"),                           # past float32's range
    ([1e-50, 0.0], [2e-50, 0.0], "f8"),                        # non-zero values float32 makes zero
    ([math.nan, 1.0], [math.nan, 2.0], "f4"),                  # a bucket of no finite value stays NaN
])
def test_band_extremes_are_float32_only_where_that_is_faithful(low, high, dtype):
    table = columns._Columns()
    entry = columns.encode_series(_bucketed(low, high), True, table)
    body = table.body()
    got = {name: np.frombuffer(body, dtype=table.table[entry[name]][0], count=2, offset=table.table[entry[name]][1])
           for name in ("min", "max", "last")}
    assert table.table[entry["min"]][0] == table.table[entry["max"]][0] == dtype
    assert table.table[entry["last"]][0] == "f8"
    np.testing.assert_array_equal(got["last"], high)  # exactly the logged values
    for mine, truth, outward in ((got["min"], low, -1), (got["max"], high, 1)):
        for value, want in zip(mine.astype(np.float64).tolist(), truth):
            assert (math.isnan(value) and math.isnan(want)) or (value - want) * outward >= 0
            if dtype == "f8":
                assert value == want


def test_steps_past_int32_are_sent_as_float64():
    table = columns._Columns()
    entry = columns.encode_series(_bucketed([1.0, 2.0], [1.5, 2.5], x=(0, 2**40)), True, table)
    assert table.table[entry["x"]][0] == "f8"
    assert np.frombuffer(table.body(), dtype="<f8", count=2, offset=table.table[entry["x"]][1]).tolist() == [0, 2**40]
