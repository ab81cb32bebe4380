"""``wandb.Api().runs(path, filters=...)``: W&B's MongoDB-style filters, rewritten into tracklet's
filter language, select the same runs from a data root and from a tracking server; and every
operator given an operand of the wrong type (a string or a number where a list is needed, a list or
a dict where one value is, ...), an unknown operator, a filter nested too deep or too large is
refused the same way in both: a ``ValueError`` (also W&B's ``UsageError``) naming the operator and
the key, before anything is read. Before, ``{"sweep": {"$in": "abc"}}`` searched for the sweeps
``a``, ``b`` and ``c``, and ``{"tags": {"$nin": [...]}}`` was ignored. W&B's own types for these
operands (``wandb/_filters/operators.py``) are the reference: ``$in``/``$nin`` a list of values,
``$exists`` a bool, ``$regex``/``$contains`` a string, ``$and``/``$or``/``$nor`` a list of filters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.compat.wandb.apis.filters import MAX_DEPTH, MAX_VALUES

from conftest import QUIET
from serverproc import Server


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A data root with three runs of project ``f`` and a server reading it."""
    root = tmp_path_factory.mktemp("filters") / "data"
    for name, lr, tags, depth in (("a", 0.1, ["base"], 2), ("b", 0.01, ["base", "tuned"], 8), ("c", 0.001, [], 4)):
        run = tracklet.init(project="f", name=name, dir=str(root), settings=QUIET, tags=tags,
                            config={"lr": lr, "opt": "adam" if name != "c" else "sgd", "model": {"depth": depth}})
        run.log({"loss": lr * 10})
        run.finish()
    server = Server(root).start()
    try:
        yield root, server.url
    finally:
        server.stop()


@pytest.fixture(params=["local", "server"])
def api(request, world, monkeypatch) -> wandb.Api:
    root, url = world
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    return wandb.Api(overrides={"base_url": url}) if request.param == "server" else wandb.Api()


@pytest.mark.parametrize("filters, names", [
    ({"config.lr": {"$lt": 0.05}}, ["b", "c"]),
    ({"config.opt": {"$in": ["sgd", "rmsprop"]}}, ["c"]),
    ({"config.opt": {"$nin": ["sgd"]}}, ["a", "b"]),
    ({"config.lr": {"$not": {"$gt": 0.005}}}, ["c"]),  # W&B's field-level $not
    ({"display_name": {"$regex": "b"}}, ["b"]),
    ({"display_name": {"$contains": "c"}}, ["c"]),
    ({"tags": {"$nin": ["tuned"]}}, ["a", "c"]),  # was ignored: every run
    ({"tags": {"$all": ["base", "tuned"]}}, ["b"]),
    ({"tags": {"$exists": False}}, ["c"]),
    ({"$or": [{"config.opt": "sgd"}, {"display_name": "a"}]}, ["a", "c"]),
    ({"$nor": [{"config.opt": "sgd"}]}, ["a", "b"]),
    ({"$and": []}, ["a", "b", "c"]),  # W&B's types take an empty list: every run
    ({"$or": []}, []),  # and none
    ({"config.opt": {"$in": []}}, []),
    ({}, ["a", "b", "c"]),
    ({"config.lr.value": 0.1}, ["a"]),  # W&B's stored shape: {"lr": {"value": 0.1}}
    # A nested key as W&B's stored config names it ({"model": {"value": {"depth": 8}}}): until
    # session 29 this matched no run, silently.
    ({"config.model.value.depth": {"$gt": 2}}, ["b", "c"]),
    ({"config.model.depth": {"$gt": 2}}, ["b", "c"]),
])
def test_filters_select_the_same_runs_from_a_data_root_and_a_server(api, filters, names):
    assert sorted(run.name for run in api.runs("f", filters=filters)) == names


def test_runs_sort_on_a_nested_config_key_named_as_wandb_stores_it(api):
    assert [run.name for run in api.runs("f", order="-config.model.value.depth")] == ["b", "c", "a"]
    assert [run.name for run in api.runs("f", order="+config.model.value.depth")] == ["a", "c", "b"]
    assert [run.name for run in api.runs("f", order="+config.model.depth")] == ["a", "c", "b"]
    assert api.runs("f", filters={"config.model.value.depth": {"$gt": 2}}).length == 2  # W&B's paginator's count


_LIST_OPS = ("$in", "$nin")
_ONE_VALUE = ("$eq", "$ne")
_ORDER = ("$gt", "$gte", "$lt", "$lte")
_TEXT = ("$regex", "$contains")


def _bad() -> Iterator[Any]:
    """(filters, operator, key) for every operator and operand of a type it doesn't take."""
    for op in _LIST_OPS:
        for operand in ("abc", 5, 0.5, True, None, {"a": 1}):
            yield pytest.param({"config.opt": {op: operand}}, op, "config.opt", id=f"{op}-{type(operand).__name__}")
        for operand in ([[1]], [{"a": 1}]):
            yield pytest.param({"config.opt": {op: operand}}, op, "config.opt", id=f"{op}-nested")
        yield pytest.param({"config.opt": {op: list(range(MAX_VALUES + 1))}}, op, "config.opt", id=f"{op}-huge")
        for key in ("tags", "sweep"):  # tracklet's tag-backed keys
            yield pytest.param({key: {op: "abc"}}, op, key, id=f"{op}-{key}-str")
            yield pytest.param({key: {op: [5]}}, op, key, id=f"{op}-{key}-not-str")
    for op in _ONE_VALUE:
        for operand in ({"a": 1}, float("nan")):
            yield pytest.param({"config.lr": {op: operand}}, op, "config.lr", id=f"{op}-{type(operand).__name__}")
        yield pytest.param({"tags": {op: 5}}, op, "tags", id=f"{op}-tags-int")
        yield pytest.param({"sweep": {op: ["x"]}}, op, "sweep", id=f"{op}-sweep-list")
    for op in _ORDER:
        for operand in ([0.1], {"a": 1}, None, float("inf")):
            yield pytest.param({"config.lr": {op: operand}}, op, "config.lr", id=f"{op}-{type(operand).__name__}")
    for op in _TEXT:
        for operand in (5, ["a"], {"a": 1}, None):
            yield pytest.param({"display_name": {op: operand}}, op, "display_name", id=f"{op}-{type(operand).__name__}")
    for operand in ("yes", 1, None, [True]):
        yield pytest.param({"config.lr": {"$exists": operand}}, "$exists", "config.lr",
                           id=f"$exists-{type(operand).__name__}")
    for op in ("$and", "$or", "$nor"):
        for operand in ("x", 5, {"state": "finished"}, [5], ["state"]):
            yield pytest.param({op: operand}, op, op, id=f"{op}-{type(operand).__name__}")
        yield pytest.param({op: [{"state": "finished"}] * (MAX_VALUES + 1)}, op, op, id=f"{op}-huge")
    for operand in ("x", [{"state": "finished"}], 5, {}):
        yield pytest.param({"$not": operand}, "$not", "$not", id=f"$not-{type(operand).__name__}")
        yield pytest.param({"config.lr": {"$not": operand}}, "$not", "config.lr", id=f"$not-field-{type(operand).__name__}")
    yield pytest.param({"state": ["finished"]}, "$eq", "state", id="bare-list-not-json")
    yield pytest.param({"config.lr": [[0.1]]}, "$eq", "config.lr", id="bare-list-nested")
    yield pytest.param({"config.lr": {}}, "'config.lr'", "config.lr", id="empty-operators")
    yield pytest.param({"config.lr": {"$size": 1}}, "$size", "config.lr", id="unknown-operator")
    yield pytest.param({"tags": {"$gt": "a"}}, "$gt", "tags", id="tags-order")
    yield pytest.param({"sweep": {"$regex": "a"}}, "$regex", "sweep", id="sweep-regex")
    yield pytest.param({"$where": "true"}, "$where", "$where", id="top-level-operator")


@pytest.mark.parametrize("filters, operator, key", list(_bad()))
def test_an_operand_of_the_wrong_type_is_refused_naming_the_operator_and_the_key(api, filters, operator, key):
    with pytest.raises(ValueError, match=re.escape(operator)) as raised:
        api.runs("f", filters=filters)
    assert key in str(raised.value) and isinstance(raised.value, wandb.errors.UsageError)


def test_a_filter_nested_too_deep_or_too_large_is_refused_and_one_within_the_bounds_runs(api):
    nested: dict[str, Any] = {"config.opt": "sgd"}
    for _ in range(MAX_DEPTH - 1):
        nested = {"$and": [nested]}
    assert [run.name for run in api.runs("f", filters=nested)] == ["c"]  # as deep as it goes
    for _ in range(2):  # past the bound (and far past: no RecursionError)
        nested = {"$not": {"$not": nested}}
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} deep"):
        api.runs("f", filters=nested)
    huge = {"config.opt": {"$in": ["x" * 100] * MAX_VALUES}}  # 100 KB of values: more than a request takes
    with pytest.raises(ValueError, match="larger than 32768 bytes"):
        api.runs("f", filters=huge)
    many = {"config.opt": {"$in": [f"o{i}" for i in range(MAX_VALUES - 1)] + ["sgd"]}}
    assert [run.name for run in api.runs("f", filters=many)] == ["c"]
    with pytest.raises(ValueError, match="a filter is a dict"):
        api.runs("f", filters=[{"state": "finished"}])
