"""The sweep page in real Chromium for a server sweep (the study in the server's PostgreSQL): a
multi-objective sweep shows each objective's value per trial and every objective in the overview.
Fixtures (browser, page) are tests/test_dashboard.py's."""

from __future__ import annotations

import httpx
import pytest
import test_dashboard

from tracklet.server.models import SweepResponse

pytest.importorskip("optuna", reason="pip install 'tracklet[sweeps]'")
pytestmark = [*test_dashboard.pytestmark, pytest.mark.slow]
browser, page, allowed_errors = test_dashboard.browser, test_dashboard.page, test_dashboard.allowed_errors  # fixtures


def test_a_multi_objective_server_sweep_shows_every_objective(servers, pg_url, page):
    server = servers(store=pg_url, dev=True)
    config = {"method": "random", "seed": 1,
              "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "latency", "goal": "minimize"}],
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    with httpx.Client(base_url=server.url) as http:
        sweep_id = http.post("/api/v1/projects/mo/sweeps", json={"config": config}).json()["id"]
        base = f"/api/v1/projects/mo/sweeps/{sweep_id}"
        told = {}
        for i in range(3):
            lease = http.post(f"{base}/next", json={"agent": "a", "ttl": 60}).json()["lease"]
            values = [round(lease["config"]["x"], 3), float(10 + i)]
            result = http.post(f"{base}/tell", json={"trial": lease["trial"], "agent": "a", "values": values}).json()
            assert result["state"] == "complete" and result["values"] == values
            told[lease["trial"]] = values
        detail = http.get(base)
        assert detail.status_code == 200
        sweep = SweepResponse.model_validate_json(detail.content).sweep
        assert [m.name for m in sweep.metrics] == ["loss", "latency"]
        assert {t.number: t.values for t in sweep.trials} == told

    page.goto(f"{server.url}/projects/mo/sweeps/{sweep_id}")
    page.wait_for_selector("table.trials tbody tr")
    headers = page.eval_on_selector_all("table.trials thead th", "cells => cells.map(c => c.dataset.col)")
    assert headers[2:4] == ["value:0", "value:1"]
    assert page.text_content(".sweep-overview [data-field='metric']") == "loss (minimize), latency (minimize)"
    shown = page.eval_on_selector_all(
        "table.trials tbody tr",
        "rows => rows.map(r => [Number(r.dataset.trial), r.querySelector('[data-col=\"value:0\"]').textContent,"
        " r.querySelector('[data-col=\"value:1\"]').textContent])")
    assert {trial: [float(a), float(b)] for trial, a, b in shown} == told
