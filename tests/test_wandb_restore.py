"""W&B's ``wandb.restore`` / ``run.restore`` (a resumed script fetching its checkpoint) and
``wandb.Api().run(...).file(name).download()``: from the data root, and from a tracking server
for a run synced there."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import tracklet.compat.wandb as wandb
from tracklet.cli.main import main


@pytest.fixture
def saved(root, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt.txt").write_text("epoch 3")
    with wandb.init(project="resume") as run:
        wandb.save("ckpt.txt", policy="now")
    return run.id


def test_restore_copies_a_run_file_into_the_current_run_and_opens_it(root, tmp_path, saved):
    with pytest.raises(ValueError, match="run_path required"):
        wandb.restore("ckpt.txt")
    with wandb.init(project="resume") as run:
        restored = wandb.restore("ckpt.txt", run_path=f"resume/{saved}")
        assert restored.read() == "epoch 3" and restored.name == f"{run.dir}/ckpt.txt"
        restored.close()
        with open(f"{run.dir}/ckpt.txt", "w") as handle:
            handle.write("edited")
        with run.restore("ckpt.txt", run_path=f"someone/resume/{saved}") as again:  # there already: kept
            assert again.read() == "edited"
        with wandb.restore("ckpt.txt", run_path=f"resume/{saved}", replace=True) as replaced:
            assert replaced.read() == "epoch 3"
        assert wandb.restore("nosuch.txt", run_path=f"resume/{saved}") is None
    with pytest.raises(wandb.errors.CommError, match="no run 'resume/nosuch1'"):
        wandb.restore("ckpt.txt", run_path="resume/nosuch1", root=str(tmp_path / "out"))


def test_restore_reads_a_run_synced_to_a_server(root, tmp_path, saved, servers, monkeypatch):
    server = servers(tmp_path / "server")
    synced = CliRunner().invoke(main, ["--dir", str(root), "sync", f"resume/{saved}", "--url", server.url, "--quiet"])
    assert synced.exit_code == 0, synced.output
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "another-machine"))
    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    with wandb.restore("ckpt.txt", run_path=f"resume/{saved}", root=str(tmp_path / "here")) as restored:
        assert restored.read() == "epoch 3"
    on_server = wandb.Api(overrides={"base_url": server.url}).run(f"resume/{saved}")
    assert on_server.file("ckpt.txt").size == len("epoch 3")
    with on_server.file("ckpt.txt").download(root=str(tmp_path / "dl")) as handle:
        assert handle.read() == "epoch 3"
    with pytest.raises(wandb.errors.CommError, match="no file 'nosuch.txt'"):
        on_server.file("nosuch.txt").download(root=str(tmp_path / "dl"))
