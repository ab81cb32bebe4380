"""The model registry pages in a real headless Chromium (test_dashboard.py's browser and page
fixtures) against a real `tracklet server` with API keys: collections, versions with aliases, the
alias history, a model card, the registered model's lineage graph (registry version -> artifact
version -> producing run -> its dataset version and code commit), promotion requests approved and
rejected through the buttons by a registry admin other than the requester (whose own view has no
buttons), and a registry admin managing roles and protected aliases (others get no controls)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import serverproc
from conftest import QUIET
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
    made = serverproc.cli("admin", "--dir", str(root), "create-user", "root", "--admin", timeout=60)
    assert made.returncode == 0, made.stderr
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
    assert page.text_content(".protection[data-alias='production']") == "🔒 production: 1 approval by admins"
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
    page.click("a.lineage-link")  # the registered model's lineage: the version it links, the run that produced it
    page.wait_for_selector(f"g.lineage-node[data-id='run:train/{run_id}']")
    assert page.url == server.url + "/registry/model/net/v1/lineage"
    assert page.locator("g.lineage-node.root").get_attribute("data-id") == "registry:model/net:v1"
    assert page.locator(f"path.lineage-edge[data-source='artifact:{source}'][data-target='registry:model/net:v1']"
                        "[data-kind='linked']").count() == 1

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


def _git_repo(directory: Path) -> str:
    """A git repository with one commit; its sha."""
    directory.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    for args in (["init", "-q", "-b", "main"], ["add", "train.py"], ["commit", "-q", "-m", "train"]):
        if args[0] == "add":
            (directory / "train.py").write_text("print('train')\n")
        subprocess.run(["git", *args], cwd=directory, env=env, check=True, capture_output=True, timeout=60)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def test_the_lineage_graph_goes_from_a_registered_model_to_its_dataset_and_code(
        servers, tmp_path, page, monkeypatch):  # noqa: F811
    """Several hops from the registry version: model/net:v0 <- the model artifact version <- the
    training run <- the dataset version it used (<- the run that logged it) and the commit it ran."""
    server = servers(tmp_path / "server")
    sha = _git_repo(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    online = {"base_url": server.url, "console": "off", "system_metrics": False}
    prepare = tracklet.init(project="data", dir=str(tmp_path / "client"), mode="online", settings={**QUIET, **online})
    dataset = tracklet.Artifact("mnist", type="dataset")
    (tmp_path / "images.bin").write_bytes(b"pixels")
    dataset.add_file(str(tmp_path / "images.bin"))
    prepare.log_artifact(dataset).wait()
    prepare_id = prepare.id
    prepare.finish()
    train = tracklet.init(project="train", dir=str(tmp_path / "client"), mode="online",
                          settings={**online, "capture_environment": True, "capture_wait": 60})
    train.use_artifact("data/mnist:latest")
    (tmp_path / "model.pt").write_bytes(b"weights")
    train.link_model(tmp_path / "model.pt", registered_model_name="net", aliases=["production"])
    train_id = train.id
    train.finish()

    graph = httpx.get(server.url + NET + "/versions/production/lineage", params={"hops": 3}).json()
    kinds = {node["id"]: node["kind"] for node in graph["nodes"]}
    edges = {(edge["source"], edge["target"], edge["kind"]) for edge in graph["edges"]}
    assert graph["root"] == "registry:model/net:v0"
    model_node = next(i for i, k in kinds.items() if k == "artifact" and i.startswith("artifact:train/"))
    assert {(model_node, "registry:model/net:v0", "linked"), (f"run:train/{train_id}", model_node, "logged"),
            ("artifact:data/mnist:v0", f"run:train/{train_id}", "used"),
            (f"run:data/{prepare_id}", "artifact:data/mnist:v0", "logged"),
            (f"commit:{sha}", f"run:train/{train_id}", "code")} <= edges
    assert kinds[f"commit:{sha}"] == "commit"

    page.goto(server.url + "/registry/model/net/v0")
    page.click("a.lineage-link")
    page.wait_for_selector(f"g.lineage-node.commit[data-id='commit:{sha}']")
    assert page.url == server.url + "/registry/model/net/v0/lineage"
    for node_id in ("registry:model/net:v0", model_node, f"run:train/{train_id}", "artifact:data/mnist:v0",
                    f"run:data/{prepare_id}"):
        assert page.locator(f"g.lineage-node[data-id='{node_id}']").count() == 1, node_id
    assert page.text_content(f"g.lineage-node[data-id='commit:{sha}'] text.title") == f"commit {sha[:12]}"
    assert "main" in page.text_content(f"g.lineage-node[data-id='commit:{sha}'] text.subtitle")
    # Data flows left to right: the dataset's layer before the run's, the run's before the registry version's.
    layer = {node_id: int(page.get_attribute(f"g.lineage-node[data-id='{node_id}']", "data-layer"))
             for node_id in ("artifact:data/mnist:v0", f"run:train/{train_id}", "registry:model/net:v0")}
    assert layer["artifact:data/mnist:v0"] < layer[f"run:train/{train_id}"] < layer["registry:model/net:v0"]
    assert page.text_content(".lineage-count") == "2 runs, 2 artifact versions, 1 commits, 5 edges"
    page.select_option("select.hops", "1")  # one hop from the model version: the training run, not its inputs
    page.wait_for_selector("g.lineage-node[data-id='artifact:data/mnist:v0']", state="detached")
    # the graph is drawn again: wait for the new drawing's commit node, not the instant between two drawings
    page.wait_for_selector(f"g.lineage-node.commit[data-id='commit:{sha}']")
    assert page.locator(f"g.lineage-node[data-id='commit:{sha}']").count() == 1
    assert page.locator("g.lineage-node[data-id='artifact:data/mnist:v0']").count() == 0


def test_a_registry_admin_manages_roles_and_protections_and_others_get_no_controls(
        registry, page, browser, allowed_errors):  # noqa: F811
    server, keys, alice, _ = registry
    _as(page, keys["bob"])  # bob: a registry admin
    page.goto(server.url + "/registry")
    members = page.locator("details.registry-members[data-registry='model']")
    members.locator("summary").click()
    alice_row = members.locator("tr[data-member='alice']")
    alice_row.wait_for()
    assert alice_row.locator("select.role-select").input_value() == "admin"
    alice_row.locator("select.role-select").select_option("member")
    page.wait_for_function("() => document.querySelector(\"tr[data-member='alice'] select\").value === 'member'"
                           " && !document.querySelector(\"tr[data-member='alice'] select\").disabled")
    roles = {m["user"]: m["role"] for m in alice.get("/api/v1/registries/model/members").json()["members"]}
    assert roles == {"alice": "member", "bob": "admin"}

    page.goto(server.url + "/registry/model/net")
    panel = page.locator(".protections-card")
    panel.wait_for()
    production = panel.locator("tr[data-alias='production']")
    assert production.locator("input.approvals").input_value() == "1"
    production.locator("input.approvals").fill("2")
    production.locator("button.save-protection").click()
    page.wait_for_selector(".protection[data-alias='production']:text('2 approvals')")
    new = panel.locator("tr.new-protection")
    new.locator("input.alias-name").fill("staging")
    new.locator("button.save-protection").click()
    page.wait_for_selector(".protection[data-alias='staging']")
    protections = alice.get(NET + "/protections").json()["protections"]
    assert [(p["alias"], p["approvals"]) for p in protections] == [("production", 2), ("staging", 1)]
    # A refused change says why: a check needs a webhook automation that exists.
    allowed_errors.append("status of 400")
    staging = page.locator(".protections-card tr[data-alias='staging']")
    staging.locator("input.check").fill("999")
    staging.locator("button.save-protection").click()
    page.wait_for_selector(".protect-error:not([hidden])")
    assert "no automation #999 to check promotions with (HTTP 400)" in page.text_content(".protect-error")

    # alice is a member now: no members editor, no protection controls; the server refuses her too.
    alice_context = browser.new_context()
    alice_context.add_init_script(f"localStorage.setItem('tracklet.apiKey', {keys['alice']!r})")
    alice_tab = alice_context.new_page()
    alice_tab.goto(server.url + "/registry")
    alice_tab.wait_for_selector("section[data-registry='model'] .role:text('your role: member')")
    assert alice_tab.locator("details.registry-members").count() == 0
    alice_tab.goto(server.url + "/registry/model/net")
    alice_tab.wait_for_selector("table.registry-versions")
    assert alice_tab.locator(".protections-card").count() == 0
    assert alice_tab.locator(".protection[data-alias='production']").count() == 1  # she still sees them
    alice_context.close()
    assert alice.put(NET + "/protections/production", json={"approvals": 0}).status_code == 403
    assert alice.put("/api/v1/registries/model/members/alice", json={"role": "admin"}).status_code == 403
    assert alice.delete("/api/v1/registries/model/members/bob").status_code == 403


def test_an_admin_lets_members_approve_and_a_member_approves_through_the_buttons(registry, page):  # noqa: F811
    """bob (a registry admin) sets production's approver role to member in the protections
    editor; made a member, he still gets the buttons and his approval moves the alias."""
    server, keys, alice, _ = registry
    (pending,) = alice.get("/api/v1/registry-requests").json()["requests"]
    _as(page, keys["bob"])
    page.goto(server.url + "/registry/model/net")
    production = page.locator(".protections-card tr[data-alias='production']")
    production.wait_for()
    assert production.locator("select.approver-role").input_value() == "admin"
    production.locator("select.approver-role").select_option("member")
    production.locator("button.save-protection").click()
    page.wait_for_selector(".protection[data-alias='production']:text('1 approval by members')")
    (policy,) = alice.get(NET + "/protections").json()["protections"]
    assert policy["approver_role"] == "member"

    assert alice.put("/api/v1/registries/model/members/bob", json={"role": "member"}).status_code == 200
    page.goto(server.url + "/registry/requests")
    row = page.locator(f"tr[data-request='{pending['id']}']")
    row.wait_for()
    assert row.locator(".approvals").get_attribute("title") == "approvals from the member role or higher"
    row.locator("input.comment").fill("a member's review")
    row.locator("button.approve").click()
    page.wait_for_selector(f"tr[data-request='{pending['id']}'][data-state='approved'], .no-requests")
    assert alice.get(NET + "/versions/production").json()["link"]["version"] == 1
    (review,) = alice.get("/api/v1/registry-requests", params={"state": "approved"}).json()["requests"][0]["reviews"]
    assert (review["reviewer"], review["comment"]) == ("bob", "a member's review")


def test_a_registry_version_whose_artifact_was_deleted_shows_files_deleted(registry, page):  # noqa: F811
    """A registry member deleted the artifact version v1 links (``break_registry_links``): its page
    still shows the link, its aliases and card, and says its files were deleted (no blank page); its
    lineage page still draws the graph, the deleted version dashed and marked, with the run that
    logged it."""
    server, keys, alice, run_id = registry
    source = alice.get(NET + "/versions/v1").json()["link"]
    # The promotion request pending on v1 keeps it (as from an unlink): bob, an admin, rejects it first.
    (request,) = alice.get("/api/v1/registry-requests", params={"state": "pending"}).json()["requests"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['bob']}"}) as bob:
        assert bob.post(f"/api/v1/registry-requests/{request['id']}/reviews",
                        json={"decision": "reject", "comment": "v1 goes"}).status_code == 200
    deleted = alice.delete(f"/api/v1/projects/train/artifacts/{source['source_name']}/versions/v{source['source_version']}",
                           params={"break_registry_links": "true"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["registry_links_broken"] == ["model/net:v1"]
    _as(page, keys["bob"])
    page.goto(server.url + "/registry/model/net/v1")
    page.wait_for_selector("tr[data-field='files-deleted']")
    assert page.text_content("tr[data-field='files-deleted'] .files-deleted") == (
        f"deleted: {source['source']} was deleted, so this version has no files")
    assert page.text_content("tr[data-field='source'] a") == source["source"]
    assert "# net v1\nBeats v0." in page.text_content("pre.card-text")  # the registry keeps its card
    assert page.text_content("tr[data-field='run']").endswith("–")

    page.goto(server.url + "/registry/model/net/v1/lineage")
    deleted_id = f"artifact:train/{source['source_name']}:v{source['source_version']}"
    page.wait_for_selector(f"g.lineage-node.deleted[data-id='{deleted_id}']")
    assert page.get_attribute(f"g.lineage-node[data-id='{deleted_id}']", "data-deleted") == "true"
    assert page.text_content(f"g.lineage-node[data-id='{deleted_id}'] text.subtitle") == "files deleted · model"
    assert page.locator(f"g.lineage-node.run[data-id='run:train/{run_id}']").count() == 1  # who logged it
    assert page.locator("g.lineage-node.registry[data-id='registry:model/net:v1']").count() == 1
    assert page.text_content(".toolbar .files-deleted") == (
        f"{source['source']} was deleted: this version has no files; the runs that logged and used it are still shown.")
    # The run's other version (v0's) is whole: drawn as any other.
    assert page.locator("g.lineage-node.deleted").count() == 1
