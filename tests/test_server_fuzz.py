"""The server's HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever a client
sends, the answer is never a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402

import tracklet  # noqa: E402
from tracklet.server.app import create_app  # noqa: E402

from conftest import QUIET  # noqa: E402


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
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            case.call_and_validate(headers=headers, checks=[schemathesis.checks.not_a_server_error])

        call()


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
