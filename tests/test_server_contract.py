"""The server's typed contract (tracklet/server/models.py): every JSON route declares a response
model and ``ErrorResponse`` for its errors, real bodies are exactly what their models describe
(byte for byte once round-tripped through the model, so no field is missing from the schema,
none is null where the schema says absent, no integer turns into a float), error bodies of
failing requests are ``ErrorResponse``s, and routes that block run as plain ``def``."""

from __future__ import annotations

import gzip
import inspect
import json
import time

import pytest
from conftest import QUIET, wait_for_system_sample
from fastapi import routing
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter
from starlette.routing import compile_path

import tracklet
from tracklet.core.recordlog import frame
from tracklet.server import one_hop
from tracklet.server.app import create_app
from tracklet.server.auth import Accounts
from tracklet.server.models import ErrorResponse, OffsetConflictResponse

# Routes that may be ``async``: those that stream a request body (they await it), and those that
# do no blocking work at all.
AWAITS_BODY = {"put_log", "put_file", "put_blob", "put_blob_batch", "put_upload_part", "put_pack"}
NON_BLOCKING = {"health", "me"}


def _api_routes(app) -> list:
    """The app's API routes, each with what it declares as included (newer FastAPI keeps included
    routers lazy in ``app.routes``; ``iter_route_contexts`` gives each route with its router's
    ``responses`` merged in)."""
    contexts = routing.iter_route_contexts(app.routes) if hasattr(routing, "iter_route_contexts") else app.routes
    return [route for route in contexts
            if isinstance(getattr(route, "original_route", route), APIRoute) and route.include_in_schema
            and route.path.startswith("/api/")]


@pytest.fixture
def app(tmp_path):
    return create_app(tmp_path / "server", index_on_start=False)


def test_every_route_declares_a_response_model_and_error_response(app):
    routes = _api_routes(app)
    assert len(routes) >= 25
    for route in routes:
        name = f"{sorted(route.methods)} {route.path}"
        if route.status_code == 204:
            assert route.response_model is None, name
        elif route.name in ("get_file", "get_blob", "get_media_file", "get_table_blob", "get_trace_blob", "get_log"):  # raw bytes
            assert "application/octet-stream" in route.responses[200]["content"], name
        elif route.name == "report_data":  # JSON lines streamed as each panel is ready, declared as such
            assert "application/x-ndjson" in route.responses[200]["content"], name
        elif route.name == "report_export":  # the exported file, declared by its media types
            assert {"text/html", "application/pdf", "application/zip"} <= set(route.responses[200]["content"]), name
        else:
            assert route.response_model is not None and issubclass(route.response_model, BaseModel), name
        errors = {status: spec for status, spec in route.responses.items() if int(status) >= 400}
        if route.name != "health":  # every guarded route: a bad project name, no valid key, no role
            assert {400, 401, 403} <= set(errors), name
        for status, spec in errors.items():
            assert issubclass(spec["model"], ErrorResponse), (name, status)


def test_openapi_schema_has_one_error_body_and_typed_responses(app):
    schema = app.openapi()
    names = schema["components"]["schemas"]
    assert [n for n in names if "ErrorResponse" in n] == ["ErrorResponse"]
    assert names["OffsetConflictResponse"]["required"] == ["detail", "offset"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                body = response.get("content", {}).get("application/json")
                if body is None:
                    continue
                ref = body["schema"].get("$ref", "")
                assert ref.startswith("#/components/schemas/"), (method, path, status)
                if status.startswith("4") and status != "422":  # 422: FastAPI's HTTPValidationError
                    assert ref.rsplit("/", 1)[1] in ("ErrorResponse", "OffsetConflictResponse", "PrimaryHeldResponse"), (
                        method, path, status)
    # No dict-shaped bodies left: runs, series and accounts say what their fields are.
    for model in ("RunRow", "Series", "CompareSeries", "ApiKey", "User", "Member"):
        assert names[model]["properties"], model


def test_integer_parameters_fit_the_stores_integers(app):
    """Every integer a route reads from its path or query has a maximum a store's 64-bit integer
    holds: past it SQLite's driver raises OverflowError and PostgreSQL "bigint out of range",
    a 500 instead of a 422 naming the parameter (the media grid's `step` had none)."""
    unbounded = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                for schema in parameter["schema"].get("anyOf", [parameter["schema"]]):
                    if schema.get("type") == "integer" and schema.get("maximum", 2**63) > 2**63 - 1:
                        unbounded.append((method, path, parameter["name"]))
    assert unbounded == []


def test_blocking_routes_are_plain_def(app):
    for route in _api_routes(app):
        if one_hop.wrapped(route):  # a plain def run in a worker call with its guards' steps (one_hop.py)
            assert not inspect.iscoroutinefunction(inspect.unwrap(route.endpoint)), route.name
            continue
        if inspect.iscoroutinefunction(route.endpoint):
            assert route.name in AWAITS_BODY | NON_BLOCKING, f"{route.path}: async but neither awaits a body nor is trivial"
            source = inspect.getsource(route.endpoint)
            if route.name in AWAITS_BODY:
                assert "await read_body(" in source or "await stream_body(" in source, route.name
            else:
                assert "await " not in source and "run_in_threadpool" not in source, route.name


@pytest.fixture
def served(tmp_path):
    """A server over a data root holding runs with NaN, ±inf, integer and float metrics, config,
    console, alerts, system metrics and a file; an admin key; a reader with read access."""
    root = tmp_path / "data"
    for index, run_id in enumerate(["alpha", "beta"]):
        settings = {**QUIET, "console": "wrap"} if index else {
            "capture_environment": True, "system_metrics": True, "system_interval": 0.02, "system_window": 0.05,
            "capture_wait": 60}
        run = tracklet.init(project="proj", id=run_id, dir=str(root), settings=settings, tags=["t"] * index,
                            config={"lr": 0.001, "nested": {"depth": 4, "bad": float("nan")}})
        for step in range(300 if index == 0 else 30):
            row = {"loss": 1.0 / (step + 1), "count": step * 2, "acc": step / 7}
            if step == 5:
                row.update(loss=float("nan"), acc=float("inf"))
            if step % 100 == 0:
                row["generated"] = ["text", step, {"nan": float("nan")}]  # a structured value
            run.log(row)
            if step % 100 == 0:
                print(f"step {step}")
        run.alert("slow", "epoch took long", level="WARN")
        run.summary["best"] = float("-inf")
        if index == 0:
            time.sleep(0.3)  # some system windows
            wait_for_system_sample(run)
        run.finish(exit_code=index)
    app = create_app(root, shared_root=True, sweep_interval=3600)
    accounts = Accounts(app.state.tracklet.store)
    admin = accounts.create_user("admin", admin=True).key
    reader = accounts.create_user("reader").key
    accounts.set_member("proj", "reader", "read")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        assert client.put("/api/v1/runs/proj/alpha/files/notes.txt", content=b"hi").status_code == 200
        yield app, client, reader


def _model(app, method: str, path: str) -> type[BaseModel]:
    for route in _api_routes(app):
        if method in route.methods and compile_path(route.path)[0].match(path):
            return route.response_model
    raise AssertionError(f"no route {method} {path}")


READS = [
    "/api/v1/health", "/api/v1/projects",
    "/api/v1/projects/proj/runs", "/api/v1/projects/proj/runs?filter=config.lr>0&order_by=-created_at",
    "/api/v1/runs/proj/alpha", "/api/v1/runs/proj/beta",
    "/api/v1/runs/proj/alpha/history?keys=loss,acc,count",
    "/api/v1/runs/proj/alpha/history?keys=loss,acc,count&buckets=0",
    "/api/v1/runs/proj/alpha/history?keys=loss,acc&x=relative_time&buckets=20",
    "/api/v1/runs/proj/alpha/values?keys=generated,loss", "/api/v1/runs/proj/alpha/values?keys=generated&limit=1",
    "/api/v1/projects/proj/history?runs=alpha,beta&keys=loss,acc,count",
    "/api/v1/projects/proj/history?runs=alpha,beta&keys=loss,acc,count&buckets=0",
    "/api/v1/projects/proj/history?runs=alpha,beta&keys=loss&x=time&buckets=10",
    "/api/v1/projects/proj/keys", "/api/v1/projects/proj/keys?runs=beta",
    "/api/v1/runs/proj/beta/console", "/api/v1/runs/proj/alpha/alerts",
    "/api/v1/runs/proj/alpha/system/names", "/api/v1/runs/proj/alpha/system",
    "/api/v1/runs/proj/alpha/system?buckets=0&x=relative_time&stats=max",
    "/api/v1/runs/proj/alpha/files", "/api/v1/runs/proj/alpha/log/offset",
    "/api/v1/me", "/api/v1/keys", "/api/v1/users", "/api/v1/projects/proj/members",
    "/api/v1/projects/proj/artifacts",
    "/api/v1/runs/proj/alpha/reproduce-plan", "/api/v1/projects/proj/run-diff?a=alpha&b=beta",
]


def test_bodies_are_exactly_what_their_models_describe(served):
    app, client, _ = served
    seen_null = seen_int = seen_absent = False
    for path in READS:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        model = _model(app, "GET", path.split("?")[0])
        parsed = model.model_validate_json(response.content)
        # Round-tripped through the model, the body is the same bytes: every field is in the
        # model, in order, nothing absent became null, no integer became a float.
        assert parsed.model_dump_json(exclude_unset=True).encode() == response.content, path
        seen_null |= b"null" in response.content
        seen_int |= b'"steps":[0,1,2,' in response.content
        seen_absent |= path.endswith("/runs") and b'"keys"' not in response.content
    assert seen_null and seen_int and seen_absent  # the data exercised what the models promise
    run = client.get("/api/v1/runs/proj/alpha").json()["run"]
    assert run["keys"] and run["metadata"]["command"] and run["config"]["nested"]["bad"] is None
    series = client.get("/api/v1/runs/proj/alpha/system").json()["series"]
    assert series and {entry["stat"] for entry in series} == {"mean", "max"}


def test_write_bodies_match_their_models(served):
    app, client, _ = served
    response = client.put("/api/v1/runs/proj/alpha/files/notes.txt", content=b"new")
    assert response.status_code == 200
    model = _model(app, "PUT", "/api/v1/runs/proj/alpha/files/notes.txt")
    assert model.model_validate_json(response.content).model_dump_json().encode() == response.content
    for method, path, body in [("POST", "/api/v1/keys", {"label": "ci"}), ("POST", "/api/v1/users", {"name": "carol"})]:
        response = client.request(method, path, json=body)
        assert response.status_code == 200, response.text
        model = _model(app, method, path)
        assert model.model_validate_json(response.content).model_dump_json().encode() == response.content


def _error(response, status: int) -> ErrorResponse:
    assert response.status_code == status, response.text
    error = ErrorResponse.model_validate_json(response.content)
    assert error.detail and json.loads(response.content) == {"detail": error.detail}
    return error


def test_error_bodies_are_error_responses(served, tmp_path):
    _, client, reader = served
    _error(client.get("/api/v1/projects", headers={"Authorization": ""}), 401)
    assert "missing API key" in _error(client.get("/api/v1/projects", headers={"Authorization": ""}), 401).detail
    _error(client.get("/api/v1/projects", headers={"Authorization": "Bearer tlk_nope_nope"}), 401)
    _error(client.put("/api/v1/runs/proj/alpha/files/x.txt", content=b"x",
                      headers={"Authorization": f"Bearer {reader}"}), 403)
    _error(client.get("/api/v1/runs/proj/nope"), 404)
    _error(client.get("/api/v1/projects/nope/runs"), 404)
    _error(client.get("/api/v1/projects/proj/history", params={"runs": "nope", "keys": "loss"}), 404)
    _error(client.get("/api/v1/runs/proj/alpha/files/missing.txt"), 404)
    _error(client.get("/api/v1/runs/proj/nope/reproduce-plan"), 404)
    _error(client.get("/api/v1/projects/proj/run-diff", params={"a": "alpha", "b": "nope"}), 404)
    assert "filter" in _error(client.get("/api/v1/projects/proj/runs", params={"filter": "config.lr <"}), 400).detail
    _error(client.get("/api/v1/projects/proj/runs", params={"order_by": "no such thing!"}), 400)
    _error(client.get("/api/v1/runs/proj/-bad"), 400)
    _error(client.get("/api/v1/runs/proj/alpha/history", params={"keys": ","}), 400)
    _error(client.put("/api/v1/runs/proj/fresh/log", params={"offset": 0}, content=b"not a log"), 400)
    _error(client.put("/api/v1/runs/proj/alpha/files/x.txt", content=b"x", headers={"Content-Encoding": "br"}), 415)
    conflict = client.put("/api/v1/runs/proj/alpha/log", params={"offset": 10**9}, content=frame(b"a gap"))
    assert conflict.status_code == 409
    assert OffsetConflictResponse.model_validate_json(conflict.content).offset > 0
    ErrorResponse.model_validate_json(conflict.content)

    small = create_app(tmp_path / "small", max_body_bytes=1024, auth=False, index_on_start=False)
    with TestClient(small) as other:
        _error(other.put("/api/v1/runs/proj/r1/log", params={"offset": 0}, content=b"x" * 2048), 413)
        _error(other.put("/api/v1/runs/proj/r1/log", params={"offset": 0}, content=gzip.compress(b"x" * 4096),
                         headers={"Content-Encoding": "gzip"}), 413)  # past the limit once decompressed
        # every status above is one the route declares
        declared = {int(status) for status in small.openapi()["paths"]["/api/v1/runs/{project}/{run_id}/log"]["put"]["responses"]}
        assert {400, 401, 403, 409, 413, 415} <= declared


def test_untyped_numbers_stay_numbers_in_typed_models():
    """The metric arrays accept JSON's numbers as they come: 3 stays 3, 0.5 stays 0.5, null stays null."""
    from tracklet.server.models import Series

    body = b'{"run":"p/r","key":"k","exact":true,"x":[0,1],"steps":[0,1],"values":[3,null]}'
    assert TypeAdapter(Series).validate_json(body).model_dump_json(exclude_unset=True).encode() == body
