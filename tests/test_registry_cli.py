"""``tracklet registry ...`` (tracklet/cli/registry.py) over a data root and over a server, and
model cards generated from lineage (tracklet/registry/cards.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import QUIET
from test_cli import assert_clean_error, invoke

import tracklet
from tracklet.errors import AliasMoved, RegistryError
from tracklet.registry.cards import front_matter


def _train(root: Path, tmp_path: Path, weights: bytes, accuracy: float, project: str = "train") -> str:
    """A run that uses a dataset and logs a model; returns the model's artifact reference."""
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n")
    model = tmp_path / "model.pt"
    model.write_bytes(weights)
    run = tracklet.init(project=project, dir=str(root), config={"lr": 0.01, "layers": 4}, settings=QUIET)
    dataset = run.log_artifact(data, name="mnist-data", type="dataset")
    dataset.wait()
    run.use_artifact("mnist-data:latest")
    run.use_artifact("mnist-data:v0")  # the same version again, by another name: one input of the card
    run.log({"accuracy": accuracy})
    artifact = run.log_artifact(model, name="mnist-cnn", type="model")
    artifact.wait()
    run.finish()
    return artifact.qualified_name


def test_link_alias_history_and_ls_from_the_command_line(root, tmp_path):
    first = _train(root, tmp_path, b"one", 0.9)
    second = _train(root, tmp_path, b"two", 0.95)
    linked = invoke(root, "registry", "link", first, "model/mnist", "-a", "staging", "--reason", "first cut")
    assert linked.exit_code == 0, linked.output
    assert linked.output.strip() == "train/mnist-cnn:v0 -> model/mnist:v0  latest,staging"
    assert invoke(root, "registry", "link", second, "model/mnist").exit_code == 0
    moved = invoke(root, "registry", "alias", "model/mnist", "production", "v1", "--reason", "beats v0",
                   env={"TRACKLET_ACTOR": "alice"})
    assert "production: - -> v1  by alice  (beats v0)" in moved.output
    invoke(root, "registry", "alias", "mnist", "staging", "latest", env={"TRACKLET_ACTOR": "bob"})

    history = invoke(root, "registry", "history", "model/mnist", "--json")
    events = [json.loads(line) for line in history.output.splitlines()]
    assert [(e["alias"], e["from_version"], e["to_version"]) for e in events] == [
        ("staging", None, 0), ("production", None, 1), ("staging", 0, 1)]
    assert [e["actor"] for e in events[1:]] == ["alice", "bob"] and events[0]["reason"] == "first cut"
    only = invoke(root, "registry", "history", "model/mnist:production")
    assert len(only.output.splitlines()) == 1 and "production: - -> v1" in only.output

    listed = invoke(root, "registry", "ls")
    assert listed.output.strip() == ("model/mnist  type=model  versions=2  latest=v1  production=v1 staging=v1")
    versions = invoke(root, "registry", "ls", "model/mnist").output.splitlines()
    assert [line.split()[:2] for line in versions] == [["v0", "train/mnist-cnn:v0"], ["v1", "train/mnist-cnn:v1"]]
    assert_clean_error(invoke(root, "registry", "alias", "model/mnist", "production", "v7"),
                       "has no version v7")
    assert_clean_error(invoke(root, "registry", "history", "model/nothing"), "no registry collection model/nothing")
    # a registry, collection or alias that doesn't exist is named, not an empty listing or a race
    assert_clean_error(invoke(root, "registry", "ls", "modle"), "no registry 'modle'", "(registries: model)")
    assert_clean_error(invoke(root, "registry", "protections", "model/nothing"), "no registry collection model/nothing")
    assert_clean_error(invoke(root, "registry", "alias", "model/mnist", "canary", "v1", "--remove"),
                       "alias 'canary' of model/mnist names no version, not v1: it was never set")


def test_a_generated_model_card_holds_the_lineage_and_edits_are_revisions(root, tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    reference = _train(root, tmp_path, b"weights", 0.97)
    invoke(root, "registry", "link", reference, "model/mnist")
    generated = invoke(root, "registry", "card", "model/mnist:v0", "--generate", "--save")
    assert generated.exit_code == 0, generated.output
    facts = front_matter(generated.stdout)
    api = tracklet.Api(root)
    model = api.artifact("models:/mnist/0")
    dataset = api.artifact("train/mnist-data:v0")
    assert facts["model"] == "model/mnist" and facts["version"] == "v0"
    assert facts["artifact"] == "train/mnist-cnn:v0" and facts["digest"] == model.digest
    assert facts["config"] == {"layers": 4, "lr": 0.01} and facts["metrics"] == {"accuracy": 0.97}
    assert facts["inputs"] == [{"artifact": "train/mnist-data:v0", "type": "dataset", "digest": dataset.digest}]
    assert facts["run"]["path"] == model.logged_by().path and "python" in facts["environment"]
    assert "git_commit" in facts
    assert "| accuracy | 0.97 |" in generated.stdout

    edited = tmp_path / "card.md"
    edited.write_text(generated.stdout.replace("_Describe what this model is for", "Digit recognition. _Describe"))
    assert invoke(root, "registry", "card", "model/mnist:v0", "--file", str(edited)).exit_code == 0
    assert "Digit recognition." in invoke(root, "registry", "card", "model/mnist").stdout
    assert "Digit recognition." not in invoke(root, "registry", "card", "model/mnist", "--revision", "1").stdout
    assert [card.revision for card in api.registry.card_revisions("model", "mnist", 0)] == [1, 2]
    assert_clean_error(invoke(root, "registry", "card", "model/mnist", "--revision", "9"), "has no card revision 9")


def test_the_command_line_reads_and_moves_a_servers_registry(servers, tmp_path, monkeypatch):
    server = servers(tmp_path / "server")
    run = tracklet.init(project="train", dir=str(tmp_path / "writer"), mode="online", config={"lr": 0.1},
                        settings={**QUIET, "base_url": server.url})
    model = tmp_path / "model.pt"
    model.write_bytes(b"w")
    run.log({"accuracy": 0.5})
    run.link_model(model, registered_model_name="mnist")
    run.finish()
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "reader"))
    reader = tmp_path / "reader"
    moved = invoke(reader, "registry", "--url", server.url, "alias", "model/mnist", "production", "v0")
    assert moved.exit_code == 0, moved.output
    history = invoke(reader, "registry", "--url", server.url, "history", "model/mnist")
    assert "production: - -> v0  by dev" in history.output
    assert "latest=v0  production=v0" in invoke(reader, "registry", "--url", server.url, "ls").output
    # A card generated on another machine finds the producing run on the server.
    generated = invoke(reader, "registry", "--url", server.url, "card", "model/mnist", "--generate", "--save")
    facts = front_matter(generated.stdout)
    assert facts["run"]["path"] == run.path and facts["config"] == {"lr": 0.1}
    assert facts["metrics"] == {"accuracy": 0.5} and facts["inputs"] is None
    shown = invoke(reader, "registry", "--url", server.url, "card", "models:/mnist/0")
    assert front_matter(shown.stdout) == facts
    assert not (reader / "artifacts" / "registry.sqlite").exists()  # nothing local was written

    # Removing an alias is conditional on the version the caller read: a stale client (it read
    # production on v1; it names v0 now) removes nothing, in Python and from the command line.
    with tracklet.Api(base_url=server.url) as api:
        with pytest.raises(RegistryError, match="name the version you read it on"):
            api.registry.remove_alias("model", "mnist", "production")
        with pytest.raises(AliasMoved, match=r"'production' of model/mnist names v0 now, not v1 as read"):
            api.registry.remove_alias("model", "mnist", "production", expected=1)
        assert api.registry.resolve("model", "mnist", "production").version == 0
    assert_clean_error(invoke(reader, "registry", "--url", server.url, "alias", "model/mnist", "production", "v1",
                              "--remove"), "names v0 now, not v1 as read")
    removed = invoke(reader, "registry", "--url", server.url, "alias", "model/mnist", "production", "v0", "--remove")
    assert "production: v0 -> -" in removed.output, removed.output
    invoke(reader, "registry", "--url", server.url, "alias", "model/mnist", "staging", "v0")
    gone = invoke(reader, "registry", "--url", server.url, "alias", "model/mnist", "staging", "--remove")
    assert "staging: v0 -> -" in gone.output, gone.output  # explicit, without a version: wherever it points
    assert "production" not in invoke(reader, "registry", "--url", server.url, "ls").output


def test_a_registered_version_is_not_deleted_without_force(root, tmp_path):
    reference = _train(root, tmp_path, b"weights", 0.9)
    invoke(root, "registry", "link", reference, "model/mnist", "-a", "production")
    assert_clean_error(invoke(root, "artifact", "rm", reference), "is registered as model/mnist:v0",
                       "--force deletes it anyway")
    assert tracklet.Api(root).artifact("models:/mnist@production").source_qualified_name == reference
    deleted = invoke(root, "artifact", "rm", reference, "--force")
    assert "registry versions left without files: model/mnist:v0" in deleted.output
    assert_clean_error(invoke(root, "registry", "card", "models:/mnist@production", "--generate"),
                       "model/mnist:v0 links train/mnist-cnn:v0, which was deleted")


def test_registry_roles_and_a_webhook_check_from_the_command_line(servers, tmp_path, monkeypatch):
    """``tracklet registry --url U members`` lists, gives and takes registry roles, ``protect
    --check`` names a webhook automation; both are a server's only."""
    import httpx

    from tracklet.server.auth import Accounts
    from tracklet.store import Store

    store = Store(f"sqlite:///{tmp_path / 'server' / 'store.sqlite'}", root=tmp_path / "server")
    keys = {name: Accounts(store).create_user(name, admin=name == "root").key for name in ("root", "alice", "bob")}
    store.close()
    server = servers(tmp_path / "server", dev=False)
    run = tracklet.init(project="train", dir=str(tmp_path / "alice"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": keys["alice"]})
    model = tmp_path / "model.pt"
    model.write_bytes(b"w")
    run.link_model(model, registered_model_name="net")  # alice: the `model` registry's admin
    run.finish()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['root']}"}) as root:
        rule = root.post("/api/v1/automations", json={"name": "gate", "event": "promotion.check",
                                                      "url": "http://127.0.0.1:9/gate"}).json()
    here = tmp_path / "cli"
    monkeypatch.setenv("TRACKLET_API_KEY", keys["alice"])
    given = invoke(here, "registry", "--url", server.url, "members", "model", "bob", "member")
    assert given.exit_code == 0, given.output
    assert given.output.splitlines() == ["alice\tadmin", "bob\tmember"]
    assert invoke(here, "registry", "--url", server.url, "members", "model").output.splitlines() == [
        "alice\tadmin", "bob\tmember"]
    protected = invoke(here, "registry", "--url", server.url, "protect", "model/net", "production", "--check",
                       str(rule["id"]))
    assert protected.exit_code == 0, protected.output
    assert protected.output.strip() == f"model/net:production needs 1 approval(s) by the admin role or a higher one to move and automation #{rule['id']}'s check"
    monkeypatch.setenv("TRACKLET_API_KEY", keys["bob"])  # a member: no admin's rights
    refused = invoke(here, "registry", "--url", server.url, "members", "model", "bob", "admin")
    assert refused.exit_code == 2 and "needs the admin role in registry 'model'" in refused.output
    monkeypatch.setenv("TRACKLET_API_KEY", keys["alice"])
    taken = invoke(here, "registry", "--url", server.url, "members", "model", "bob", "--remove")
    assert taken.output.splitlines() == ["alice\tadmin"]
    local = invoke(here, "registry", "protect", "model/net", "production", "--check", "1")
    assert_clean_error(local, "--check needs a server's registry (--url)")
