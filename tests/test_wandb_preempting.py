"""W&B's ``run.mark_preempting()`` and ``run.status()``: a job that expects to be preempted marks its
run, ``wandb.Api`` shows it as W&B's states do (``preempting``, ``preempted``), and the resumed run
is ``running`` again; a job killed after marking its run reads as ``preempted``."""

from __future__ import annotations

from conftest import run_script

import tracklet
import tracklet.compat.wandb as wandb


def test_a_marked_run_is_preempting_then_preempted_until_resumed(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    run = wandb.init(project="jobs", id="job1")
    wandb.log({"loss": 1.0})
    run.mark_preempting()  # the scheduler sent SIGTERM
    run.tracklet_run.flush()
    api = wandb.Api()
    assert api.run("jobs/job1").state == "preempting"
    assert tracklet.Api(root).run("jobs/job1").preempting is not None
    wandb.finish(exit_code=143)
    assert api.run("jobs/job1").state == "preempted"

    resumed = wandb.init(project="jobs", id="job1", resume="allow")
    resumed.tracklet_run.flush()
    assert api.run("jobs/job1").state == "running"  # resumed: no longer marked
    assert tracklet.Api(root).run("jobs/job1").preempting is None
    wandb.finish()
    assert api.run("jobs/job1").state == "finished"

    wandb.init(project="jobs", id="job2")
    wandb.mark_preempting()
    wandb.finish()  # finished anyway: finished, as in W&B
    assert api.run("jobs/job2").state == "finished"


def test_status_reports_what_is_left_to_write(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    with wandb.init(project="jobs") as run:
        wandb.log({"loss": 1.0})
        run.tracklet_run.flush()
        status = run.status()
        assert (status.sync_items_pending, status.sync_items_total, status.sync_time) == (0, 0, None)


def test_a_job_killed_after_marking_its_run_reads_as_preempted(root, tmp_path, monkeypatch):
    # what a preemptible job does: on the scheduler's SIGTERM it marks the run, then it is killed
    killed = run_script(f"""
        import os, signal
        import tracklet.compat.wandb as wandb
        run = wandb.init(project="jobs", id="killed", dir={str(root)!r}, settings=wandb.Settings(console="off"))
        wandb.log({{"loss": 0.5}})
        run.mark_preempting()
        run.tracklet_run.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr
    assert tracklet.Api(root).run("jobs/killed").state == "crashed"  # tracklet's own state
    monkeypatch.setenv("TRACKLET_DIR", str(root))
    assert wandb.Api().run("jobs/killed").state == "preempted"
