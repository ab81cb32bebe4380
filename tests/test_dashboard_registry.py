"""The model registry pages in a real headless Chromium (test_dashboard.py's browser and page
fixtures) against a real `tracklet server` with API keys: collections, versions with aliases, the
alias history, a model card, the link to the producing artifact version's lineage, and promotion
requests approved and rejected through the buttons by a registry admin other than the requester
(whose own view has no buttons)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import QUIET, REPO
from test_dashboard import CHROMIUM, STATIC, allowed_errors, browser, page  # noqa: F401

import tracklet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]

NET = "/api/v1/registries/model/collections/net"


@pytest.fixture
def registry(servers, tmp_path):
    """alice linked model/net:v0 (production, protected: 1 approval) and v1 from project `train`,
    saved v1's card and asked to move production to v1; bob is a registry admin and may read `train`."""
    root = tmp_path / "server"
    made = subprocess.run([sys.executable, "-m", "tracklet", "admin", "--dir", str(root), "create-user", "root",
                           "--admin"], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=60, check=True)
    server = servers(root, dev=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {made.stdout.strip()}"}) as root_client:
        keys = {name: root_client.post("/api/v1/users", json={"name": name}).json()["key"] for name in ("alice", "bob")}
    run = tracklet.init(project="train", dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    run.config.update({"lr": 0.01})
    model = tmp_path / "model.pt"
    for weights in (b"one", b"two"):
        model.write_bytes(weights)
        run.link_model(model, registered_model_name="net", aliases=["production"] if weights == b"one" else None)
    run_id = run.id
    run.finish()
    alice = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['alice']}"})
    assert alice.put("/api/v1/registries/model/members/bob", json={"role": "admin"}).status_code == 200
    # the producing run and its lineage are the project's: bob reads them as a project member
    assert alice.put("/api/v1/projects/train/members/bob", json={"role": "read"}).status_code in (200, 204)
    assert alice.put(NET + "/versions/v1/card", json={"text": "---\nlicense: mit\n---\n# net v1\nBeats v0."}).status_code == 200
    assert alice.put(NET + "/protections/production", json={"approvals": 1}).status_code == 200
    opened = alice.put(NET + "/aliases/production", json={"version": "v1", "reason": "v1 wins the A/B test"})
    assert opened.status_code == 409, opened.text
    yield server, keys, alice, run_id
    alice.close()


def _as(page, key: str) -> None:  # noqa: F811
    page.context.add_init_script(f"localStorage.setItem('tracklet.apiKey', {key!r})")


def test_registry_pages_show_collections_versions_history_and_card(registry, page):  # noqa: F811
    server, keys, _, run_id = registry
    _as(page, keys["bob"])
    page.goto(server.url + "/")
    page.click("a.registry-link")
    page.wait_for_selector("table.registry-collections tr[data-collection='net']")
    assert page.url == server.url + "/registry"
    row = page.locator("section[data-registry='model'] tr[data-collection='net']")
    assert row.locator("td").nth(2).text_content() == "2"  # versions
    assert row.locator("td").nth(3).text_content() == "v1"  # latest
    assert row.locator(".alias").all_text_contents() == ["production"]
    assert page.text_content("section[data-registry='model'] .role") == "your role: admin"
    assert page.text_content("a.requests-link") == "Promotion requests (1 pending)"

    row.locator("a").first.click()
    page.wait_for_selector("table.registry-versions tr[data-version='v0']")
    assert page.url == server.url + "/registry/model/net"
    versions = page.eval_on_selector_all("table.registry-versions tr[data-version]", "rows => rows.map(r => r.dataset.version)")
    assert versions == ["v1", "v0"]  # newest first
    assert page.locator("tr[data-version='v0'] .alias").all_text_contents() == ["production"]
    assert page.locator("tr[data-version='v1'] .alias").all_text_contents() == ["latest"]
    assert page.text_content("tr[data-version='v0'] .linked-by") == "alice"
    assert page.text_content(".protection[data-alias='production']") == "🔒 production: 1 approval"
    history = page.locator("table.alias-history tr[data-alias='production']")
    assert history.count() == 1 and history.locator(".move").text_content() == "– → v0"

    page.click("tr[data-version='v1'] a")
    page.wait_for_selector(".model-card pre.card-text")
    assert page.url == server.url + "/registry/model/net/v1"
    assert "# net v1\nBeats v0." in page.text_content("pre.card-text")
    assert page.text_content(".card-revision") == "revision 1 by alice"
    assert page.text_content("tr[data-field='run'] a") == f"train/{run_id}"
    source = page.text_content("tr[data-field='source'] a")
    assert source.startswith("train/") and source.endswith(":v1")
    page.click("a.lineage-link")  # to the linked artifact version's lineage: the run that produced it
    page.wait_for_selector(f"g.lineage-node[data-id='run:train/{run_id}']")
    assert page.url == server.url + f"/projects/train/artifacts/{source.split('/')[1].replace(':', '/')}/lineage"
    assert page.locator("g.lineage-node.root").get_attribute("data-id") == f"artifact:{source}"

    page.goto(server.url + "/registry/model/net/v0")  # no card yet: says how to make one
    page.wait_for_selector("p.no-card")


def test_a_registry_admin_approves_and_rejects_through_the_buttons(registry, page, browser):  # noqa: F811
    server, keys, alice, _ = registry
    (pending,) = alice.get("/api/v1/registry-requests").json()["requests"]

    # alice, the requester, sees her request without buttons.
    alice_context = browser.new_context()
    alice_context.add_init_script(f"localStorage.setItem('tracklet.apiKey', {keys['alice']!r})")
    alice_tab = alice_context.new_page()
    alice_tab.goto(server.url + "/registry/requests")
    alice_tab.wait_for_selector(f"tr[data-request='{pending['id']}']")
    assert alice_tab.locator("button.approve").count() == 0
    assert alice_tab.text_content(".cannot-review") == "your request: someone else reviews it"
    alice_context.close()

    _as(page, keys["bob"])
    page.goto(server.url + "/registry/model/net")
    request_row = page.locator(f".requests-card tr[data-request='{pending['id']}']")
    request_row.wait_for()
    assert request_row.locator(".move").text_content() == "v0 → v1"
    assert request_row.locator(".requester").text_content() == "alice"
    assert request_row.locator(".approvals").text_content() == "0/1"
    request_row.locator("input.comment").fill("metrics checked")
    request_row.locator("button.approve").click()
    page.wait_for_selector(".requests-card .no-requests")  # nothing pending any more
    page.wait_for_selector("tr[data-version='v1'] .alias[data-alias='production']")
    newest = page.locator("table.alias-history tr").nth(1)
    assert newest.locator(".move").text_content() == "v0 → v1"
    assert newest.locator(".actor").text_content() == "alice"
    assert newest.locator(".request").text_content() == f"#{pending['id']}"
    assert alice.get(NET + "/versions/production").json()["link"]["version"] == 1

    page.goto(server.url + "/registry/requests?state=approved")
    page.wait_for_selector(f"tr[data-request='{pending['id']}'][data-state='approved']")
    assert page.text_content(f"tr[data-request='{pending['id']}'] .review") == "bob: approve (“metrics checked”)"

    # A second request, rejected from the requests page: the alias stays.
    assert alice.put(NET + "/aliases/production", json={"version": "v0", "reason": "roll back"}).status_code == 409
    (second,) = alice.get("/api/v1/registry-requests").json()["requests"]
    page.goto(server.url + "/registry/requests")
    row = page.locator(f"tr[data-request='{second['id']}']")
    row.locator("input.comment").fill("v0 regressed on night images")
    row.locator("button.reject").click()
    page.wait_for_selector("p.no-requests")
    decided = alice.get("/api/v1/registry-requests", params={"state": "rejected"}).json()["requests"]
    assert [(r["id"], r["reviews"][0]["comment"]) for r in decided] == [(second["id"], "v0 regressed on night images")]
    assert alice.get(NET + "/versions/production").json()["link"]["version"] == 1


def test_a_refused_review_shows_the_servers_reason(registry, page, allowed_errors):  # noqa: F811
    """bob's approve button after another admin decided the request meanwhile: the row says why."""
    allowed_errors.append("status of 400")
    server, keys, alice, _ = registry
    (pending,) = alice.get("/api/v1/registry-requests").json()["requests"]
    _as(page, keys["bob"])
    page.goto(server.url + "/registry/requests")
    row = page.locator(f"tr[data-request='{pending['id']}']")
    row.wait_for()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['bob']}"}) as bob:
        assert bob.post(f"/api/v1/registry-requests/{pending['id']}/reviews",
                        json={"decision": "reject"}).status_code == 200
    row.locator("button.approve").click()
    page.wait_for_selector(".review-error:not([hidden])")
    assert "is rejected: it can't be reviewed (HTTP 400)" in page.text_content(".review-error")
