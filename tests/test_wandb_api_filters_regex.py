"""W&B run filters as real scripts write them, selecting what W&B selects, from a data root (SQLite)
and from servers on SQLite and on PostgreSQL: ``$regex`` is a regular expression in RE2 syntax (W&B's
engine: anywhere in the text unless anchored, case-sensitive unless ``(?i)``; it was a
case-insensitive substring match that refused ``^``, ``.*`` and ``\\d``), bools order with
``$gt``/``$lt`` (false < true), a list compares with a config list (``{"config.layers": [64, 64]}``),
and a ``createdAt`` without an offset is UTC. A pattern that makes a backtracking engine take
exponential time answers at once on every backend; the portable form each database runs
(tracklet/store/regex.py) matches exactly what RE2 matches on a corpus of patterns and texts."""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import tracklet
import tracklet.compat.wandb as wandb
from tracklet.store import regex

from conftest import QUIET
from serverproc import Server

LONG = "a" * (regex.MAX_TEXT_CHARS + 10) + "z"  # matched on its first MAX_TEXT_CHARS characters
RUNS = [  # name, config, tags
    ("sweep-1", {"opt": "adam", "layers": [64, 64], "flag": True, "text": "a" * 3000 + "!"}, ["v1", "base"]),
    ("sweep-12", {"opt": "adamw", "layers": [64, 64.0], "flag": False}, ["v2", "\U0001f680"]),
    ("Sweep-3", {"opt": "sgd", "layers": [128, 64], "flag": True}, ["v10"]),
    ("lr-1e-3", {"opt": "Adam", "layers": [64], "long": LONG}, []),
    ("lr-2e-3", {"opt": "sgd", "layers": ["64", "64"]}, ["base"]),
    ("lr-3e-3", {"opt": "rmsprop", "layers": 64}, ["x\nv1"]),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wbregex") / "data"
    for number, (name, config, tags) in enumerate(RUNS):
        run = tracklet.init(project="f", name=name, id=f"r{number}", dir=str(root), settings=QUIET, tags=tags,
                            config=config, group="grid-a" if "weep" in name else "grid-b",
                            job_type="eval" if name == "Sweep-3" else "train")
        run.log({"loss": 1.0})
        run.finish()
    return root


@pytest.fixture(scope="module")
def sqlite_server(root) -> Iterator[str]:
    server = Server(root).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgresql_server(root, postgres_url) -> Iterator[str]:
    from pgcluster import create_database

    server = Server(root, store=create_database(postgres_url, "wbregex")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=["local", "server-sqlite", "server-postgresql"])
def api(request, root, monkeypatch) -> wandb.Api:
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    if request.param == "local":
        return wandb.Api()
    url = request.getfixturevalue(request.param.replace("-", "_").replace("server_", "") + "_server")
    return wandb.Api(overrides={"base_url": url})


def names(api: wandb.Api, filters: dict) -> list[str]:
    return sorted(run.name for run in api.runs("f", filters=filters))


@pytest.mark.parametrize("filters, expected", [
    # $regex: RE2, unanchored, case-sensitive (W&B's docstring examples first)
    ({"display_name": {"$regex": "^sweep-.*"}}, ["sweep-1", "sweep-12"]),
    ({"display_name": {"$regex": "(?i)^sweep-"}}, ["Sweep-3", "sweep-1", "sweep-12"]),
    ({"display_name": {"$regex": r"lr-(1|2)e-3$"}}, ["lr-1e-3", "lr-2e-3"]),
    ({"display_name": {"$regex": r"-\d{2}$"}}, ["sweep-12"]),
    ({"display_name": {"$regex": "e-3"}}, ["lr-1e-3", "lr-2e-3", "lr-3e-3"]),
    ({"display_name": {"$not": {"$regex": "^lr"}}}, ["Sweep-3", "sweep-1", "sweep-12"]),
    ({"config.opt": {"$regex": "^adam"}}, ["sweep-1", "sweep-12"]),
    ({"config.opt.value": {"$regex": "^[Aa]dam$"}}, ["lr-1e-3", "sweep-1"]),
    ({"config.layers": {"$regex": "6"}}, []),  # strings only: never a list or a number
    ({"tags": {"$regex": r"^v\d$"}}, ["sweep-1", "sweep-12"]),  # any tag; "$" is the end of the text
    ({"tags": {"$regex": "^v1"}}, ["Sweep-3", "sweep-1"]),  # not "x\nv1": no multi-line mode
    ({"$or": [{"display_name": {"$regex": "^Sweep"}}, {"tags": {"$in": ["base"]}}]},
     ["Sweep-3", "lr-2e-3", "sweep-1"]),
    # bounded work: the first MAX_TEXT_CHARS characters of a text
    ({"config.long": {"$regex": "z$"}}, []),
    ({"config.long": {"$regex": "^a+$"}}, ["lr-1e-3"]),
    # bools order (W&B's types take a bool for $gt/$lt): false < true, bools only
    ({"config.flag": {"$gt": False}}, ["Sweep-3", "sweep-1"]),
    ({"config.flag": {"$lt": True}}, ["sweep-12"]),
    ({"config.flag": {"$gte": False}}, ["Sweep-3", "sweep-1", "sweep-12"]),
    # a list equals a config list element by element (64 == 64.0; "64" is a string)
    ({"config.layers": [64, 64]}, ["sweep-1", "sweep-12"]),
    ({"config.layers.value": {"$eq": [64, 64]}}, ["sweep-1", "sweep-12"]),
    ({"config.layers": {"$eq": ["64", "64"]}}, ["lr-2e-3"]),
    ({"config.layers": {"$ne": [64, 64]}}, ["Sweep-3", "lr-1e-3", "lr-2e-3", "lr-3e-3"]),
    ({"config.layers": [64]}, ["lr-1e-3"]),
    ({"config.layers": []}, []),
    # createdAt: W&B's ISO times are UTC without an offset
    ({"createdAt": {"$gt": "2000-01-01T00:00:00"}}, [name for name, _, _ in sorted(RUNS)]),
    ({"createdAt": {"$lt": "2000-01-01"}}, []),
])
def test_wandb_filters_select_what_wandb_selects_on_every_backend(api, filters, expected):
    assert names(api, filters) == sorted(expected)


@pytest.mark.parametrize("filters, expected", [
    # the fields W&B's Api.runs docstring lists, under the names W&B users write
    ({"displayName": "sweep-1"}, ["sweep-1"]),
    ({"display_name": {"$in": ["sweep-1", "lr-1e-3"]}}, ["lr-1e-3", "sweep-1"]),
    ({"name": {"$in": ["r0", "r3"]}}, ["lr-1e-3", "sweep-1"]),  # W&B's name is the run id
    ({"id": "r5"}, ["lr-3e-3"]),
    ({"jobType": "eval"}, ["Sweep-3"]),
    ({"job_type": {"$ne": "eval"}}, ["lr-1e-3", "lr-2e-3", "lr-3e-3", "sweep-1", "sweep-12"]),
    ({"group": {"$regex": "-b$"}}, ["lr-1e-3", "lr-2e-3", "lr-3e-3"]),
    ({"state": "finished", "group": "grid-a"}, ["Sweep-3", "sweep-1", "sweep-12"]),
    ({"username": {"$regex": "."}}, [name for name, _, _ in RUNS]),  # the OS user each run recorded
    ({"heartbeatAt": {"$gt": "2000-01-01T00:00:00"}}, [name for name, _, _ in RUNS]),
    ({"summary_metrics.loss": {"$lte": 1}}, [name for name, _, _ in RUNS]),
    ({"tags": "base"}, ["lr-2e-3", "sweep-1"]),
    ({"tags": "\U0001f680"}, ["sweep-12"]),  # past U+FFFF: was a pair of lone surrogates, matching nothing
    ({"tags": {"$regex": "^\U0001f680$"}}, ["sweep-12"]),
    ({"$nor": [{"display_name": {"$regex": "^lr"}}, {"tags": {"$exists": False}}]}, ["Sweep-3", "sweep-1", "sweep-12"]),
])
def test_each_field_wandb_documents_filters_under_its_wandb_name(api, filters, expected):
    assert names(api, filters) == sorted(expected)


def test_a_pattern_that_backtracking_engines_take_exponential_time_on_answers_at_once(api):
    """``^(a|aa)*$`` on 3,000 a's and a "!" would backtrack for longer than the universe has existed
    (Python's re); RE2 and PostgreSQL's engine run it in time linear in the text."""
    assert names(api, {"config.text": {"$regex": "^(a|aa)*$"}}) == []
    assert names(api, {"config.text": {"$regex": "^(a|aa)*!$"}}) == ["sweep-1"]
    with pytest.raises(ValueError, match="count more than 1000 in all"):  # RE2's own limit
        api.runs("f", filters={"display_name": {"$regex": "((a{50}){50}){50}"}})
    with pytest.raises(ValueError, match="too large once its repetitions are counted out"):  # the work per row
        api.runs("f", filters={"display_name": {"$regex": "a{255}b{255}c{255}d{255}"}})


def test_tracklets_own_filter_language_takes_regular_expressions(root):
    found = tracklet.Api(root).runs("f", filter='name =~ "^sweep-\\\\d+$" and tags =~ "^v"')
    assert sorted(run.name for run in found) == ["sweep-1", "sweep-12"]


# Patterns x texts: RE2 on the pattern as written is the reference; SQLite and PostgreSQL run the
# portable form through the store's own compiled expression.
PATTERNS = [r"^sweep-.*", r"lr-(1|2)e-3$", r"\d+", r"(?i)RESNET", r"(?i)k", r"(?i)s", r"(?i)σ", r"[a-c]x",
            r"(?i)[a-c]x", r"[^a-c]", r"a{2,3}", r"a{2,}b", r"x.y", r"\.", r"[]a]", r"[\]\\-]", r"\w+\s\W",
            r"[[:alpha:]]+", r"[[:^digit:]]", r"\Qa.b\E", r"(?P<n>ab)+", r"a|", r"()", r"\x41\x{e9}", r"é",
            r"(?i)é", r"a{", r"x{1,2", r"[\d-]", r"\A\z", r"(?:ab)*?c", r"\n", r"[\s]", r"^$", r"[^\n]",
            r"^(a|aa)*$", r"\S+", r"[\x{100}-\x{200}]", r"(?i)[x-z]+$", r"^\W", r"(?i)\W", r"(?i)[[:upper:]]",
            r"(?i)[^\d\W]", r"(?i)[^k]", r"(?i)\x{212a}", r"(?i)ǅ", r"(?i)i", r"x(?i)y|z", r"(?i:K)s", r"((?i)k)K",
            r"[^\x00-\x{10FFFF}]", r"(?i)[[:^alpha:]]"]
TEXTS = ["sweep-1", "Sweep-1", "lr-1e-3", "lr-3e-3", "x12", "resnet-small", "\u212a", "K", "\u017f", "S", "bx",
         "Bx", "d", "aa", "aab", "x\ny", "xzy", ".", "]", "\\", "-", "ab c!", "abc", "a.b", "abab", "", "Aé", "É",
         "a{", "x{1,2", "σ", "ς", "Σ", "abababc", "\n", "\t", "\u0150", "XYZ", " x", "aaaaaaaaaaaaaaaaaaaaaaaab", "ǆ", "Ǆ", "I", "\u0131", "\u0130"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request) -> Iterator[sa.Engine]:
    from tracklet.store.engine import create_engine

    url = "sqlite://" if request.param == "sqlite" else request.getfixturevalue("postgres_url") + "/postgres"
    eng = create_engine(url)
    yield eng
    eng.dispose()


def test_each_database_matches_what_re2_matches(engine):
    import re2

    from tracklet.store.filters import _Regex

    wrong = []
    with engine.connect() as connection:
        for pattern in PATTERNS:
            portable = regex.portable(pattern)
            row = connection.execute(sa.select(*(_Regex(sa.literal(text, sa.String()), portable) for text in TEXTS)))
            for text, got in zip(TEXTS, row.one()):
                if bool(got) != (re2.search(pattern, text) is not None):
                    wrong.append((pattern, portable, text, got))
    assert not wrong


def test_case_folding_is_re2s_for_each_character_with_an_unusual_orbit():
    """The characters whose case variants no lowercase/uppercase mapping reaches (KELVIN SIGN, LONG
    S, FINAL SIGMA...; regex._ORBITS), DOTLESS I and the ASCII letters: (?i) matches exactly what
    RE2 matches among them (every cased character was checked when the table was made)."""
    import re2

    candidates = sorted(set(regex._ORBITS.replace("|", "")) | set(string.ascii_letters) | {"\u0131", "\u0130"})
    text = "".join(candidates)
    options = re2.Options()
    options.log_errors = False
    for c in candidates:
        expected = {m.group() for m in re2.compile("(?i)" + re2.escape(c), options).finditer(text)}
        assert expected == set(regex._variants(c)) & set(candidates), c
