"""Run filters and sorts: the parser on its own, then real queries on SQLite and a throwaway PostgreSQL."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from tracklet.store import schema
from tracklet.store.engine import register_sqlite_functions
from tracklet.store.filters import (
    Ago,
    And,
    Compare,
    Contains,
    Exists,
    Field,
    FilterSyntaxError,
    In,
    Not,
    Or,
    compile_filter,
    compile_sort,
    parse_filter,
    parse_sort,
)

runs = schema.runs


# ------------------------------------------------------------------------------------------------
# Parser


def F(name, *path):
    return Field(name, tuple(path))


def test_comparisons_and_values():
    assert parse_filter("config.lr < 1e-3") == Compare(F("config", "lr"), "<", 0.001)
    assert parse_filter("exit_code == -2") == Compare(F("exit_code"), "=", -2)
    assert parse_filter("last_step >= +7") == Compare(F("last_step"), ">=", 7)
    assert parse_filter("summary.acc > .5") == Compare(F("summary", "acc"), ">", 0.5)
    assert parse_filter("summary.acc != 2.") == Compare(F("summary", "acc"), "!=", 2.0)
    assert parse_filter("config.x = 12E+2") == Compare(F("config", "x"), "=", 1200.0)
    assert isinstance(parse_filter("config.x = 12").value, int)
    assert isinstance(parse_filter("config.x = 12.0").value, float)
    assert parse_filter("config.flag = TRUE") == Compare(F("config", "flag"), "=", True)
    assert parse_filter("config.flag != false").value is False
    assert parse_filter("config.x = null") == Compare(F("config", "x"), "=", None)
    assert parse_filter("state = finished") == Compare(F("state"), "=", "finished")
    assert parse_filter("name ~ 'res'") == Compare(F("name"), "~", "res")
    # A number on a text field is the text as written.
    assert parse_filter("run_id = 0012") == Compare(F("run_id"), "=", "0012")
    assert parse_filter("name in [1e3, x]") == In(F("name"), ("1e3", "x"))
    # A bare date on a JSON field is a string.
    assert parse_filter("config.day = 2026-11-01") == Compare(F("config", "day"), "=", "2026-11-01")


def test_string_escapes_and_quotes():
    assert parse_filter(r'name = "a\"b\\c\n\t\u00e9\/"').value == 'a"b\\c\n\té/'
    assert parse_filter(r"name = 'it\'s \"x\"'").value == "it's \"x\""
    assert parse_filter("name = 'say \"hi\"'").value == 'say "hi"'
    assert parse_filter('name = ""').value == ""
    assert parse_filter('name = "and or not ( ) [ ]"').value == "and or not ( ) [ ]"
    # a character past U+FFFF as JSON writes it (json.dumps, W&B's filters): one character, not two surrogates
    assert parse_filter(r'name = "\ud83d\ude80 go"').value == "\U0001f680 go"


def test_json_paths_and_quoting():
    expected = Compare(F("summary", "val/loss"), "<", 1)
    assert parse_filter("summary.val/loss < 1") == expected
    assert parse_filter('summary."val/loss" < 1') == expected
    assert parse_filter("summary.'val/loss' < 1") == expected
    assert parse_filter("summary.`val/loss` < 1") == expected
    assert parse_filter("summary.train-acc exists") == Exists(F("summary", "train-acc"))
    assert parse_filter('config."a.b".c = 1').field == F("config", "a.b", "c")
    assert parse_filter("config.`batch size` = 1").field == F("config", "batch size")
    assert parse_filter('config."we\\"ird" = 1').field == F("config", 'we"ird')
    assert parse_filter("config.model.layers.0 = 1").field == F("config", "model", "layers", "0")
    # Aliases resolve to the canonical field.
    assert parse_filter("group_name = x").field == F("group")
    assert parse_filter("created_at > 0").field == F("created")


def test_times():
    day = datetime(2026, 11, 1).timestamp()  # naive dates are local time
    assert parse_filter("created > 2026-11-01") == Compare(F("created"), ">", day)
    assert parse_filter("created > '2026-11-01'").value == day
    assert parse_filter("updated < 2026-11-01T12:30").value == datetime(2026, 11, 1, 12, 30).timestamp()
    with_fraction = datetime(2026, 11, 1, 12, 30, 15, 500000).timestamp()
    assert parse_filter('updated < "2026-11-01 12:30:15.5"').value == with_fraction
    utc = datetime(2026, 11, 1, 12, tzinfo=timezone.utc).timestamp()
    assert parse_filter("created = 2026-11-01T12:00Z").value == utc
    assert parse_filter('created = "2026-11-01T14:00:00+02:00"').value == utc
    assert parse_filter("created = 2026-11-01T07:00-0500").value == utc
    assert parse_filter("created > 1793491200").value == 1793491200.0
    assert parse_filter("created > -7d") == Compare(F("created"), ">", Ago(7 * 86400))
    assert parse_filter("created > -1.5h").value == Ago(5400)
    assert parse_filter("updated > -30s").value == Ago(30)
    assert parse_filter("updated > -2w").value == Ago(14 * 86400)
    assert parse_filter("updated > -15m").value == Ago(900)
    assert parse_filter("created in [null, 2026-11-01]") == In(F("created"), (None, day))


def test_precedence_not_and_or():
    a, b, c = (Compare(F("config", k), "=", 1) for k in "abc")
    assert parse_filter("config.a = 1 or config.b = 1 and config.c = 1") == Or((a, And((b, c))))
    assert parse_filter("config.a = 1 and config.b = 1 or config.c = 1") == Or((And((a, b)), c))
    assert parse_filter("(config.a = 1 or config.b = 1) and config.c = 1") == And((Or((a, b)), c))
    assert parse_filter("not config.a = 1 and config.b = 1") == And((Not(a), b))
    assert parse_filter("not (config.a = 1 and config.b = 1)") == Not(And((a, b)))
    assert parse_filter("not not config.a = 1") == Not(Not(a))
    assert parse_filter("config.a = 1 or config.b = 1 or config.c = 1") == Or((a, b, c))
    assert parse_filter("config.a = 1 AND config.b = 1 Or NOT config.c = 1") == Or((And((a, b)), Not(c)))
    assert parse_filter("((config.a = 1))") == a
    assert parse_filter("(" * 64 + "config.a = 1" + ")" * 64) == a
    assert parse_filter("not " * 32 + "(" * 32 + "config.a = 1" + ")" * 32 + " and config.b = 1").operands[1] == b


def test_in_exists_contains_and_negated_forms():
    assert parse_filter("state in [finished, 'failed', ]") == In(F("state"), ("finished", "failed"))
    assert parse_filter("state in []") == In(F("state"), ())
    assert parse_filter("config.x in [1, 'a', true, null]") == In(F("config", "x"), (1, "a", True, None))
    assert parse_filter("state not in [running]") == Not(In(F("state"), ("running",)))
    assert parse_filter("group exists") == Exists(F("group"))
    assert parse_filter("config.x not exists") == Not(Exists(F("config", "x")))
    assert parse_filter('tags contains "v1"') == Contains(F("tags"), "v1")
    assert parse_filter("tags contains v1") == Contains(F("tags"), "v1")
    assert parse_filter("tags not contains 'x y'") == Not(Contains(F("tags"), "x y"))
    assert parse_filter("tags exists") == Exists(F("tags"))


def test_empty_filter_matches_everything():
    assert parse_filter("") == And(())
    assert parse_filter("  \n ") == And(())


@pytest.mark.parametrize("text", [
    'state = finished and (config.lr < 0.001 or summary."val/loss" <= 2.5e-3)',
    "not (tags contains \"a b\" or config.`x y`.z in [1, 'q', true, null])",
    "created > -7d and updated <= 1793491200.5 and group not exists",
    'config.s = "quote\\" and \\\\ back" or name ~ "%_"',
    "not not (config.a = 1 or config.b = 2) and (config.c = 3 or config.d = 4)",
])
def test_str_round_trips(text):
    expr = parse_filter(text)
    assert parse_filter(str(expr)) == expr


def _error(text, parse=parse_filter) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    first, caret = str(err).splitlines()[:2]
    # The caret sits under the offending character of the echoed text.
    where = f" at column {err.pos + 1}: "
    assert caret.index("^") == first.index(where) + len(where) + err.pos
    return err


@pytest.mark.parametrize("text, problem, column", [
    ("config.lr >> 0.1", "unexpected token '>'", 12),
    ("config.lr > ", "unexpected end of filter", 13),
    ("state = finished and", "unexpected end of filter", 21),
    ("state = finished state = x", "unexpected token 'state'", 18),
    ("(state = x", "unexpected end of filter", 11),
    ("state = x)", "unexpected token ')'", 10),
    ("()", "unexpected token ')'", 2),
    ('name = "abc', "unterminated string", 8),
    (r'name = "a\qb"', "invalid escape '\\\\q'", 10),
    ("foo = 1", "unknown field 'foo'", 1),
    ("config = 1", "config needs a key", 1),
    ("state.x = 1", "state has no keys", 6),
    ("config. = 1", "expected a key after '.'", 8),
    ("name = 12ab", "invalid number '12ab'", 8),
    ("created > 7d", "invalid number '7d'", 11),
    ("created > 2026-13-01", "invalid date '2026-13-01'", 11),
    ("created > 'yesterday'", "invalid date 'yesterday'", 11),
    ("created > 2026-11-01T12:00:5", "invalid date '2026-11-01T12:00:5'", 11),
    ("(" * 65 + "state = x" + ")" * 65, "filter nested too deeply", 65),
    ("not " * 70 + "state = x", "filter nested too deeply", 257),
    ("created > soon", "created is a time", 11),
    ("exit_code = '1'", "exit_code is a number", 13),
    ("name = true", "name is text", 8),
    ('name = "\\ud83d"', "invalid escape '\\\\ud83d': a lone surrogate is no character", 9),
    ('name =~ "a{2,1}"', "invalid pattern: bad repetition '{2,1}': the second count is below the first", 9),
    ("config.x = [1, [2]]", "unexpected token '['", 16),
    ("config.x > null", "null only compares with = and !=", 12),
    ("exit_code ~ 1", "'~' (substring) needs a text field", 11),
    ("config.x ~ 1", "'~' (substring) needs a string", 12),
    ("config.x > -3d", "relative times work with created and updated only", 12),
    ("tags = 'x'", "unexpected token '='", 6),
    ("name contains 'x'", "'contains' works on tags only", 6),
    ("state in finished", "unexpected token 'finished'", 10),
    ("state in [a b]", "unexpected token 'b'", 13),
    ("state not = x", "unexpected token '='", 11),
    ("state = x && name = y", "unexpected character '&'", 11),
    ("state ! x", "unexpected character '!'", 7),
    ("config.a = summary.b", "unexpected token 'summary.b'", 12),
    ("state = and", "unexpected token 'and'", 9),
    ("and = 1", "unexpected token 'and'", 1),
])
def test_syntax_errors_name_the_problem_and_column(text, problem, column):
    err = _error(text)
    assert str(err).startswith(f"{problem} at column {column}: {text}"), str(err)
    assert err.column == column


def test_error_message_format():
    err = _error("config.lr >> 0.1")
    lines = str(err).splitlines()
    assert lines[0] == "unexpected token '>' at column 12: config.lr >> 0.1"
    assert lines[1] == " " * (len(lines[0]) - len("> 0.1")) + "^"
    assert "expected a value" in lines[2]
    assert "fields: name, state" in str(_error("foo = 1"))
    assert 'quote text that contains \'-\'' in str(_error("group = sweep-a"))
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.pos == err.pos


def test_parse_sort():
    assert parse_sort("-summary.val/loss,created") == [(F("summary", "val/loss"), True), (F("created"), False)]
    assert parse_sort(' +name , -config."a b".c ,exit_code ') == [
        (F("name"), False), (F("config", "a b", "c"), True), (F("exit_code"), False)]
    assert parse_sort("") == []
    assert str(parse_sort("-summary.`val loss`")[0][0]) == 'summary."val loss"'
    assert _error("-created,,name", parse_sort).pos == 9
    assert _error("created desc", parse_sort).problem == "unexpected token 'desc'"
    assert _error("-tags", parse_sort).problem == "cannot sort by tags"
    assert _error("-bogus", parse_sort).problem == "unknown field 'bogus'"
    assert _error("created,", parse_sort).problem == "unexpected end of filter"


# ------------------------------------------------------------------------------------------------
# Real queries on SQLite and PostgreSQL

def _t(month: int, day: int, hour: int = 12, minute: int = 0) -> float:
    return datetime(2026, month, day, hour, minute).timestamp()  # local, as the filter reads naive dates


NOW = _t(11, 20)


def _run(run_id, name, state, *, tags=(), group="", job="", host="", notes="", created=None, updated=None,
         exit_code=None, step=None, config=None, summary=None, user=None):
    return {"run_id": run_id, "name": name, "state": state, "tags": list(tags), "group_name": group,
            "metadata": {"username": user} if user else {}, "job_type": job, "host": host, "notes": notes, "created_at": created, "updated_at": updated,
            "exit_code": exit_code, "last_step": step, "config": config or {}, "summary": summary or {},
            "log_path": f"/logs/{run_id}"}


RUNS = [
    _run("r01", "baseline", "finished", tags=["baseline", "v1"], group="sweep-a", job="train", host="gpu1",
         notes="first try", created=_t(11, 1, 9), updated=_t(11, 1, 10), exit_code=0, step=1000,
         config={"lr": 0.1, "optimizer": "adam", "model": {"layers": 4, "act": "relu"}, "seed": 1, "flag": True},
         summary={"val/loss": 0.5, "acc": 0.8}, user="alice"),
    _run("r02", "resnet-small", "finished", tags=["v1"], group="sweep-a", job="train", host="gpu1",
         created=_t(11, 2), updated=_t(11, 2, 13), exit_code=0, step=2000,
         config={"lr": 0.01, "optimizer": "sgd", "model": {"layers": 2}, "seed": 2, "flag": False},
         summary={"val/loss": 0.4, "acc": 0.85}, user="bob"),
    _run("r03", "ResNet-Large", "failed", tags=["v2", "broken"], group="sweep-a", job="train", host="gpu2",
         notes="OOM at step 10", created=_t(11, 3), updated=_t(11, 3, 12, 30), exit_code=1, step=10,
         config={"lr": 0.001, "optimizer": "AdamW", "model": {"layers": 8}, "seed": 3},
         summary={"val/loss": "nan"}, user="alice"),
    _run("r04", "sweep-4", "finished", group="sweep-b", job="eval", host="gpu2", created=_t(11, 5),
         updated=_t(11, 5, 14), exit_code=0, step=500, config={"lr": "0.1", "optimizer": "adam", "seed": 4},
         summary={"val/loss": 0.3, "acc": 0.9}),
    _run("r05", "sweep-5", "running", tags=["v2"], group="sweep-b", job="train", host="cpu1", created=_t(11, 14),
         config={"lr": 1e-4, "optimizer": "sgd", "model": "resnet", "seed": 5}),
    _run("r06", "sweep-6", "crashed", tags=["v2"], group="sweep-b", job="train", host="cpu1", created=_t(11, 15),
         updated=_t(11, 15, 18), step=300, config={"lr": None, "seed": 6}, summary={"val/loss": 0.45}),
    _run("r07", "dot-keys", "finished", tags=["misc"], created=_t(11, 16), exit_code=0, step=100,
         config={"a.b": 1, "batch size": 32, "seed": 7}, summary={"eval.acc": 0.7}),
    _run("r08", "no-config", "finished", created=_t(11, 17), exit_code=0, step=0),
    _run("r09", "interrupted", "failed", tags=["v1"], group="sweep-a", job="train", host="gpu1", notes="ctrl-c",
         created=_t(11, 18), updated=_t(11, 18, 12, 5), exit_code=130, step=750,
         config={"lr": 0.05, "optimizer": "adam", "model": {"layers": 4}, "seed": 9, "flag": "true"},
         summary={"val/loss": 0.35, "acc": 0.88}),
    _run("r10", "old", "finished", tags=["legacy"], job="train", host="gpu3", created=_t(10, 1),
         updated=_t(10, 1, 13), exit_code=0, step=10000, config={"lr": 0.2, "seed": 10}, summary={"val/loss": 1.2}),
    _run("r11", "no-times", "running", config={"seed": 11}),
    _run("r12", "unicode-é", "finished", tags=["café"], notes="naïve", created=_t(11, 19), exit_code=0, step=5,
         config={"opt": "a'b\"c"}, summary={"val/loss": 0.6}),
    _run("r13", "pct_100%", "finished", created=_t(11, 19, 13), exit_code=0),
    _run("r14", "big-step", "finished", created=_t(11, 6), exit_code=0, step=123456789012,
         config={"lr": 0.1, "optimizer": "adam"}, summary={"val/loss": 0.3}),
    _run("r15", "neg", "failed", created=_t(11, 7), exit_code=-9, config={"lr": -1, "momentum": 0.9, "scale": 1e10},
         summary={"val/loss": -0.1}),
    _run("r16", "bool-true", "finished", created=_t(11, 8), exit_code=0, config={"flag": True}),
    _run("r17", "nested-deep", "finished", created=_t(11, 9), exit_code=0,
         config={"model": {"layers": 6, "act": "gelu", "opt": {"beta": 0.99}}, "model.layers": 99},
         summary={"val/loss": 0.2}),
    _run("r18", "int-vs-float", "finished", created=_t(11, 10), exit_code=0, config={"epochs": 10, "lr": 0.1},
         summary={"acc": 1}),
    _run("r19", "crashed-tagged", "crashed", tags=["v1", "v2"], host="gpu1", created=_t(11, 11),
         updated=_t(11, 12), config={"optimizer": "adam"}, summary={"val/loss": None}),
    _run("r20", "weird-key", "finished", created=_t(11, 12), exit_code=0,
         config={"we,ird{k}ey": 5, 'quote"key': 6, "sp ace": "x"}),
]
ALL = {r["run_id"] for r in RUNS}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request, tmp_path_factory):
    """The schema with one project and RUNS, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url") + "/postgres"
    eng = sa.create_engine(url)
    if request.param == "sqlite":  # tracklet_regexp, as every store engine registers it (store/engine.py)
        sa.event.listen(eng, "connect", lambda connection, record: register_sqlite_functions(connection))
    schema.metadata.drop_all(eng)
    schema.metadata.create_all(eng)
    with eng.begin() as conn:
        project_id = conn.execute(sa.insert(schema.projects).values(name="p").returning(schema.projects.c.id)).scalar()
        conn.execute(sa.insert(runs), [{**r, "project_id": project_id} for r in RUNS])
    yield eng
    schema.metadata.drop_all(eng)
    eng.dispose()


def ids(engine, filter_text="", sort=None) -> list[str]:
    """Run ids matching a filter, in the sort's order (run_id breaks ties)."""
    query = sa.select(runs.c.run_id).where(compile_filter(parse_filter(filter_text), runs, now=NOW))
    order = compile_sort(parse_sort(sort), runs) if sort else []
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(*order, runs.c.run_id)).scalars())


def S(*numbers: int) -> list[str]:
    return sorted(f"r{n:02d}" for n in numbers)


def EXCEPT(*numbers: int) -> list[str]:
    return sorted(ALL - set(S(*numbers)))


CASES = [
    # text columns
    ("", sorted(ALL)),
    ("state = finished", S(1, 2, 4, 7, 8, 10, 12, 13, 14, 16, 17, 18, 20)),
    ("state != 'finished'", S(3, 5, 6, 9, 11, 15, 19)),
    ("state in [failed, crashed]", S(3, 6, 9, 15, 19)),
    ("state not in ['finished', running]", S(3, 6, 9, 15, 19)),
    ('name ~ "RESNET"', S(2, 3)),
    ('name ~ "100%"', S(13)),
    ('name ~ "_"', S(13)),
    ('name = "ResNet-Large"', S(3)),
    ('name = "resnet-large"', []),
    ('name = "unicode-é"', S(12)),
    ("name > 'sweep' and name < 'sweep-5'", S(4)),
    ('group = "sweep-a"', S(1, 2, 3, 9)),
    ("group exists", S(1, 2, 3, 4, 5, 6, 9)),
    ("group = null", EXCEPT(1, 2, 3, 4, 5, 6, 9)),
    ("host ~ gpu and job_type = train", S(1, 2, 3, 9, 10)),
    ("notes ~ 'STEP'", S(3)),
    ("notes exists", S(1, 3, 9, 12)),
    ('run_id in [r01, "r05", r20]', S(1, 5, 20)),
    # tags
    ('tags contains "v1"', S(1, 2, 9, 19)),
    ('tags contains "café"', S(12)),
    ("tags contains v", []),
    ('tags not contains "v2"', EXCEPT(3, 5, 6, 19)),
    ('tags contains v1 and tags contains v2', S(19)),
    ("tags exists", S(1, 2, 3, 5, 6, 7, 9, 10, 12, 19)),
    ("not tags exists", EXCEPT(1, 2, 3, 5, 6, 7, 9, 10, 12, 19)),
    # numeric columns (nullable)
    ("exit_code = 0", S(1, 2, 4, 7, 8, 10, 12, 13, 14, 16, 17, 18, 20)),
    ("exit_code != 0", S(3, 5, 6, 9, 11, 15, 19)),
    ("exit_code > 0", S(3, 9)),
    ("exit_code < 0", S(15)),
    ("exit_code not exists", S(5, 6, 11, 19)),
    ("exit_code in [1, 130, null]", S(3, 5, 6, 9, 11, 19)),
    ("exit_code = 0.5", []),
    ("last_step >= 1e3", S(1, 2, 10, 14)),
    ("last_step > 1000.5", S(2, 10, 14)),
    ("last_step > 100000000000", S(14)),
    ("last_step = 0", S(8)),
    ("last_step in [10, 10.5, 750]", S(3, 9)),
    # times
    ("created >= 2026-11-15", S(6, 7, 8, 9, 12, 13)),
    ("created < 2026-11-02", S(1, 10)),
    ('created > "2026-11-19T12:30"', S(13)),
    ('created > "2026-11-19 12:00"', S(13)),
    ("created >= 2026-11-19T12:00", S(12, 13)),
    ("created > -7d", S(5, 6, 7, 8, 9, 12, 13)),
    ("created > -36h", S(12, 13)),
    ("created > -1.5d", S(12, 13)),
    ("updated exists", S(1, 2, 3, 4, 6, 9, 10, 19)),
    ("updated < -1w", S(1, 2, 3, 4, 10, 19)),
    ("created = null", S(11)),
    (f"created < {_t(10, 15)}", S(10)),
    (f"created = {datetime.fromtimestamp(_t(11, 16), timezone.utc).isoformat()!r}", S(7)),
    ("created >= 2026-11-05 and created < 2026-11-07", S(4, 14)),
    # JSON numbers vs strings vs booleans
    ("config.lr = 0.1", S(1, 14, 18)),
    ('config.lr = "0.1"', S(4)),
    ("config.lr < 0.05", S(2, 3, 5, 15)),
    ("config.lr <= 0.05", S(2, 3, 5, 9, 15)),
    ("config.lr > 0.05", S(1, 10, 14, 18)),
    ("config.lr >= 1e-3 and config.lr <= 1e-2", S(2, 3)),
    ("config.lr exists", S(1, 2, 3, 4, 5, 9, 10, 14, 15, 18)),
    ("config.lr = null", EXCEPT(1, 2, 3, 4, 5, 9, 10, 14, 15, 18)),
    ("config.lr != 0.1", EXCEPT(1, 14, 18)),
    ("config.lr exists and config.lr != 0.1", S(2, 3, 4, 5, 9, 10, 15)),
    ('config.lr in [0.01, "0.1", 1e-4]', S(2, 4, 5)),
    ("config.lr = -1", S(15)),
    ("config.optimizer = adam", S(1, 4, 9, 14, 19)),
    ("config.optimizer ~ ADAM", S(1, 3, 4, 9, 14, 19)),
    ('config.optimizer in ["sgd", "AdamW"]', S(2, 3, 5)),
    ("config.optimizer > 'b'", S(2, 5)),
    ("config.model.layers >= 4", S(1, 3, 9, 17)),
    ("config.model.layers = 4.0", S(1, 9)),
    ('config.model = "resnet"', S(5)),
    ("config.model exists", S(1, 2, 3, 5, 9, 17)),
    ("config.model.opt.beta > 0.9", S(17)),
    ("config.model.act in [relu, gelu]", S(1, 17)),
    ("config.model.act.deeper exists", []),
    ("config.flag = true", S(1, 16)),
    ("config.flag = false", S(2)),
    ('config.flag = "true"', S(9)),
    ("config.flag = 1", []),
    ("config.flag != true", EXCEPT(1, 16)),
    ("config.flag in [true, false]", S(1, 2, 16)),
    ("config.flag > false", S(1, 16)),  # false < true, booleans only (r09's "true" is a string)
    ("config.flag <= false", S(2)),
    # =~: RE2 syntax, anywhere in the text unless anchored, case-sensitive unless (?i); the same on both backends
    ('name =~ "^sweep-[0-9]$"', S(4, 5, 6)),
    ('name =~ "(?i)^resnet-"', S(2, 3)),
    ('name =~ "^resnet-"', S(2)),
    ('name =~ "-\\\\d+$"', S(4, 5, 6)),
    ('name =~ "é$"', S(12)),
    ('group =~ "^sweep-(a|b)$"', S(1, 2, 3, 4, 5, 6, 9)),
    ('config.optimizer =~ "^[Aa]dam"', S(1, 3, 4, 9, 14, 19)),
    ('config.model.act =~ "lu$"', S(1, 17)),
    ('config.lr =~ "0"', S(4)),  # strings only: r04's "0.1"
    ('tags =~ "^v[12]$"', S(1, 2, 3, 5, 6, 9, 19)),
    ('tags =~ "(?i)CAF"', S(12)),
    ('not tags =~ "^v"', EXCEPT(1, 2, 3, 5, 6, 9, 19)),
    ('summary."val/loss" =~ "^nan$"', S(3)),
    ("config.seed > 5 and config.seed < 10", S(6, 7, 9)),
    ('config."a.b" = 1', S(7)),
    ("config.'batch size' = 32", S(7)),
    ("config.`batch size` >= 32", S(7)),
    ("config.epochs = 10 and config.epochs = 10.0 and config.epochs = 1e1", S(18)),
    ("config.scale > 1e9", S(15)),
    ("config.momentum = 0.9", S(15)),
    (r'config.opt = "a\'b\"c"', S(12)),
    ("config.opt = 'a\\'b\"c'", S(12)),
    ('config."we,ird{k}ey" = 5', S(20)),
    ('config."sp ace" = x', S(20)),
    ("summary.val/loss < 0.4", S(4, 9, 14, 15, 17)),
    ('summary."val/loss" = "nan"', S(3)),
    ("summary.val/loss ~ NA", S(3)),
    ("summary.val/loss exists", S(1, 2, 3, 4, 6, 9, 10, 12, 14, 15, 17)),
    ("summary.val/loss = null", S(5, 7, 8, 11, 13, 16, 18, 19, 20)),
    ('summary."eval.acc" > 0.5', S(7)),
    # a bare dotted path finds the nested value, else the one key it spells (as the dashboard's columns show it)
    ("summary.eval.acc > 0.5", S(7)),
    ("summary.eval.acc exists", S(7)),
    ("config.a.b = 1", S(7)),
    ("config.a.b in [1, 2]", S(7)),
    ("config.a.b != 1", EXCEPT(7)),
    ("config.model.layers = 99", []),
    ('config."model.layers" = 99', S(17)),
    ("summary.acc >= 0.85", S(2, 4, 9, 18)),
    ("summary.acc = 1", S(18)),
    # boolean structure
    ("state = failed or state = crashed and not exit_code exists", S(3, 6, 9, 15, 19)),
    ("(state = failed or state = crashed) and not exit_code exists", S(6, 19)),
    ("not state = finished and not config.lr exists", S(6, 11, 19)),
    ("not (state = finished or tags exists)", S(11, 15)),
    ('name = "x\'; DROP TABLE runs; --"', []),
    # who ran it: in a data root, the OS user name the run recorded (metadata.username)
    ("user = alice", S(1, 3)),
    ("user in [alice, bob]", S(1, 2, 3)),
    ("user exists", S(1, 2, 3)),
    ("user ~ LIC", S(1, 3)),
    ("user = alice and host = gpu1", S(1)),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] or "(empty)" for c in CASES])
def test_filter_returns_expected_runs(engine, text, expected):
    assert sorted(ids(engine, text)) == expected
    # Two-valued logic: "not X" is exactly the runs X leaves out, whatever is missing or mistyped.
    if text:
        assert sorted(ids(engine, f"not ({text})")) == sorted(ALL - set(expected))


def test_compile_accepts_text_and_reuses_statements(engine):
    with engine.connect() as conn:
        for bound, expected in [(0.05, S(1, 10, 14, 18)), (0.15, S(10)), (0.05, S(1, 10, 14, 18))]:
            q = sa.select(runs.c.run_id).where(compile_filter(f"config.lr > {bound}", runs, now=NOW))
            assert sorted(conn.execute(q).scalars()) == expected
        q = sa.select(sa.func.count()).select_from(runs).where(compile_filter("config.optimizer = sgd", runs))
        assert conn.execute(q).scalar() == 2
        q = sa.select(runs.c.run_id).order_by(*compile_sort("-last_step", runs)).limit(2)
        assert list(conn.execute(q).scalars()) == ["r14", "r10"]


def test_same_shape_different_keys_and_tags_are_not_confused(engine):
    # Statements that differ only in JSON keys or tags must not share a cached compiled form.
    for _ in range(2):
        assert ids(engine, "tags contains v1") == S(1, 2, 9, 19)
        assert ids(engine, "tags contains legacy") == S(10)
        assert ids(engine, "config.seed = 1") == S(1)
        assert ids(engine, "config.epochs = 10") == S(18)
        assert ids(engine, "", "-config.seed")[:2] == ["r11", "r10"]
        assert ids(engine, "", "-config.epochs")[:2] == ["r18", "r20"]


def test_relative_times_use_now_at_compile_time(engine):
    expr = parse_filter("created > -1d")
    with engine.connect() as conn:
        def matching(now):
            return sorted(conn.execute(sa.select(runs.c.run_id).where(compile_filter(expr, runs, now=now))).scalars())
        assert matching(NOW) == S(13)  # r12 is exactly one day old: not after
        assert matching(_t(11, 19, 12, 30)) == S(12, 13)
        assert matching(_t(11, 19, 11)) == S(9, 12, 13)


def test_quote_in_key(engine):
    """A key with a '"' is addressed as written on both databases (SQLite's JSON paths can't)."""
    assert ids(engine, 'config."quote\\"key" = 6') == ["r20"]
    with engine.connect() as conn:
        order = conn.execute(sa.select(runs.c.run_id).order_by(*compile_sort('-config."quote\\"key"', runs))).scalars()
        assert list(order)[0] == "r20"


# Ties (equal values, and the runs without one, which come last both ways) are broken by run id in the
# direction of the sort's last key: a descending sort lists them by descending id (store/filters.compile_sort).
SORTS = [
    ("-summary.val/loss", [10, 12, 1, 6, 2, 9, 14, 4, 17, 15, 3, 20, 19, 18, 16, 13, 11, 8, 7, 5]),
    ("summary.val/loss", [15, 17, 4, 14, 9, 2, 6, 1, 12, 10, 3, 5, 7, 8, 11, 13, 16, 18, 19, 20]),
    ("-summary.val/loss,created", [10, 12, 1, 6, 2, 9, 4, 14, 17, 15, 3, 16, 18, 19, 20, 5, 7, 8, 13, 11]),
    ("-created", [13, 12, 9, 8, 7, 6, 5, 20, 19, 18, 17, 16, 15, 14, 4, 3, 2, 1, 10, 11]),
    ("+created", [10, 1, 2, 3, 4, 14, 15, 16, 17, 18, 19, 20, 5, 6, 7, 8, 9, 12, 13, 11]),
    ("exit_code,-name", [15, 20, 12, 4, 2, 13, 10, 8, 17, 18, 7, 16, 14, 1, 3, 9, 6, 5, 11, 19]),
    ("config.optimizer", [3, 1, 4, 9, 14, 19, 2, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18, 20]),
    ("-config.lr", [10, 18, 14, 1, 9, 2, 3, 5, 15, 4, 20, 19, 17, 16, 13, 12, 11, 8, 7, 6]),
    ("-last_step", [14, 10, 2, 1, 9, 4, 6, 7, 3, 12, 8, 20, 19, 18, 17, 16, 15, 13, 11, 5]),
    ("-summary.eval.acc", [7, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 6, 5, 4, 3, 2, 1]),
]


@pytest.mark.parametrize("sort, expected", SORTS, ids=[s[0] for s in SORTS])
def test_sort_returns_expected_order(engine, sort, expected):
    assert ids(engine, "", sort) == [f"r{n:02d}" for n in expected]


def test_filter_and_sort_together(engine):
    assert ids(engine, "state = finished and summary.val/loss exists", "summary.val/loss") == [
        "r17", "r04", "r14", "r02", "r01", "r12", "r10"]


# ------------------------------------------------------------------------------------------------
# A filtered listing's time limit (Store.filter_timeout)


def test_a_filtered_listing_past_its_time_limit_fails_naming_the_filter(store_url, tmp_path, monkeypatch):
    """A listing with a filter whose statement runs past ``Store.filter_timeout`` stops with
    ``QueryTimeout`` (a ValueError: a server's 400) naming the project, filter and sort, rather than
    hold a worker: PostgreSQL's ``statement_timeout`` for the listing's transaction (here: a
    statement kept waiting by a lock), SQLite's progress handler (here: a limit spent at its first
    check). Listings without a filter have no limit; the store's connections are fine afterwards."""
    from tracklet.errors import QueryTimeout
    from tracklet.store import Store
    from tracklet.store.store import FILTER_TIMEOUT, FILTER_TIMEOUT_ENV

    store = Store(store_url, root=tmp_path)
    try:
        assert store.filter_timeout == FILTER_TIMEOUT
        with store.engine.begin() as connection:
            project_id = connection.execute(schema.projects.insert().values(name="p").returning(schema.projects.c.id)).scalar_one()
            connection.execute(runs.insert(), [
                {"project_id": project_id, "run_id": f"r{i:04d}", "name": f"run {i}", "state": "finished", "tags": [],
                 "config": {"model": {"name": f"net-{i}"}}, "summary": {}, "keys": [], "log_path": f"p/{i}.log",
                 "metadata": {}} for i in range(1000)])
        text = 'config.model.name =~ "^net-.*7$"'
        expected = [row["run_id"] for row in store.runs("p", filter=text, order_by="name")]
        assert len(expected) == 100
        blocker = None
        if store.engine.dialect.name == "sqlite":
            store.filter_timeout = 1e-9
        else:
            store.filter_timeout = 0.2
            blocker = store.engine.connect()
            blocker.exec_driver_sql("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        try:
            with pytest.raises(QueryTimeout) as caught:
                store.runs("p", filter=text, order_by="name")
            assert isinstance(caught.value, ValueError)
            assert f"filter {text!r} sorted by 'name'" in str(caught.value) and "'p'" in str(caught.value)
            assert FILTER_TIMEOUT_ENV in str(caught.value)
        finally:
            if blocker is not None:
                blocker.rollback()
                blocker.close()
        assert len(store.runs("p", limit=5)) == 5  # no filter: no limit
        store.filter_timeout = None
        assert [row["run_id"] for row in store.runs("p", filter=text, order_by="name")] == expected
    finally:
        store.close()
    for value, seconds in (("0", None), ("2.5", 2.5), ("", FILTER_TIMEOUT)):
        monkeypatch.setenv(FILTER_TIMEOUT_ENV, value)
        with Store(store_url, root=tmp_path) as again:
            assert again.filter_timeout == seconds
    monkeypatch.setenv(FILTER_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=FILTER_TIMEOUT_ENV):
        Store(store_url, root=tmp_path)


def test_a_server_answers_a_listing_past_its_time_limit_with_a_400_naming_the_filter(tmp_path):
    """The runs route answers ``QueryTimeout`` with a 400 whose detail names the filter (SQLite;
    the store test above covers PostgreSQL's limit), and the next request is served."""
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app
    from tracklet.server.auth import Accounts

    app = create_app(tmp_path / "server", index_on_start=False, sweep_interval=3600)
    store = app.state.tracklet.store
    key = Accounts(store).create_user("admin", admin=True).key
    project_id, _ = store.add_project("p")
    with store.engine.begin() as connection:
        connection.execute(runs.insert(), [
            {"project_id": project_id, "run_id": f"r{i:04d}", "name": f"run {i}", "state": "finished", "tags": [],
             "config": {"name": f"net-{i}"}, "summary": {}, "keys": [], "log_path": f"p/{i}.log", "metadata": {}}
            for i in range(1000)])
    text = 'config.name =~ "7$"'
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        store.filter_timeout = 1e-9
        refused = client.get("/api/v1/projects/p/runs", params={"filter": text})
        assert refused.status_code == 400, refused.text
        assert f"filter {text!r}" in refused.json()["detail"]
        store.filter_timeout = 5.0
        listed = client.get("/api/v1/projects/p/runs", params={"filter": text})
        assert listed.status_code == 200 and len(listed.json()["runs"]) == 100
