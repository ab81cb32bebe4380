"""Console output and the environment (git, packages, host) are recorded off the caller's thread."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import tracklet

from conftest import run_script


def test_console_lines_are_recorded_and_still_printed(root):
    done = run_script(
        """
        import sys, tracklet
        run = tracklet.init(project="console", settings={"capture_environment": False})
        print("hello", "world")
        print("to stderr", file=sys.stderr)
        for i in range(3):
            sys.stdout.write(f"\\rprogress {i}/3")
        sys.stdout.write("\\n")
        sys.stdout.write("no newline at the end")
        run.finish()
        print("after finish is not recorded")
        """,
        check=True,
    )
    assert "hello world" in done.stdout and "to stderr" in done.stderr
    assert "progress 0/3" in done.stdout  # the terminal still gets every redraw
    (recorded,) = tracklet.Api(root).runs("console")
    lines = [(line.stream, line.text) for line in recorded.console]
    assert lines == [
        ("stdout", "hello world"),
        ("stderr", "to stderr"),
        ("stdout", "progress 2/3"),
        ("stdout", "no newline at the end"),
    ]


def test_console_off_records_nothing(root):
    run_script(
        """
        import tracklet
        run = tracklet.init(project="quiet", settings={"console": "off", "capture_environment": False})
        print("not recorded")
        run.finish()
        """,
        check=True,
    )
    (recorded,) = tracklet.Api(root).runs("quiet")
    assert recorded.console == []


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()


def test_environment_records_git_state_packages_and_host(root, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "train.py").write_text("print('v2')\n")
    commit = _git(repo, "rev-parse", "HEAD")
    run_script(
        """
        import tracklet
        run = tracklet.init(project="env")
        run.log({"a": 1})
        run.finish()
        """,
        cwd=repo,
        check=True,
    )
    (recorded,) = tracklet.Api(root).runs("env")
    meta = recorded.metadata
    assert meta["git"]["commit"] == commit and meta["git"]["dirty"] is True
    diff = (Path(recorded.dir) / "files" / "diff.patch").read_bytes()
    assert b"+print('v2')" in diff
    assert meta["git"]["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    assert "protobuf" in {name.lower() for name in meta["packages"]}
    requirements = (Path(recorded.dir) / "files" / "requirements.txt").read_text()
    assert "protobuf==" in requirements.lower()
    assert meta["cpu_count"] >= 1 and meta["hostname"] and meta["memory_total_bytes"] > 0
    assert meta["command"][1:] == ["-c"] and meta["cwd"] == str(repo)
    assert set(recorded.files()) == {"diff.patch", "requirements.txt"}


def test_environment_outside_git_has_no_git_section(root, tmp_path):
    run_script(
        """
        import tracklet
        run = tracklet.init(project="nogit")
        run.finish()
        """,
        cwd=tmp_path,
        check=True,
        env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    (recorded,) = tracklet.Api(root).runs("nogit")
    assert recorded.metadata["git"] is None
