"""The server's HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever a client
sends, the answer is never a 5xx."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402

import tracklet  # noqa: E402
from tracklet.server.app import create_app  # noqa: E402

from conftest import QUIET  # noqa: E402

# Examples per operation (every operation of the schema is called in both forms, each with this many
# generated requests). The test command's counts keep CI within its time budget (the operations grow
# with the API: 40 each had doubled to 160 s; 25 and 12 took 53 s and 32 s of a 30-minute CI whose
# test phase is one file per worker); TRACKLET_FUZZ_EXAMPLES=N runs N in both forms, for a deeper run.
_EXAMPLES = {"dev": 16, "admin-key": 8}


def _examples(form: str) -> int:
    return int(os.environ.get("TRACKLET_FUZZ_EXAMPLES", _EXAMPLES[form]))


@pytest.mark.parametrize("auth", [False, True], ids=["dev", "admin-key"])
def test_no_request_gets_a_server_error(tmp_path, auth):
    root = tmp_path / "server"
    run = tracklet.init(project="fuzz", id="known", dir=str(root), config={"lr": 0.1}, settings=QUIET)
    for step in range(200):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 200})
    run.finish()
    app = create_app(root, auth=auth)  # indexes the run at start
    headers = {}
    if auth:
        key = app.state.tracklet.authorizer.accounts.create_user("root", admin=True).key
        headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    examples = _examples("admin-key" if auth else "dev")
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            case.call_and_validate(headers=headers, checks=[schemathesis.checks.not_a_server_error])

        call()


def _integer_bounds(schema: dict) -> list[tuple[object, object]]:
    options = [schema, *schema.get("anyOf", [])]
    return [(o.get("minimum"), o.get("maximum")) for o in options if o.get("type") == "integer"]


def test_every_integer_a_request_carries_is_bounded_within_64_bits(tmp_path):
    """The class of the fuzzer's finds: an unbounded integer parameter reaches the database driver,
    which overflows past 64 bits (a 500) instead of a 422 naming the parameter."""
    schema = create_app(tmp_path / "server", index_on_start=False).openapi()
    unbounded = []
    checked = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                for low, high in _integer_bounds(parameter["schema"]):
                    checked += 1
                    if low is None or high is None or not (-(2**63) <= low <= high <= 2**63 - 1):
                        unbounded.append((method, path, parameter["name"], low, high))
    assert checked >= 30
    assert unbounded == []


def test_integers_past_64_bits_in_paths_and_cursors_are_client_errors(tmp_path):
    from fastapi.testclient import TestClient

    past = str(2**63)
    with TestClient(create_app(tmp_path / "server", auth=False)) as client:
        for method, url, params in [
            ("DELETE", f"/api/v1/automations/{past}", {}),
            ("GET", f"/api/v1/automations/{past}/deliveries", {}),
            ("GET", "/api/v1/audit", {"after": past}),
            ("GET", "/api/v1/registries/r/collections/c/versions", {"offset": past}),
            ("PUT", f"/api/v1/projects/p/artifacts/_uploads/u/parts/{past}", {}),
            ("PUT", "/api/v1/runs/p/r/log", {"offset": past}),
        ]:
            response = client.request(method, url, params=params, content=b"x" if method == "PUT" else None)
            assert response.status_code == 422, (method, url, response.text)


def test_out_of_range_windows_and_offsets_are_client_errors_or_empty(tmp_path):
    """Regressions the fuzzer found: numbers past 64-bit integers reached SQLite (500)."""
    from fastapi.testclient import TestClient

    root = tmp_path / "server"
    run = tracklet.init(project="p", id="r", dir=str(root), settings=QUIET)
    for step in range(10):
        run.log({"loss": float(step)})
    run.finish()
    with TestClient(create_app(root, auth=False)) as client:
        assert client.get("/api/v1/projects/p/runs", params={"offset": 2**63}).status_code == 422
        for x in ("step", "time", "relative_time"):
            huge = client.get("/api/v1/runs/p/r/history", params={"keys": "loss", "x": x, "start": 1e300, "end": 1e301})
            assert huge.status_code == 200 and huge.json()["series"][0]["steps"] == [], huge.text
            wide = client.get("/api/v1/runs/p/r/history", params={"keys": "loss", "x": x, "start": -1e300, "end": 1e300})
            assert wide.json()["series"][0]["steps"] == list(range(10)), x
