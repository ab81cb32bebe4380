"""Media retention (issue #16: "nothing is sampled away: retention is an explicit policy"):
``tracklet media prune PROJECT --keep-last N`` retires each key's media before its last N steps,
says so, and removes only the stored files nothing else names (tracklet.media.retention)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import tracklet
from tracklet.cli.main import main

from conftest import read


def _cli(root, *args):
    return CliRunner().invoke(main, ["--dir", str(root), *args], catch_exceptions=False)


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)


def test_prune_keeps_the_last_steps_of_each_key_and_removes_only_blobs_nothing_else_names(start, root):
    shared = _pixels(100)  # logged at a retired step and at a kept one
    run = start()
    for step in range(6):
        run.log({"img": tracklet.Image(shared if step in (0, 5) else _pixels(step)),
                 "other": tracklet.Image(_pixels(10 + step)), "loss": float(step)}, step=step)
    run.finish()
    other = start()  # step 1's pixels as media of another run, step 2's in a table cell of it
    other.log({"img": tracklet.Image(_pixels(1)), "cells": tracklet.Table(columns=["im"], data=[[tracklet.Image(
        _pixels(2))]])})
    other.finish()
    blob = {item.step: item.path for item in read(run).media("img")}

    dry = _cli(root, "media", "prune", "test", "--keep-last", "2", "--key", "img", "--dry-run")
    assert dry.exit_code == 0 and "would retire 4 media item(s)" in dry.output, dry.output
    assert all(path.is_file() for path in blob.values())
    assert len(read(run).media("img")) == 6 and read(run).media_retention == {}  # a dry run changes nothing

    done = _cli(root, "media", "prune", "test", "--keep-last", "2", "--key", "img")
    assert done.exit_code == 0, done.output
    assert "retired 4 media item(s)" in done.output and "img from step 4" in done.output
    recorded = read(run)
    assert [m.step for m in recorded.media("img")] == [4, 5]  # the key's last two steps
    assert len(recorded.media("other")) == 6  # a key not named: untouched
    assert recorded.media_retention == {"img": 4}  # said, in the run's directory
    assert json.loads((Path(recorded.dir) / "media-retention.json").read_text())["keys"] == {"img": 4}
    assert recorded.history()["loss"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # only media are retired
    assert not blob[3].is_file()  # only the retired item named it
    assert blob[0].is_file() and np.array_equal(recorded.media("img")[1].to_numpy(), shared)  # step 5's too
    assert blob[1].is_file() and len(read(other).media("img")) == 1  # another run's
    assert blob[2].is_file() and read(other).table("cells").to_pandas()["im"][0]["digest"] == blob[2].name
    assert "removed 1 stored file(s)" in done.output

    again = _cli(root, "media", "prune", "test", "--keep-last", "3", "--key", "img")
    assert "nothing to retire" in again.output  # a later prune never brings retired items back
    assert [m.step for m in read(run).media("img")] == [4, 5]


_CHILD = r"""
import sys, time
from pathlib import Path
import numpy as np
import tracklet

root, signals = sys.argv[1], Path(sys.argv[2])
pixels = lambda seed: np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
run = tracklet.init(dir=root, project="test", settings={"console": "off", "capture_environment": False,
                                                        "system_metrics": False})
run.log({"img": tracklet.Image(pixels(1))}, step=0)  # the same bytes as the finished run's step 1: claimed
run.log({"img": tracklet.Image(pixels(50))}, step=1)  # new bytes
(signals / "logged").write_text(run.path)
while not (signals / "finish").exists():
    time.sleep(0.02)
run.finish()
"""


def test_prune_removes_old_blobs_while_a_run_runs_and_keeps_what_it_writes_or_claims(root, tmp_path):
    """A data root that always has a run going can prune too: a retired blob written before the
    running run started (and not claimed since) goes; one the running run logged again (its
    worker claimed the stored bytes instead of writing them) stays, as does everything it wrote,
    and its media read back once it finishes. A prune killed with a blob set aside (between the
    move and the delete) leaves it to the next prune or collection, which puts it back first."""
    import os
    import subprocess
    import sys
    import time

    import tracklet as _tracklet

    done = _tracklet.init(dir=str(root), project="test", settings={"console": "off", "capture_environment": False,
                                                                   "system_metrics": False})
    for step in range(4):
        done.log({"img": tracklet.Image(_pixels(step))}, step=step)
    done.finish()
    paths = {item.step: item.path for item in read(done).media("img")}
    week_ago = time.time() - 7 * 86400
    for path in paths.values():
        os.utime(path, (week_ago, week_ago))
    signals = tmp_path / "signals"
    signals.mkdir()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(signals)],
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        deadline = time.monotonic() + 120
        while not ((signals / "logged").exists() and paths[1].stat().st_mtime > week_ago + 3600):
            assert child.poll() is None and time.monotonic() < deadline, "the running run logged nothing"
            time.sleep(0.02)
        live_path = (signals / "logged").read_text()

        result = _cli(root, "media", "prune", "test", "--keep-last", "1", "--key", "img")
        assert result.exit_code == 0, result.output
        assert "retired 3 media item(s)" in result.output  # the finished run's steps 0-2
        assert "still running" not in result.output
        assert not paths[0].is_file() and not paths[2].is_file()  # old, named by retired items only
        assert paths[1].is_file() and paths[3].is_file()  # claimed by the running run; kept by the policy
        assert f"since run {live_path} (running) started" in result.output or "something else names" in result.output
    finally:
        (signals / "finish").write_text("")
        assert child.wait(timeout=120) == 0
    live = tracklet.Api(root).run(live_path)
    assert [m.to_numpy().tobytes() for m in live.media("img")] == [_pixels(1).tobytes(), _pixels(50).tobytes()]
    assert [m.step for m in read(done).media("img")] == [3]

    # Killed between moving a blob aside and deleting it: the next prune puts it back first.
    from tracklet.artifacts.gc import ASIDE_SUFFIX

    fresh = live.media("img")[1].path
    aside = root / "artifacts" / "blobs" / "tmp" / (fresh.name + ASIDE_SUFFIX)
    os.rename(fresh, aside)
    again = _cli(root, "media", "prune", "test", "--keep-last", "2", "--key", "img")
    assert again.exit_code == 0 and "nothing to retire" in again.output
    assert fresh.is_file() and not aside.exists()
    assert [m.to_numpy().tobytes() for m in live.media("img")] == [_pixels(1).tobytes(), _pixels(50).tobytes()]


def test_prune_removes_no_blob_while_the_store_may_be_shared(start, root, monkeypatch):
    done = start()
    for step in range(3):
        done.log({"img": tracklet.Image(_pixels(step))}, step=step)
    done.finish()
    paths = [item.path for item in read(done).media("img")]
    live = start()  # still recording, started just after the blobs were written (within the clock's slack)
    live.log({"x": 1.0})

    result = _cli(root, "media", "prune", "test", "--keep-last", "1")
    assert "retired 2 media item(s)" in result.output
    assert f"2 written or used since run {live.path} (running) started" in result.output
    assert all(path.is_file() for path in paths)
    assert [m.step for m in read(done).media("img")] == [2]  # hidden all the same
    live.finish()

    monkeypatch.setenv("TRACKLET_ARTIFACT_DIR", str(root / "artifacts"))
    monkeypatch.chdir(root)
    shared = _cli(root, "media", "prune", "test", "--keep-last", "1")
    assert "nothing to retire" in shared.output  # retired already; its blobs are removed now, if they can be
    assert "removed 2 stored file(s)" in shared.output and not paths[0].is_file() and paths[2].is_file()

    from tracklet.media import retention

    monkeypatch.setenv("TRACKLET_ARTIFACT_DIR", str(root.parent / "elsewhere"))  # shared by other data roots?
    report = retention.apply(root, retention.plan(root, "test", 0), keep_last=0)
    assert report.blobs_removed == 0 and "may be shared with other data roots" in report.blobs_note
    assert read(done).media("img") == [] and paths[2].is_file()


def test_max_bytes_retires_the_oldest_steps_until_the_rest_fits(start, root):
    run = start()
    for step in range(4):
        run.log({"a": tracklet.Image(_pixels(step)), "b": tracklet.Image(_pixels(20 + step))}, step=step)
    run.finish()
    sizes = {}
    for item in read(run).media():
        sizes[item.step] = sizes.get(item.step, 0) + item.size_bytes
    budget = sizes[2] + sizes[3]  # the last two steps of both keys fit, exactly

    refused = _cli(root, "media", "prune", "test")
    assert refused.exit_code == 2 and "--keep-last N, --max-bytes SIZE, or both" in refused.output
    result = _cli(root, "media", "prune", "test", "--max-bytes", str(budget))
    assert result.exit_code == 0 and "retired 4 media item(s)" in result.output, result.output
    recorded = read(run)
    assert [(m.key, m.step) for m in recorded.media()] == [("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert recorded.media_retention == {"a": 2, "b": 2}
    assert sum(m.size_bytes for m in recorded.media()) <= budget
    smaller = _cli(root, "media", "prune", "test", "--max-bytes", str(budget - 1), "--keep-blobs")
    assert "retired 2 media item(s)" in smaller.output and [m.step for m in read(run).media()] == [3, 3]


# Every prune counts every retired item again (tracklet.media.retention._plan_run: ``retired`` is
# each item before its key's cutoff, earlier prunes' included), so a blob a prune left is removed by
# a later one once the reason it stayed is gone: no leak. These pin that down (a prune that counted
# only the items it retires itself would fail each of them).


def test_a_keep_blobs_prune_leaves_its_blobs_to_the_next_plain_prune(start, root):
    """``--keep-blobs`` (as a prune killed after writing retention, before removing) retires the
    items and leaves their blobs; the next prune, with nothing new to retire, removes them."""
    run = start()
    for step in range(4):
        run.log({"img": tracklet.Image(_pixels(500 + step))}, step=step)
    run.finish()
    paths = {item.step: item.path for item in read(run).media("img")}

    kept = _cli(root, "media", "prune", "test", "--keep-last", "1", "--keep-blobs")
    assert kept.exit_code == 0 and "retired 3 media item(s)" in kept.output, kept.output
    assert all(path.is_file() for path in paths.values()) and read(run).media_retention == {"img": 3}

    plain = _cli(root, "media", "prune", "test", "--keep-last", "1")
    assert plain.exit_code == 0 and "nothing to retire" in plain.output, plain.output
    assert "removed 3 stored file(s)" in plain.output, plain.output
    assert [path.is_file() for _, path in sorted(paths.items())] == [False, False, False, True]
    assert [m.step for m in read(run).media("img")] == [3]
    assert np.array_equal(read(run).media("img")[0].to_numpy(), _pixels(503))


def test_a_blob_kept_while_a_run_ran_goes_with_a_later_prune_once_none_runs(start, root):
    """A retired blob kept because a run was running (written within the clock's slack of its
    start) is removed by a later prune, with nothing new retired, once that run has finished;
    a later prune still, with the same policy, removes nothing more."""
    done = start()
    for step in range(3):
        done.log({"img": tracklet.Image(_pixels(600 + step))}, step=step)
    done.finish()
    paths = {item.step: item.path for item in read(done).media("img")}
    live = start()
    live.log({"x": 1.0})

    first = _cli(root, "media", "prune", "test", "--keep-last", "1", "--key", "img")
    assert first.exit_code == 0 and "retired 2 media item(s)" in first.output, first.output
    assert f"since run {live.path} (running) started" in first.output, first.output
    assert all(path.is_file() for path in paths.values())
    live.finish()

    later = _cli(root, "media", "prune", "test", "--keep-last", "1", "--key", "img")
    assert later.exit_code == 0 and "nothing to retire" in later.output, later.output
    assert "removed 2 stored file(s)" in later.output, later.output
    assert [path.is_file() for _, path in sorted(paths.items())] == [False, False, True]
    again = _cli(root, "media", "prune", "test", "--keep-last", "1", "--key", "img")
    assert again.exit_code == 0 and "removed 0 stored file(s)" in again.output, again.output
    assert paths[2].is_file() and np.array_equal(read(done).media("img")[0].to_numpy(), _pixels(602))


def test_a_blob_a_retired_item_shares_with_a_kept_one_goes_when_a_later_prune_retires_that_one(start, root):
    """A blob named by a retired item and a kept one stays; a later prune that retires the kept
    item too removes it (the earlier prune's item is counted as retired again, so the blob's
    names in the logs are all retired ones), and never a blob a kept item still names."""
    shared = _pixels(700)  # steps 0 and 2
    run = start()
    for step in range(4):
        run.log({"img": tracklet.Image(shared if step in (0, 2) else _pixels(700 + step))}, step=step)
    run.finish()
    paths = {item.step: item.path for item in read(run).media("img")}
    assert paths[0] == paths[2]

    first = _cli(root, "media", "prune", "test", "--keep-last", "2")
    assert first.exit_code == 0 and "retired 2 media item(s)" in first.output, first.output
    assert "removed 1 stored file(s)" in first.output, first.output  # step 1's; step 0's is step 2's too
    assert paths[0].is_file() and not paths[1].is_file()
    assert np.array_equal(read(run).media("img")[0].to_numpy(), shared)

    second = _cli(root, "media", "prune", "test", "--keep-last", "1")
    assert second.exit_code == 0 and "retired 1 media item(s)" in second.output, second.output
    assert "removed 1 stored file(s)" in second.output, second.output  # steps 0 and 2's one blob
    assert not paths[0].is_file() and paths[3].is_file()
    assert [m.step for m in read(run).media("img")] == [3]
    assert np.array_equal(read(run).media("img")[0].to_numpy(), _pixels(703))
