"""Pages of a sorted listing list every run exactly once, in one order, whatever the ties.

Every sort ends with the run id (``filters.compile_sort``, in the last key's direction), so runs
with equal keys (names, states, creation times, config and summary values, creators) have one
order on SQLite and PostgreSQL alike, and paging by offset through them neither repeats nor skips
one. Before session 26 only the default order had a tie-breaker: a page by ``name`` or ``state``
among equal ones was whatever order the plan read them in, which may differ between two pages.
"""

from __future__ import annotations

from typing import Any

import pytest

from tracklet.server import run_creators as creators
from tracklet.server import schema as server_schema
from tracklet.store import Store
from tracklet.store.schema import projects, runs

COUNT = 61
USERS = ("carol", "alice", "bob")
# Config values: numbers (ties), strings (ties), a boolean and missing: numbers sort first
# (numerically), then strings, then everything else, in either direction (docs/store.md).
X = (3, 1.5, "b", "a", None, 1.5, True, 10, "b")


def _x(i: int) -> Any:
    return X[i % len(X)]


def _fill(store: Store, *, server: bool) -> None:
    with store.engine.begin() as connection:
        project_id = connection.execute(projects.insert().values(name="p").returning(projects.c.id)).scalar_one()
        connection.execute(runs.insert(), [
            {"project_id": project_id, "run_id": f"r{(i * 37) % 100:03d}", "name": f"run {i % 3}",
             "state": ("finished", "crashed")[i % 2], "tags": [],
             "config": {} if _x(i) is None else {"x": _x(i)}, "summary": {"loss": float(i % 4)} if i % 5 else {},
             "keys": [], "created_at": None if i % 11 == 0 else float(i % 4),
             "log_path": f"p/{i}.log", "metadata": {"username": USERS[i % 3]} if i % 7 else {}} for i in range(COUNT)])
        if server:
            connection.execute(server_schema.users.insert(), [
                {"id": n + 1, "name": name, "is_admin": False, "created_at": 0.0, "disabled": False}
                for n, name in enumerate(USERS)])
            connection.execute(server_schema.run_creators.insert(), [
                {"project": "p", "run_id": f"r{(i * 37) % 100:03d}", "user_id": i % 3 + 1, "user_name": USERS[i % 3],
                 "created_at": 0.0}
                for i in range(COUNT) if i % 7])  # every 7th run has no verified creator


def _rank(value: Any) -> tuple:
    """A config or summary value's group (numbers, strings, the rest) and value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    if isinstance(value, str):
        return (1, 0, value)
    return (2, 0, "")


def _expected(rows: list[dict[str, Any]], key: str, descending: bool) -> list[str]:
    """The run ids in the order the store promises: the key's values (missing last in both
    directions), ties by run id in the key's direction."""
    def value(row: dict[str, Any]) -> Any:
        if key.startswith("config."):
            return row["config"].get(key.split(".", 1)[1])
        if key.startswith("summary."):
            return row["summary"].get(key.split(".", 1)[1])
        return row[{"created": "created_at"}.get(key, key)]

    groups: dict[int, list[dict[str, Any]]] = {0: [], 1: [], 2: []}
    for row in rows:
        v = value(row)
        if key.startswith(("config.", "summary.")):
            groups[_rank(v)[0]].append(row)
        else:
            groups[0 if v is not None else 2].append(row)
    ordered = []
    for group, members in sorted(groups.items()):  # each group in the key's direction, groups in this order
        ordered += sorted(members, key=lambda row: (value(row), row["run_id"]) if group < 2 else row["run_id"],
                          reverse=descending)
    return [row["run_id"] for row in ordered]


SORTS = [None, "name", "-name", "state", "-state", "created", "-created", "config.x", "-config.x",
         "summary.loss", "-summary.loss", "state,-name", "-state,config.x"]


@pytest.fixture(scope="module", params=[(server, backend) for backend in ("sqlite", "postgresql")
                                        for server in (False, True)],
                ids=lambda param: f"{'server' if param[0] else 'store'}-{param[1]}")
def store(request, tmp_path_factory):
    """A data root's store or a server's, on each backend, filled once for the module's tests: they
    only read it (built for each of them, its migrations and rows were most of each test's CPU)."""
    server, backend = request.param
    root = tmp_path_factory.mktemp("paging")
    name = f"paging_{'server' if server else 'store'}"
    if backend == "sqlite":
        url = f"sqlite:///{root / 'store.sqlite'}"
    else:
        from pgcluster import create_database

        url = create_database(request.getfixturevalue("postgres_url"), name)
    made = Store(url, root=root)
    if server:
        server_schema.migrate(made.engine)
        made.project_joined_fields = creators.joined_fields
    _fill(made, server=server)
    made.server = server  # type: ignore[attr-defined]
    yield made
    made.close()
    if backend == "postgresql":
        from pgcluster import drop_database

        drop_database(request.getfixturevalue("postgres_url"), name)


def _pages(store: Store, order_by: str | None, size: int, **kwargs: Any) -> list[str]:
    listed: list[str] = []
    for offset in range(0, COUNT + size, size):
        page = store.runs("p", order_by=order_by, limit=size, offset=offset, **kwargs)
        listed += [row["run_id"] for row in page]
    return listed


@pytest.mark.parametrize("order_by", SORTS + ["user", "-user"])
def test_pages_of_any_sort_list_each_run_once_in_one_order(store, order_by):
    fields = ("run_id", "name", "state", "created_at", "config", "summary")
    user = "user" if store.server else "username"  # a server's verified creator; a data root's OS user
    if order_by in ("user", "-user"):
        fields += (user,)
    whole = store.runs("p", order_by=order_by, fields=fields)
    ids = [row["run_id"] for row in whole]
    assert len(ids) == len(set(ids)) == COUNT
    for size in (1, 7, 50):
        assert _pages(store, order_by, size, fields=fields) == ids, size
    # A filter that keeps most runs pages alike.
    kept = [row["run_id"] for row in store.runs("p", order_by=order_by, filter='name != "run 1"')]
    assert _pages(store, order_by, 4, filter='name != "run 1"') == kept
    assert len(kept) == len(set(kept)) == len([row for row in whole if row["name"] != "run 1"])
    key = (order_by or "-created").lstrip("-")
    descending = (order_by or "-created").startswith("-")
    if "," not in key and key != "user":
        assert ids == _expected(whole, key, descending)
    if key == "user":  # runs without a creator ("") last in both directions, as missing values
        names = [row[user] for row in whole]
        credited = [name for name in names if name]
        assert names == sorted(credited, reverse=descending) + [""] * (len(names) - len(credited))
        for name in set(names):  # ties by run id, in the key's direction
            tied = [row["run_id"] for row in whole if row[user] == name]
            assert tied == sorted(tied, reverse=descending)
    if key in ("name", "state"):  # never missing: the descending order is the ascending one reversed
        other = store.runs("p", order_by=key if descending else "-" + key, fields=fields)
        assert [row["run_id"] for row in other][::-1] == ids
