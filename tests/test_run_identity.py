"""A run's name, tags, notes, group and job type can change after ``init()`` (``run.name = ...``, as
W&B scripts do): the change is a ``RunUpdate`` record in the log, so readers, a resumed session,
the store (filters, the dashboard's rows) and a server copy all see it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import serverproc

import tracklet
from conftest import QUIET, REPO


def test_changes_after_init_are_recorded_and_read_back(root):
    run = tracklet.init(project="p", id="r1", name="first", tags=["a"], group="g0", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.name = "second"
    run.tags = ["b", "c"]
    run.notes = "a note"
    run.group = "g1"
    run.job_type = "eval"
    assert (run.name, run.tags, run.notes, run.group, run.job_type) == ("second", ["b", "c"], "a note", "g1", "eval")
    run.tags.append("lost")  # a copy: only assignment changes the run
    assert run.tags == ["b", "c"]
    run.log({"loss": 0.5})
    run.finish()

    recorded = tracklet.Api(root).run("p/r1")
    assert (recorded.name, recorded.tags, recorded.notes, recorded.group, recorded.job_type) == (
        "second", ["b", "c"], "a note", "g1", "eval")
    assert recorded.history(["loss"])["loss"] == [1.0, 0.5]  # the full read gives the same (read without it above)
    assert (recorded.name, recorded.tags, recorded.notes, recorded.group, recorded.job_type) == (
        "second", ["b", "c"], "a note", "g1", "eval")
    assert tracklet.Api(root).run("p/second").id == "r1"  # found by its new name
    rows = tracklet.Api(root).runs("p", filter='name = "second" and group = "g1" and job_type = "eval"')
    assert [r.id for r in rows] == ["r1"]  # the store applied it

    resumed = tracklet.init(project="p", id="r1", resume="allow", dir=str(root), settings=QUIET)
    assert (resumed.name, resumed.tags, resumed.group) == ("second", ["b", "c"], "g1")  # not the first start's
    resumed.finish()
    assert tracklet.Api(root).run("p/r1").name == "second"


def test_bad_values_are_refused_and_change_nothing(root):
    run = tracklet.init(project="p", id="r2", name="kept", tags=["a"], dir=str(root), settings=QUIET)
    with pytest.raises(TypeError, match="tags must be a list of strings"):
        run.tags = "abc"
    with pytest.raises(TypeError, match="name must be a string"):
        run.name = 3
    run.finish()
    assert (tracklet.Api(root).run("p/r2").name, tracklet.Api(root).run("p/r2").tags) == ("kept", ["a"])


def test_disabled_mode_keeps_them_in_memory(root):
    run = tracklet.init(project="p", mode="disabled", name="x")
    run.name = "y"
    assert run.name == "y"
    run.finish()


def test_a_wandb_script_renames_its_run(root, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import wandb\n"
        "run = wandb.init(project='wb', name='before', tags=['a'])\n"
        "run.log({'loss': 1.0})\n"
        "run.name = 'after'\n"
        "run.tags = ('a', 'b')\n"
        "run.notes = 'from the script'\n"
        "wandb.finish()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_CONSOLE": "off", "TRACKLET_CAPTURE_ENVIRONMENT": "false",
           "TRACKLET_SYSTEM_METRICS": "false"}
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--wandb", "--", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not yet supported" not in done.stderr
    (recorded,) = tracklet.Api(root).runs("wb")
    assert (recorded.name, recorded.tags, recorded.notes) == ("after", ["a", "b"], "from the script")


def test_a_server_copy_shows_the_change(root, servers):
    import httpx

    run = tracklet.init(project="p", id="r3", name="before", dir=str(root), settings=QUIET)
    run.log({"loss": 1.0})
    run.name = "after"
    run.tags = ["synced"]
    run.finish()
    server = servers()
    done = serverproc.cli("sync", "--url", server.url, "-q", "p/r3", env={"TRACKLET_DIR": str(root)})
    assert done.returncode == 0, done.stderr
    row = httpx.get(f"{server.url}/api/v1/runs/p/r3", timeout=60).json()["run"]
    assert (row["name"], row["tags"]) == ("after", ["synced"])


def test_text_a_record_cant_hold_is_replaced_with_one_warning_per_field_naming_it(root):
    """Lone surrogates (not text: UTF-8 can't encode them) in a name, notes or tags the user gave,
    at init() or later: the run records them replaced, warns once per field naming the field and
    the characters replaced, and nothing else is lost."""
    with pytest.warns(tracklet.TrackletWarning) as caught:
        run = tracklet.init(project="p", id="odd", name="a\udc80b", notes="n\ud800", tags=["t\udfff", "ok"],
                            dir=str(root), settings=QUIET)
        run.log({"loss": 1.0})
        run.name = "second\ud801"  # the field warned of already: recorded, not warned again
        run.group = "g\udbff"
        run.finish()
    messages = [str(warning.message) for warning in caught if "lone surrogate" in str(warning.message)]
    assert len(messages) == 4, messages
    by_field = {message.split()[2]: message for message in messages}  # "tracklet: run <field> ..."
    assert set(by_field) == {"name", "notes", "tags", "group"}
    assert "U+DC80" in by_field["name"] and "recorded as 'a\ufffdb'" in by_field["name"]
    assert "U+D800" in by_field["notes"] and "U+DFFF" in by_field["tags"] and "U+DBFF" in by_field["group"]
    recorded = tracklet.Api(root).run("p/odd")
    assert (recorded.name, recorded.notes, recorded.tags, recorded.group) == ("second?", "n?", ["t?", "ok"], "g?")
    assert recorded.history(["loss"])["loss"] == [1.0]
    assert recorded.state == "finished"
