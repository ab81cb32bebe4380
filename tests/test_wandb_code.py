"""W&B's code saving, unmodified: ``wandb.init(save_code=True)`` keeps the program's main file and
``run.log_code(root, include_fn=, exclude_fn=)`` the files it picks, each as a ``code`` artifact
version the run logged (no "not supported" warning any more); environments, caches and ``wandb/``
are never read."""

from __future__ import annotations

from pathlib import Path

from test_wandb_compat import tracklet_run

import tracklet

SCRIPT = """
import json, warnings
warnings.simplefilter("always")
caught = []
warnings.showwarning = lambda message, *rest: caught.append(str(message))
import wandb

run = wandb.init(project="code", save_code=True)
logged = run.log_code(".", include_fn=lambda path, root: path.endswith((".py", ".yaml")),
                      exclude_fn=lambda path: path.endswith("secret.py"))
nothing = run.log_code("configs", include_fn=lambda path: path.endswith(".toml"))
run.finish()
print(json.dumps({"id": run.id, "name": logged.name, "nothing": nothing, "warnings": caught}))
"""


def test_save_code_and_log_code_log_code_artifacts(root, tmp_path):
    (tmp_path / "util.py").write_text("X = 1\n")
    (tmp_path / "secret.py").write_text("KEY = 'no'\n")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("lr: 0.1\n")
    for skipped in ("venv/lib/site.py", "__pycache__/util.py", "wandb/debug.py", ".git/hooks.py", "notes.txt"):
        (tmp_path / skipped).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / skipped).write_text("skipped\n")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    out = tracklet_run(tmp_path, SCRIPT)
    assert not [w for w in out["warnings"] if "not yet supported" in w], out["warnings"]
    assert [w for w in out["warnings"] if "log_code" in w and "configs matched; nothing logged" in w]  # as W&B says
    assert out["name"] == "source-code-train.py" and out["nothing"] is None

    api = tracklet.Api(root)
    run = api.run(f"code/{out['id']}")
    logged = [(a["name"], a["version"]) for a in run.logged_artifacts if a["type"] == "code"]
    assert ("source-code-train.py", 0) in logged and ("source-code-train.py", 1) in logged
    program = api.artifact("code/source-code-train.py:v0")  # save_code's: the program alone
    picked = api.artifact("code/source-code-train.py:v1")
    assert sorted(entry.path for entry in picked.files()) == ["configs/base.yaml", "train.py", "util.py"]
    folder = Path(picked.download(str(tmp_path / "restored")))
    assert (folder / "train.py").read_text() == (tmp_path / "train.py").read_text()
    assert sorted(entry.path for entry in program.files()) == ["train.py"]


def test_log_code_names_its_artifact_by_the_programs_path_from_the_working_directory(root, tmp_path, monkeypatch):
    """As W&B names it (checked with wandb 0.31 offline: ``source-p_q-sub_my-train.py``):
    ``source-<project>-<program relative to the working directory>``, made artifact-safe with "_",
    whatever root ``log_code`` reads. Until session 29 the path was taken from that root
    (``log_code("proj")`` named ``source-code-.-train.py``)."""
    import sys

    import tracklet.compat.wandb as wandb

    (tmp_path / "sub").mkdir()
    program = tmp_path / "sub" / "my train.py"
    program.write_text("print('train')\n")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "model.py").write_text("X = 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(program)])
    run = wandb.init(project="code", settings=wandb.Settings(console="off", x_disable_stats=True))
    logged = run.log_code("proj")
    assert logged.name == "source-code-sub_my_train.py"
    logged.wait()
    run.finish()
    version = wandb.Api().artifact("code/source-code-sub_my_train.py:v0")
    assert [entry.path for entry in version.files()] == ["model.py"]


def test_save_code_with_code_dir_logs_that_directory_too(root, tmp_path, monkeypatch):
    """W&B's run start: ``save_code`` with ``Settings(code_dir=D)`` also logs ``log_code(D)``; the
    setting was accepted and ignored silently."""
    import sys

    import tracklet.compat.wandb as wandb

    program = tmp_path / "train.py"
    program.write_text("print('train')\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("X = 1\n")
    (tmp_path / "src" / "notes.txt").write_text("not code\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(program)])
    wandb.init(project="code", settings=wandb.Settings(console="off", x_disable_stats=True, save_code=True,
                                                       code_dir="src"))
    wandb.finish()
    api = wandb.Api()
    assert [entry.path for entry in api.artifact("code/source-code-train.py:v0").files()] == ["train.py"]
    assert [entry.path for entry in api.artifact("code/source-code-train.py:v1").files()] == ["model.py"]


def test_log_code_names_a_long_or_dotted_program_path_with_a_name_tracklet_takes(root, tmp_path, monkeypatch):
    """W&B shortens a name past 128 characters to its first and last 63 joined by "..", and keeps
    a program's ".." ("a..py"); tracklet's names never hold "..", so ``log_code`` raised
    ``ArtifactError`` there (and ``save_code`` logged nothing): one "." stands for them."""
    import sys

    import tracklet.compat.wandb as wandb

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    for program, expected in ((deep / "train..py", None), (tmp_path / "v..2.py", "source-code-v.2.py")):
        program.write_text("print('train')\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", [str(program)])
        run = wandb.init(project="code", settings=wandb.Settings(console="off", x_disable_stats=True))
        logged = run.log_code(str(program.parent))
        assert ".." not in logged.name and len(logged.name) <= 128, logged.name
        assert expected is None or logged.name == expected
        if expected is None:  # W&B's shape: the first and last 63 characters
            assert logged.name.startswith("source-code-" + "d" * 51) and logged.name.endswith("e" * 53 + "_train.py")
        logged.wait()
        run.finish()
