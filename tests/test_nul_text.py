"""NUL (U+0000) in any text a client sends never makes the server answer 5xx, on SQLite or PostgreSQL.

PostgreSQL's ``text`` cannot hold NUL and its ``jsonb`` refuses ``\\u0000``: one NUL reaching a bound
parameter made psycopg raise and the route answer 500. The store's rule (tracklet/store/text.py)
keeps NUL as U+FFFD and finds it by the same text; ``tracklet.store.engine`` applies it to every
parameter a store engine binds. This test proves the class: every operation of the server's own
OpenAPI schema gets NUL in each of its string path and query parameters in turn, and in every
string (and dict key) of its JSON body, and no answer is a 5xx; what was recorded before is intact.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from conftest import QUIET

import tracklet

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tracklet.server.app import create_app  # noqa: E402

NUL = "a\x00b"
# Path parameters not under test name what was recorded (reads find it); a DELETE names nothing.
KNOWN = {"project": "p", "run_id": "r", "key": "loss", "name": "loss"}


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _sample(schema: dict, spec: dict, text: str, depth: int = 0) -> Any:
    """A value of ``schema`` whose every string (and every key of a free-form object) is ``text``."""
    schema = _resolve(schema, spec)
    if depth > 6:
        return None
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            options = [o for o in schema[combined] if _resolve(o, spec).get("type") != "null"] or schema[combined]
            return _sample(options[0], spec, text, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "string":
        return text
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1) if schema.get("maximum", 2) >= 1 else schema["maximum"]
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return [_sample(schema.get("items", {"type": "string"}), spec, text, depth + 1)]
    if kind == "object" or "properties" in schema:
        value = {name: _sample(sub, spec, text, depth + 1) for name, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties")
        if extra or (not schema.get("properties") and extra is None):
            nested = {"type": "string"} if extra in (None, True) else extra
            value[text] = _sample(nested, spec, text, depth + 1)
            value["nested"] = {text: [text, {text: text}]} if extra in (None, True) else value[text]
        return value
    return text  # free-form JSON


def _requests(spec: dict) -> list[tuple[str, str, dict, Any, str]]:
    """(method, url, query, JSON body or None, what carries NUL) for each string parameter of each
    operation in turn, and for each JSON body."""
    out = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            parameters = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]

            def url(nul_in: str | None, parameters=parameters, path=path, method=method) -> str:
                filled = path
                for p in parameters:
                    if p["in"] == "path":
                        value = NUL if p["name"] == nul_in else (
                            "none" if method == "delete" else KNOWN.get(p["name"], "x"))
                        if _resolve(p["schema"], spec).get("type") == "integer" and p["name"] != nul_in:
                            value = "1"
                        filled = filled.replace("{" + p["name"] + "}", quote(value, safe=""))
                return filled

            body_schema = (operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                           .get("schema"))
            plain_body = _sample(body_schema, spec, "x") if body_schema else None
            strings = [p for p in parameters if _string_schema(p["schema"], spec)]
            for p in strings:
                query = {p["name"]: NUL} if p["in"] == "query" else {}
                out.append((method, url(p["name"] if p["in"] == "path" else None), query, plain_body,
                            f"{p['in']} {p['name']}"))
            if body_schema:
                out.append((method, url(None), {}, _sample(body_schema, spec, NUL), "body"))
    return out


def _string_schema(schema: dict, spec: dict) -> bool:
    schema = _resolve(schema, spec)
    options = [_resolve(o, spec) for o in schema.get("anyOf", [schema])]
    return any(o.get("type") == "string" or (o.get("type") == "array" and
               _resolve(o.get("items", {}), spec).get("type") == "string") for o in options)


def _recorded(client: TestClient) -> tuple:
    run = client.get("/api/v1/runs/p/r")
    history = client.get("/api/v1/runs/p/r/history", params={"keys": "loss"})
    assert run.status_code == 200 and history.status_code == 200, (run.text, history.text)
    body = run.json()["run"]
    return body["config"], body["name"], body["tags"], body["summary"], history.json()["series"][0]["values"]


@pytest.mark.parametrize("auth", [False, True], ids=["dev", "admin-key"])
def test_nul_anywhere_in_a_request_is_never_a_server_error(tmp_path, store_url, capfd, auth):
    root = tmp_path / "server"
    run = tracklet.init(project="p", id="r", dir=str(root), config={"lr": 0.1, "name\x00x": "v\x00w"},
                        tags=["t\x00u"], settings=QUIET)
    for step in range(20):
        run.log({"loss": 1.0 / (step + 1), "odd\x00key": float(step)})
    run.finish()
    app = create_app(root, store_url=store_url, auth=auth)
    spec = app.openapi()
    headers = {}
    if auth:  # the account routes (users, keys, members) answer only on a server with accounts
        key = app.state.tracklet.authorizer.accounts.create_user("root", admin=True).key
        headers = {"Authorization": f"Bearer {key}"}
    failures: list = []
    statuses: dict[int, int] = {}
    with TestClient(app, raise_server_exceptions=False, headers=headers) as client:
        before = _recorded(client)
        assert before[0]["name\ufffdx"] == "v\ufffdw"  # the store's rule: NUL kept as U+FFFD
        requests = _requests(spec)
        assert len(requests) >= 200
        for method, url, query, body, where in requests:
            response = client.request(method.upper(), url, params=query,
                                      content=None if body is None else json.dumps(body),
                                      headers={"content-type": "application/json"} if body is not None else {})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append((method, url, query, where, response.status_code, response.text[:300]))
        assert failures == []
        # many reached the routes' work, not only their validation (a name with NUL is a 400 naming it)
        assert statuses.get(200, 0) >= 20 and set(statuses) <= {200, 201, 204, 400, 404, 409, 422}, statuses
        assert _recorded(client) == before
        # found by the same text: the NUL key's series and a NUL run filter
        series = client.get("/api/v1/runs/p/r/history", params={"keys": "odd\x00key"})
        assert series.status_code == 200 and len(series.json()["series"][0]["values"]) == 20, series.text
        for expression in ('tags contains "t\x00u"', 'config."name\x00x" = "v\x00w"',
                           'config."name\ufffdx" = "v\x00w"'):
            found = client.get("/api/v1/projects/p/runs", params={"filter": expression})
            assert found.status_code == 200 and [r["run_id"] for r in found.json()["runs"]] == ["r"], found.text
    # nothing failed out of sight either: every audit event was written, no route raised
    err = capfd.readouterr().err
    assert "could not write the audit event" not in err and "Traceback" not in err, err[-3000:]


def test_the_python_api_and_the_cli_take_nul_as_the_store_keeps_it(tmp_path, store_url, monkeypatch):
    """The same texts through ``tracklet.Api`` and the CLI (click's runner: a real argv cannot hold
    NUL, but a script calling the CLI's functions can): answers or a one-line error, never a driver
    error, and a NUL text finds what the store keeps as U+FFFD."""
    from click.testing import CliRunner

    from tracklet.cli.main import main

    root = tmp_path / "data"
    run = tracklet.init(project="p", id="r", dir=str(root), config={"name\x00x": "v\x00w"}, tags=["t\x00u"],
                        settings=QUIET)
    run.log({"odd\x00key": 1.0})
    run.finish()
    monkeypatch.setenv("TRACKLET_STORE", store_url)
    with tracklet.Api(root, store_url=store_url) as api:
        assert [r.id for r in api.runs("p", filter='config."name\x00x" = "v\x00w"')] == ["r"]
        assert [r.id for r in api.runs("p", filter='tags contains "t\x00u"')] == ["r"]
        assert api.runs("p", filter='notes = "\x00"', order_by='config."a\x00b"') == []
        history = api.history(api.run("p/r"), "odd\x00key")
        assert len(history) == 1
        for call in (lambda: api.runs("p\x00"), lambda: api.run("p/r\x00"), lambda: api.traces("p\x00", filter="name = '\x00'"),
                     lambda: api.reports("p\x00"), lambda: api.report("x\x00", project="p")):
            try:
                call()
            except (tracklet.errors.TrackletError, LookupError, ValueError) as error:
                assert "NUL (0x00)" not in str(error), error
    runner = CliRunner()
    for args in (["runs", "p", "--filter", 'config."name\x00x" = "v\x00w"', "--json"],
                 ["runs", "p\x00", "--json"], ["show", "p/r\x00"], ["show", "p/r", "--json"],
                 ["export", "p/r", "-k", "odd\x00key", "-f", "jsonl", "-o", str(tmp_path / "out.jsonl")],
                 ["report", "ls", "p\x00"], ["report", "ls", "p"], ["report", "show", "x\x00", "--project", "p"],
                 ["artifact", "ls", "p\x00"], ["artifact", "ls", "p"], ["artifact", "show", "p/a\x00:v1"],
                 ["registry", "ls", "r\x00"], ["registry", "history", "c\x00:prod"]):
        result = runner.invoke(main, ["--dir", str(root), *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        assert "NUL (0x00)" not in result.output and "No such " not in result.output, (args, result.output)
    first = runner.invoke(main, ["--dir", str(root), "runs", "p", "--filter", 'tags contains "t\x00u"', "--json"])
    assert first.exit_code == 0 and '"r"' in first.output, first.output
