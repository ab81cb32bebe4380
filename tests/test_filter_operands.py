"""A filter operand of the wrong type, or an unknown sort key, is refused with an error naming the
problem: on the store API, the CLI (exit 2, one message) and the server (400, never 500), for
tracklet's filter language; and by ``wandb.Api().runs(filters=)``'s MongoDB-style operators, whose
operands are all checked before any translation (``compat/wandb/apis/filters.py``; each operator x
operand type: tests/test_wandb_api_filters.py) (``$in`` given a string was read as the list of its characters before session 26, a
number raised a TypeError)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import tracklet
from tracklet.cli.main import main
from tracklet.compat.wandb.apis.filters import MAX_REGEX_CHARS, to_filter
from tracklet.compat.wandb.errors import UsageError
from tracklet.store import Store
from tracklet.store.filters import MAX_SUBSTRING_CHARS, FilterSyntaxError

# tracklet's language: each operator with operands of the wrong type, and what the error names.
NATIVE = [
    ('state in "finished"', "expected '['"),
    ("state in 5", "expected '['"),
    ("state not in finished", "expected '['"),
    ("created > [1]", "unexpected token '['"),
    ("config.lr < [0.1]", "unexpected token '['"),
    ("exit_code = \"a\"", "exit_code is a number"),
    ("created >= true", "created is a time"),
    ("config.lr ~ 5", "'~' (substring) needs a string"),
    ("exit_code ~ \"1\"", "'~' (substring) needs a text field"),
    ("config.lr > null", "null only compares with = and !="),
    ('exit_code =~ "1"', "'=~' (regular expression) needs a text field"),
    ('name =~ "\\\\bx"', "invalid pattern: \\b (a word boundary) is not supported"),
    ('name =~ "(a"', "invalid pattern: missing ')'"),
    ("name =~ 5", "expected a quoted pattern"),
    ("tags contains [a]", "expected a tag"),
    ("tags = a", "tags take 'contains', 'exists' or '=~'"),
    ("state exists 5", "unexpected token '5'"),
    ('name ~ "' + "x" * (MAX_SUBSTRING_CHARS + 1) + '"', "'~' text of 1001 characters"),
]
SORTS = [("bogus", "unknown field 'bogus'"), ("tags", "cannot sort by tags"), ("config", "config needs a key"),
         ("name,", "expected a field to sort by"), ("-state x", "expected ',' between sort fields")]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("operands")
    run = tracklet.init(project="p", id="r1", dir=str(root), config={"lr": 0.1, "flag": True},
                        settings={"console": "off", "capture_environment": False})
    run.log({"loss": 1.0})
    run.finish()
    return root


def _cases() -> list[tuple[str, str, str]]:
    return [("filter", text, problem) for text, problem in NATIVE] + [("sort", text, problem) for text, problem in SORTS]


@pytest.mark.parametrize(("kind", "text", "problem"), _cases())
def test_bad_filter_operands_and_sort_keys_are_refused_naming_the_problem(data_root, kind, text, problem):
    store = Store(root=data_root)
    try:
        store.index()
        with pytest.raises(FilterSyntaxError, match=None) as raised:
            store.runs("p", **({"filter": text} if kind == "filter" else {"order_by": text}))
        assert problem in str(raised.value)
    finally:
        store.close()
    option = "--filter" if kind == "filter" else "--sort"
    result = CliRunner().invoke(main, ["--dir", str(data_root), "runs", "p", option, text], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert problem in result.stderr and "Traceback" not in result.stderr


def test_the_server_answers_400_for_each(data_root, store_url):
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    with TestClient(create_app(data_root, store_url=store_url, auth=False)) as client:
        for kind, text, problem in _cases():
            answer = client.get("/api/v1/projects/p/runs", params={"filter" if kind == "filter" else "order_by": text})
            assert answer.status_code == 400, (text, answer.text)
            assert problem in answer.json()["detail"], text


# W&B's filters: every operator x operand type is tests/test_wandb_api_filters.py; here, the shapes and $regex.
@pytest.mark.parametrize(("filters", "problem"), [
    ({"state": {"$in": ["a", [1]]}}, "each value in $in is a string, a number, a bool or None"),
    ({"sweep": {"$in": "abc"}}, "$in takes a list of values"),
    ({"$or": {"state": "a"}}, "$or takes a list of filter dicts"),
    ({"$and": ["state"]}, "each item of $and is a filter dict"),
    ({"$not": ["state"]}, "$not takes a filter dict"),
    ({"state": ["a"]}, "only config and summary values are lists"),
    ({"display_name": {"$regex": r"(a)\1"}}, "backreferences"),
    ({"display_name": {"$regex": "(?=a)"}}, "'(?=' (lookaround)"),
    ({"display_name": {"$regex": r"\bres"}}, "\\b (a word boundary) is not supported"),
    ({"display_name": {"$regex": r"\pL"}}, "\\p (a Unicode character class)"),
    ({"display_name": {"$regex": "(?s)a.b"}}, "only (?i) and (?i:...)"),
    ({"display_name": {"$regex": "a{300}"}}, "above 255"),
    ({"display_name": {"$regex": "(a{100}){100}"}}, "nested in each other count more than 1000 in all"),
    ({"display_name": {"$regex": "[a-z]{255}" * 4}}, "too large once its repetitions are counted out"),
    ({"display_name": {"$regex": "(a"}}, "missing ')'"),
    ({"createdAt": {"$regex": "2026"}}, "$regex matches text"),
    ({"config.opt": {"$eq": {"name": "adam"}}}, "a dict is an operator dict"),
    ({"duration": {"$gt": 60}}, "filtering or sorting runs on 'duration' is not supported"),
    ({"display_name": {"$regex": "res", "$options": "i"}}, "start the $regex pattern with (?i)"),
    ({"display_name": {"$regex": "a" * (MAX_REGEX_CHARS + 1)}}, f"at most {MAX_REGEX_CHARS}"),
    ({"tags": {"$gt": "a"}}, "'$gt' on 'tags' is not supported"),
    ("state = a", "a filter is a dict"),
])
def test_wandb_filters_of_the_wrong_shape_are_refused_naming_it(filters: Any, problem: str):
    with pytest.raises(UsageError) as raised:
        to_filter(filters)
    assert problem in str(raised.value)


def test_wandb_filters_translate_to_tracklets_language():
    from tracklet.store.regex import MAX_PATTERN_CHARS

    assert MAX_REGEX_CHARS == MAX_PATTERN_CHARS
    assert to_filter({"display_name": {"$regex": "^res"}}) == 'name =~ "^res"'
    assert to_filter({"display_name": {"$regex": r"res\.net\(2\)"}}) == 'name =~ "res\\\\.net\\\\(2\\\\)"'
    assert to_filter({"display_name": {"$contains": "res"}}) == 'name ~ "res"'
    assert to_filter({"config.layers": [64, 64]}) == "config.layers = [64, 64]"
    assert to_filter({"config.flag": {"$gt": False}}) == "config.flag > false"
    assert to_filter({"createdAt": {"$gte": "2026-11-01T12:00"}}) == 'created >= "2026-11-01T12:00Z"'  # UTC, as W&B
    assert to_filter({"createdAt": {"$gte": "2026-11-01T12:00+02:00"}}) == 'created >= "2026-11-01T12:00+02:00"'
    assert to_filter({"tags": {"$nin": ["a", "b"]}}) == 'not (tags contains "a" or tags contains "b")'
    assert to_filter({"$or": []}) == 'run_id = ""'
    assert to_filter({"tags": {"$exists": False}}) == "not tags exists"


@pytest.mark.parametrize(("name", "path"), [("config.a`b", ("a`b",)), ('summary_metrics.x"y', ('x"y',)),
                                            ("config.`", ("`",)), ("config.a b.c", ("a b", "c"))])
def test_wandb_keys_of_any_characters_filter_and_sort_on_that_key(name: str, path: tuple[str, ...]):
    # A key with a backtick lost it ("config.a`b" filtered on the key "ab": a silent wrong answer).
    from tracklet.compat.wandb.apis.filters import to_order
    from tracklet.store.filters import parse_filter, parse_sort

    parsed = parse_filter(to_filter({name: 1}))
    assert parsed.field.path == path
    assert parse_sort(to_order("-" + name))[0][0].path == path


@pytest.mark.parametrize("filters", [{"config.x": 10**400}, {"config.x": {"$gt": -(10**400)}},
                                     {"config.x": {"$in": [1, 10**5000]}}])
def test_wandb_numbers_past_a_double_are_refused_naming_operator_and_key(filters: Any):
    # They reached tracklet's parser ("number out of range ... at column 12"), or json's digit limit.
    with pytest.raises(UsageError, match=r"on 'config.x': a number to filter on is finite"):
        to_filter(filters)
