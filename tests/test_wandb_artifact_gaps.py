"""The W&B Artifact calls a script moving from wandb still missed: ``artifact.collection``,
``checkout(root=)``, ``url``, ``history_step`` (and the cheap ones beside them), W&B's exception
for ``use_artifact(name, type=<another type>)``, and ``wandb.Api()`` reading the server at
``$TRACKLET_BASE_URL``. An unmodified W&B-style script runs under ``tracklet run --wandb``, against
the data root and against a real server process with API keys; the real ``wandb`` package, where
installed, is read side by side for the names and the exception's shape.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from conftest import REPO
from serverproc import keyed_deployment

import tracklet
from tracklet.errors import ArtifactError, ArtifactNotFound, ArtifactTypeMismatch

QUIET_ENV = {"TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false", "TRACKLET_SYSTEM_METRICS": "false"}

# A script as W&B's artifact guides write it; only the checks are printed (one JSON line).
SCRIPT = """
import json, os, sys
import wandb

assert getattr(wandb, "_tracklet_compat", False), "import wandb must be tracklet's here"
os.makedirs("data/images", exist_ok=True)
with open("data/images/a.bin", "wb") as f:
    f.write(b"image")
with open("data/labels.csv", "w") as f:
    f.write("label,1\\n")

with wandb.init(project="gaps", job_type="dataset") as run:
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    dataset = wandb.Artifact("mnist", type="dataset", description="digits")
    dataset.add_dir("data")
    dataset["samples"] = wandb.Table(columns=["id", "label"], data=[[1, "one"], [2, "two"]])
    run.log_artifact(dataset)
    dataset.wait()
    logged = {"history_step": dataset.history_step, "url": dataset.url, "collection": dataset.collection.name,
              "collection_type": dataset.collection.type,
              "versions": [v.version for v in dataset.collection.artifacts()]}

with wandb.init(project="gaps", job_type="train") as run:
    artifact = run.use_artifact("mnist:latest")
    os.makedirs("checkout", exist_ok=True)
    with open("checkout/stale.txt", "w") as f:
        f.write("from an older version")
    with open("checkout/labels.csv", "w") as f:
        f.write("label,1\\n")  # as the version has it: the directory is the artifact's
    os.makedirs("checkout/images", exist_ok=True)
    with open("checkout/images/a.bin", "w") as f:
        f.write("edited by hand")
    path = artifact.checkout("checkout")
    files = sorted(os.path.relpath(os.path.join(b, n), path) for b, _, names in os.walk(path) for n in names)
    try:
        run.use_artifact("mnist:latest", type="model")
        mismatch = None
    except ValueError as error:
        mismatch = [type(error).__name__, str(error)]
    table = artifact["samples"]

api = wandb.Api()
read = api.artifact("gaps/mnist:latest")
try:
    api.artifact("gaps/mnist:latest", type="model")
    api_mismatch = None
except wandb.errors.CommError as error:
    api_mismatch = [str(error), type(error.exc).__name__]
print(json.dumps({
    "logged": logged, "files": files, "labels": open(os.path.join(path, "labels.csv")).read(),
    "a_bin": open(os.path.join(path, "images", "a.bin")).read(),
    "mismatch": mismatch, "api_mismatch": api_mismatch, "table": [table.columns, table.data],
    "read": {"name": read.name, "url": read.url, "history_step": read.history_step,
             "collection": [read.collection.name, read.collection.project, [v.version for v in read.collection.artifacts()]],
             "source_collection": read.source_collection.name, "source_project": read.source_project,
             "linked_at": read.linked_at, "is_draft": read.is_draft(), "file_count": read.file_count},
    "runs": [r.job_type for r in api.runs("gaps")],
}))
"""


def _run_script(tmp_path: Path, env: dict[str, str]) -> dict:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "train.py").write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, "train.py"],
                          capture_output=True, text=True, timeout=300, cwd=work,
                          env={**os.environ, "PYTHONPATH": str(REPO), **QUIET_ENV, **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_common(found: dict) -> None:
    assert found["logged"]["history_step"] == 2  # three rows (steps 0..2) before log_artifact, W&B's count
    assert found["logged"]["collection"] == "mnist" and found["logged"]["collection_type"] == "dataset"
    assert found["logged"]["versions"] == ["v0"]
    # checkout: the stale file is gone, the edited one is the version's again, the rest downloaded
    assert found["files"] == ["images/a.bin", "labels.csv", "samples.table.json"]
    assert found["labels"] == "label,1\n" and found["a_bin"] == "image"  # the edited file is the version's again
    assert found["mismatch"] == ["ArtifactTypeMismatch",
                                 "type 'model' specified but this artifact is of type 'dataset' (gaps/mnist:v0)"]
    assert found["api_mismatch"] == ["type 'model' specified but this artifact is of type 'dataset' "
                                     "(gaps/mnist:v0)", "ArtifactTypeMismatch"]
    assert found["table"] == [["id", "label"], [[1, "one"], [2, "two"]]]
    read = found["read"]
    assert read["name"] == "mnist:v0" and read["source_collection"] == "mnist" and read["source_project"] == "gaps"
    assert read["collection"] == ["mnist", "gaps", ["v0"]]
    assert read["linked_at"] is None and read["is_draft"] is False and read["file_count"] == 3
    assert sorted(found["runs"]) == ["dataset", "train"]


def test_an_unmodified_wandb_artifact_script_against_the_data_root(root, tmp_path):
    found = _run_script(tmp_path, {"TRACKLET_DIR": str(root)})
    _check_common(found)
    assert found["logged"]["url"] == found["read"]["url"] == "http://127.0.0.1:8765/projects/gaps/artifacts/mnist/v0"
    assert found["read"]["history_step"] == 2  # kept with the version
    assert tracklet.Api(root).artifact("gaps/mnist:v0").history_step == 2


def test_the_same_script_online_reads_back_from_the_server_at_tracklet_base_url(root, tmp_path, servers,
                                                                                monkeypatch):
    """``wandb.Api()`` reads the server at ``$TRACKLET_BASE_URL`` with ``$TRACKLET_API_KEY`` (it read
    the data root before, so the script's own read-back found its local copies, never the team's)."""
    server, admin, keys = keyed_deployment(servers, tmp_path / "server", None, ["alice"])
    admin.close()
    writer = tmp_path / "writer"
    found = _run_script(tmp_path, {"TRACKLET_DIR": str(writer), "TRACKLET_MODE": "online",
                                   "TRACKLET_BASE_URL": server.url, "TRACKLET_API_KEY": keys["alice"]})
    _check_common(found)
    page = f"{server.url}/projects/gaps/artifacts/mnist/v0"
    assert found["logged"]["url"] == found["read"]["url"] == page  # the server's page, uploaded or read there
    assert found["read"]["history_step"] == 2  # the server keeps it too (migration s0017)
    assert httpx.get(page, timeout=30).status_code == 200  # a dashboard route the server answers

    import tracklet.compat.wandb as wandb
    from tracklet.api.remote import RemoteApi

    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    monkeypatch.setenv("TRACKLET_API_KEY", keys["alice"])
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "elsewhere"))  # another machine: an empty data root
    api = wandb.Api()
    assert isinstance(api.tracklet_api, RemoteApi)
    assert sorted(run.job_type for run in api.runs("gaps")) == ["dataset", "train"]
    version = api.artifact("gaps/mnist:latest")
    assert version.url == page and [v.version for v in version.collection.versions()] == ["v0"]
    assert api.artifact_collection("dataset", "gaps/mnist").name == "mnist"
    # overrides={"root": ...} (None: the default one) still reads a data root
    assert wandb.Api(overrides={"root": str(writer)}).artifact("gaps/mnist:v0").history_step == 2
    assert wandb.Api(overrides={"root": None}).runs("gaps") == []
    api.tracklet_api.close()
    # A key the server doesn't know is refused there, not answered from the data root.
    monkeypatch.setenv("TRACKLET_API_KEY", "tk_not_a_key")
    refused = wandb.Api()
    with pytest.raises(tracklet.errors.RemoteError, match="HTTP 401"):
        refused.runs("gaps")
    refused.tracklet_api.close()


def test_attribute_names_are_wandbs_and_the_type_mismatch_has_its_shape(tmp_path):
    """Every name this module's script and tests use exists on the real ``wandb.Artifact`` (none is
    invented), and W&B's own source still raises ``ValueError`` with the message matched above."""
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("the real wandb package is not installed")
    probe = textwrap.dedent("""
        import inspect, json
        import wandb
        from wandb.apis.public import api, ArtifactCollection
        assert not getattr(wandb, "_tracklet_compat", False)
        print(json.dumps({"artifact": dir(wandb.Artifact), "collection": dir(ArtifactCollection),
                          "source": inspect.getsource(api.Api._artifact)}))
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**env, "WANDB_SILENT": "true", "WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-3000:]
    real = json.loads(done.stdout.strip().splitlines()[-1])
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb.apis._artifact_lists import ArtifactCollection

    ours = wandb.Artifact("x", type="dataset")
    names = ["collection", "source_collection", "checkout", "url", "history_step", "qualified_name", "source_name",
             "source_project", "source_entity", "source_artifact", "source_qualified_name", "source_version",
             "created_at", "updated_at", "linked_at", "ttl", "get_entry", "get_path", "get", "add", "file", "link",
             "unlink", "delete", "is_draft", "state", "size", "file_count", "digest", "manifest", "metadata",
             "description", "aliases", "version", "files", "download", "verify", "logged_by", "used_by", "save",
             "wait", "new_draft", "incremental", "use_as", "is_link", "id", "entity", "__getitem__", "__setitem__"]
    assert [name for name in names if name not in real["artifact"]] == []
    assert [name for name in names if not hasattr(type(ours), name) and name not in vars(ours)] == []
    assert [name for name in ["name", "type", "project", "entity", "aliases", "artifacts", "is_sequence",
                              "id", "description", "tags", "created_at", "load"] if name not in real["collection"]] == []
    collection = ArtifactCollection(None, "p", "ds", "dataset")
    assert [name for name in ["name", "type", "project", "entity", "aliases", "versions", "artifacts", "is_sequence",
                              "id", "description", "tags", "created_at", "load"]
            if not hasattr(ArtifactCollection, name) and name not in vars(collection)] == []
    assert "raise ValueError(msg)" in real["source"]
    assert 'f"type {type!r} specified but this artifact is of type {artifact.type!r}"' in real["source"]


# ------------------------------------------------------------------ checkout's safety


def _logged(start, tmp_path: Path, files: dict[str, str], name: str = "ds") -> tracklet.Artifact:
    artifact = tracklet.Artifact(name, type="dataset")
    for path, text in files.items():
        with artifact.new_file(path) as handle:
            handle.write(text)
    run = start()
    run.log_artifact(artifact).wait()
    run.finish()
    return artifact


def _tree(root: Path) -> dict[str, str]:
    """Every file and link under ``root``: a file's text (bytes it can't decode as ``repr``), a link's target."""
    def content(path: Path) -> str:
        if path.is_symlink():
            return f"-> {os.readlink(path)}"
        data = path.read_bytes()
        try:
            return data.decode()
        except UnicodeDecodeError:
            return repr(data)

    return {p.relative_to(root).as_posix(): content(p) for p in sorted(root.rglob("*")) if p.is_symlink() or p.is_file()}


def test_checkout_removes_only_what_is_under_root_and_not_in_the_version(start, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    artifact = _logged(start, tmp_path, {"a.txt": "a", "sub/b.txt": "b", "c.txt": "c", "d.txt": "d", "e.txt": "e"})
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "keep.txt").write_text("keep")
    (outside / "dir" / "inner.txt").write_text("inner")
    co = tmp_path / "co"
    (co / "sub" / "old").mkdir(parents=True)
    (co / "a.txt").write_text("edited")
    (co / "c.txt").write_text("c")  # one file as the version has it: the directory is the artifact's
    (co / "d.txt").write_text("d")  # and most of its entries are at the version's paths (5 of 9)
    (co / "e.txt").write_text("edited")
    (co / "stale.txt").write_text("stale")
    (co / "sub" / "old" / "gone.txt").write_text("gone")
    (co / "file-link").symlink_to(outside / "keep.txt")
    (co / "dir-link").symlink_to(outside / "dir")
    (co / "sub" / "b.txt").symlink_to(outside / "keep.txt")  # a link where the version has a file

    assert artifact.checkout(co) == str(co)
    assert _tree(co) == {"a.txt": "a", "sub/b.txt": "b", "c.txt": "c", "d.txt": "d", "e.txt": "e"}
    assert not (co / "sub" / "old").exists()  # left empty: removed
    assert _tree(outside) == {"dir/inner.txt": "inner", "keep.txt": "keep"}  # links removed, never followed
    artifact.verify(co)

    assert artifact.checkout() == os.path.join("artifacts", "ds")  # W&B's default: no version in the name
    assert _tree(tmp_path / "artifacts" / "ds") == {"a.txt": "a", "sub/b.txt": "b", "c.txt": "c", "d.txt": "d",
                                                     "e.txt": "e"}


def test_checkout_refuses_a_project_that_only_shares_a_file_name_with_the_version(start, tmp_path, monkeypatch):
    """A README.md (config.json, __init__.py) at a path the version names is no evidence that a
    directory is the artifact's: the project's other files were removed."""
    monkeypatch.chdir(tmp_path)
    artifact = _logged(start, tmp_path, {"README.md": "model card", "weights.bin": "w"})
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "README.md").write_text("my project")
    (project / "src" / "train.py").write_text("print(1)")
    before = _tree(project)
    with pytest.raises(ArtifactError, match="refused: .*nothing was removed"):
        artifact.checkout(project)
    assert _tree(project) == before


def test_checkout_refuses_a_project_whose_only_match_is_an_empty_file(start, tmp_path, monkeypatch):
    """An empty file at a path the version names (``pkg/__init__.py``, ``.gitkeep``) has the
    version's content, and every project's: it is no evidence either (the thesis was removed)."""
    monkeypatch.chdir(tmp_path)
    artifact = _logged(start, tmp_path, {"pkg/__init__.py": "", "model.txt": "w"})
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "thesis.tex").write_text("three years of work")
    before = _tree(project)
    with pytest.raises(ArtifactError, match="refused: .*nothing was removed"):
        artifact.checkout(project)
    assert _tree(project) == before


APACHE = "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n" * 40


def test_checkout_refuses_a_project_that_shares_a_stock_file_with_the_version(start, tmp_path, monkeypatch):
    """A file many projects hold byte for byte (the Apache-2.0 LICENSE, a default .gitignore) has
    the version's content at the version's path, and is still no evidence: the project's other
    files would be removed. The error says why and what to do."""
    monkeypatch.chdir(tmp_path)
    artifact = _logged(start, tmp_path, {"LICENSE": APACHE, ".gitignore": "__pycache__/\n", "model.bin": "w"})
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "LICENSE").write_text(APACHE)
    (project / ".gitignore").write_text("__pycache__/\n")
    (project / "src" / "train.py").write_text("print(1)")
    (project / "src" / "data.py").write_text("load()")
    (project / "thesis.tex").write_text("three years of work")
    before = _tree(project)
    with pytest.raises(ArtifactError, match=r"refused: only 2 of its 5 files are at paths this artifact's versions "
                                            r"name .*'src/data.py'.*no evidence.*new or empty directory.*"
                                            r"nothing was removed"):
        artifact.checkout(project)
    assert _tree(project) == before


def test_checkout_cleans_a_previous_checkout_edited_and_with_files_added(start, tmp_path, monkeypatch):
    """A checkout (of this version or an older one) that was then edited, had files added and
    files removed is still mostly the artifact's: it is cleaned, shared LICENSE and all."""
    monkeypatch.chdir(tmp_path)
    first = _logged(start, tmp_path, {"LICENSE": APACHE, "a.txt": "one", "b.txt": "b", "old.txt": "old"})
    co = tmp_path / "co"
    first.checkout(co)
    (co / "a.txt").unlink()  # the download may be a link to the store's read-only blob
    (co / "a.txt").write_text("edited")
    (co / "b.txt").unlink()
    (co / "notes.txt").write_text("scratch")
    second = _logged(start, tmp_path, {"LICENSE": APACHE, "a.txt": "two", "b.txt": "b", "new.txt": "new"})
    assert second.checkout(co) == str(co)  # 3 of 4 at the artifact's paths (old.txt: v0's)
    assert _tree(co) == {"LICENSE": APACHE, "a.txt": "two", "b.txt": "b", "new.txt": "new"}
    second.verify(co)


@pytest.mark.parametrize(("where", "reason"), [
    ("file", "it is not a directory"), ("link", "it is a symbolic link"),
    ("foreign", "none of them is a file of this version"), ("cwd", "the working directory"),
    ("parent", "the working directory or a directory above it"), ("home", "it is the home directory"),
    ("data root", "inside tracklet's data root"), ("in data root", "inside tracklet's data root"),
    ("above data root", "inside tracklet's data root .* or above it"), ("fs root", "the file system's root")])
def test_checkout_refuses_a_root_that_is_not_a_directory_of_the_artifact(start, root, tmp_path, monkeypatch, where,
                                                                         reason):
    artifact = _logged(start, tmp_path, {"a.txt": "a"})
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "train.py").write_text("print(1)")
    (project / "notes.txt").write_text("notes")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(project / "src" if where in ("cwd", "parent") else "/" if where == "above data root"
                      else tmp_path / "work")
    monkeypatch.setenv("HOME", str(project if where == "home" else tmp_path / "nobody"))
    target = {"file": project / "notes.txt", "link": tmp_path / "link", "foreign": project, "cwd": Path("."),
              "parent": project, "home": project, "data root": root, "in data root": root / "artifacts",
              "above data root": tmp_path, "fs root": Path("/")}[where]
    if where == "link":
        target.symlink_to(project)
    before = _tree(tmp_path)
    with pytest.raises(ArtifactError, match=f"checkout.*refused: .*{reason}.*nothing was removed"):
        artifact.checkout(target)
    assert _tree(tmp_path) == before


def test_checkout_into_an_older_versions_directory(start, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _logged(start, tmp_path, {"a.txt": "one", "old.txt": "old"})
    first.checkout(tmp_path / "co")
    second = _logged(start, tmp_path, {"a.txt": "two", "new.txt": "new"})
    second.checkout(tmp_path / "co")
    assert _tree(tmp_path / "co") == {"a.txt": "two", "new.txt": "new"}


# ------------------------------------------------------------------ history_step, url, type mismatch


def test_history_step_is_the_runs_last_step_when_it_logged_the_version(start, root, tmp_path):
    run = start()
    early = tracklet.Artifact("early", type="dataset")
    early._add_bytes("x", b"x")
    run.log_artifact(early)
    for step in range(5):
        run.log({"loss": step})
    run.log({"acc": 1}, step=9, commit=True)  # a row at 9, then the step is 10 (without commit: 9, as W&B)
    late = tracklet.Artifact("late", type="dataset")
    late._add_bytes("y", b"y")
    run.log_artifact(late)
    run.log({"loss": 0.0})  # after log_artifact: not counted
    run.finish()
    assert early.wait().history_step == 0 and late.wait().history_step == 9
    api = tracklet.Api(root)
    assert [api.artifact(f"test/{name}:v0").history_step for name in ("early", "late")] == [0, 9]

    saved = tracklet.Artifact("outside", type="dataset")
    saved._add_bytes("z", b"z")
    saved.save("test", root=root)
    assert saved.history_step is None and api.artifact("test/outside:v0").history_step is None
    (version_file,) = root.rglob("outside/versions/v0.json")
    assert "history_step" not in json.loads(version_file.read_text())  # logged outside a run: as before
    with pytest.raises(ArtifactError, match="has no history step yet: log it first"):
        _ = tracklet.Artifact("draft", type="dataset").history_step


def test_url_of_local_and_registry_versions(start, root, tmp_path):
    artifact = _logged(start, tmp_path, {"m.bin": "w"}, name="clf")
    assert artifact.url == "http://127.0.0.1:8765/projects/test/artifacts/clf/v0"
    linked = artifact.link("model/classifier", aliases=["staging"])
    assert linked.url == "http://127.0.0.1:8765/registry/model/classifier/v0"
    import tracklet.compat.wandb as wandb

    through = wandb.Api().artifact("wandb-registry-model/classifier:staging")
    assert through.url == linked.url and through.is_link and through.linked_at.endswith("Z")
    assert through.collection.name == "classifier" and through.collection.project == "wandb-registry-model"
    assert [v.version for v in through.collection.versions()] == ["v0"]
    assert through.source_collection.name == "clf" and through.source_artifact.qualified_name == "test/clf:v0"
    with pytest.raises(ArtifactError, match="has no URL yet"):
        _ = tracklet.Artifact("draft", type="dataset").url


def test_a_type_mismatch_is_a_value_error_and_still_not_found(start, tmp_path):
    _logged(start, tmp_path, {"a.txt": "a"})
    run = start()
    with pytest.raises(ArtifactTypeMismatch) as caught:
        run.use_artifact("ds:latest", type="model")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ArtifactNotFound)
    assert str(caught.value) == "artifact test/ds:v0 has type 'dataset', not 'model'"
    assert (caught.value.asked, caught.value.found, caught.value.name) == ("model", "dataset", "test/ds:v0")
    import pickle

    again = pickle.loads(pickle.dumps(caught.value))
    assert (str(again), again.asked, again.found) == (str(caught.value), "model", "dataset")
    assert run.use_artifact("ds:latest", type="dataset").version == "v0"
    run.finish()


def test_single_file_artifacts_and_the_ttl_setter(start, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    run = wandb.init(project="one", settings=wandb.Settings(console="off", x_disable_stats=True))
    (tmp_path / "w.pt").write_bytes(b"weights")
    single = wandb.Artifact("weights", type="model")
    single.add_file(str(tmp_path / "w.pt"))
    run.log_artifact(single).wait()
    assert open(single.file(tmp_path / "one")).read() == "weights"
    double = wandb.Artifact("pair", type="model")
    double.add_file(str(tmp_path / "w.pt"))
    double.add_file(str(tmp_path / "w.pt"), name="copy.pt")
    run.log_artifact(double).wait()
    with pytest.raises(ValueError, match="holds 2 files, not one"):
        double.file()
    import datetime

    with pytest.warns(tracklet.errors.TrackletWarning, match="artifact.ttl is not supported"):
        single.ttl = datetime.timedelta(days=30)
    assert single.ttl is None and single.incremental is False
    run.finish()


def test_an_incremental_artifact_is_logged_as_the_latest_version_plus_its_files(root, tmp_path, monkeypatch):
    """W&B's ``wandb.Artifact(name, type, incremental=True)``: its server merges the draft's
    "incremental" manifest onto the collection's latest version (wandb-core's ArtifactSaver). Until
    session 29 tracklet accepted the flag, said ``incremental`` was False, and logged the draft's own
    files alone: a dataset grown a shard at a time kept only its last shard."""
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    for name, text in (("a.txt", "a"), ("b.txt", "b"), ("a2.txt", "a changed")):
        (tmp_path / name).write_text(text)
    with wandb.init(project="grow", settings={"console": "off", "x_disable_stats": True}) as run:
        first = wandb.Artifact("ds", type="dataset", incremental=True)  # no version yet: its own files
        first.add_file("a.txt")
        run.log_artifact(first).wait()
        second = wandb.Artifact("ds", type="dataset", incremental=True)
        assert second.incremental is True
        second.add_file("b.txt")
        second.add_file("a2.txt", name="a.txt")  # the draft's file wins over the base's
        run.log_artifact(second).wait()
        plain = wandb.Artifact("ds", type="dataset")
        plain.add_file("b.txt")
        run.log_artifact(plain).wait()
        pruned = wandb.Artifact("ds", type="dataset", incremental=True)
        pruned.add_file("a.txt")
        pruned.remove("b.txt")  # the base's file: taken away (no error that the draft lacks it)
        run.log_artifact(pruned).wait()
    api = wandb.Api()
    assert [entry.path for entry in api.artifact("grow/ds:v3").files()] == ["a.txt"]
    assert [entry.path for entry in api.artifact("grow/ds:v0").files()] == ["a.txt"]
    grown = api.artifact("grow/ds:v1")
    assert sorted(entry.path for entry in grown.files()) == ["a.txt", "b.txt"]
    folder = Path(grown.download(str(tmp_path / "got")))
    assert (folder / "a.txt").read_text() == "a changed" and (folder / "b.txt").read_text() == "b"
    assert [entry.path for entry in api.artifact("grow/ds:v2").files()] == ["b.txt"]  # not incremental: its own


def test_incremental_artifacts_logged_one_after_another_each_build_on_the_one_before(root, tmp_path, monkeypatch):
    """A dataset grown a shard at a time with no ``wait()`` between the logs: each incremental draft
    is merged onto the version before it when it is stored (the run's artifact worker stores them in
    order), as W&B's server merges each on commit. The base was read when the draft was logged,
    before the previous one was stored, so every version held its own shard alone. A deleted latest
    version isn't a base: the next one builds on the newest version there is."""
    import tracklet.compat.wandb as wandb

    monkeypatch.chdir(tmp_path)
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.txt").write_text(name)
    with wandb.init(project="shards", settings={"console": "off", "x_disable_stats": True}) as run:
        for name in ("a", "b", "c"):
            shard = wandb.Artifact("ds", type="dataset", incremental=True)
            shard.add_file(f"{name}.txt")
            run.log_artifact(shard)
    api = wandb.Api()
    assert [sorted(entry.path for entry in api.artifact(f"shards/ds:v{number}").files()) for number in range(3)] \
        == [["a.txt"], ["a.txt", "b.txt"], ["a.txt", "b.txt", "c.txt"]]
    api.artifact("shards/ds:v2").delete(delete_aliases=True)
    with wandb.init(project="shards", settings={"console": "off", "x_disable_stats": True}) as run:
        shard = wandb.Artifact("ds", type="dataset", incremental=True)
        shard.add_file("d.txt")
        run.log_artifact(shard).wait()
        assert shard.version == "v3"
    assert sorted(entry.path for entry in wandb.Api().artifact("shards/ds:v3").files()) == ["a.txt", "b.txt", "d.txt"]
