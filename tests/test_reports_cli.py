"""``tracklet report ls|show|diff|revert|publish|freeze|rm|token`` over a data root (and ``export``'s
hook); errors are one line, status 2."""

from __future__ import annotations

from conftest import QUIET
from test_cli import assert_clean_error, invoke

import tracklet


def test_the_report_commands_over_a_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.delenv("TRACKLET_BASE_URL", raising=False)
    monkeypatch.delenv("TRACKLET_REPORT_URL", raising=False)
    run = tracklet.init(project="p", id="a", dir=str(root), settings=QUIET)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    rep = tracklet.Report("p", title="Sweep", dir=root)
    rep.add_text("# First").add_panel({"keys": ["loss"]}).save()
    rep.add_text("More.").save()
    env = {"TRACKLET_ACTOR": "cli-user"}

    listed = invoke(root, "report", "ls", "p")
    assert listed.exit_code == 0 and f"{rep.id}" in listed.output and "Sweep" in listed.output
    assert "draft" in listed.output
    shown = invoke(root, "report", "show", rep.path)
    assert shown.exit_code == 0 and f"p/{rep.id}  v2 (latest v2)" in shown.output and "More." in shown.output
    assert invoke(root, "report", "show", str(rep.id), "--markdown").output == rep.markdown
    assert "+More.\n" in invoke(root, "report", "diff", rep.path, "1").output

    reverted = invoke(root, "report", "revert", rep.path, "1", env=env)
    assert reverted.exit_code == 0 and "v3" in reverted.output and "cli-user" in reverted.output
    frozen = invoke(root, "report", "freeze", rep.path)
    assert frozen.exit_code == 0 and "v4" in frozen.output
    assert "frozen: {run_ids: [a], max_step: 4}" in invoke(root, "report", "show", rep.path, "--markdown").output

    made = invoke(root, "report", "token", "create", rep.path, "--label", "team")
    token_id = made.stderr.split()[2]
    assert made.output.strip().splitlines()[-1].startswith("trv_")
    assert invoke(root, "report", "token", "revoke", rep.path, token_id).exit_code == 0
    assert "revoked" in invoke(root, "report", "token", "ls", rep.path).output

    assert invoke(root, "report", "publish", rep.path).exit_code == 0
    assert "published v4" in invoke(root, "report", "ls", "p").output
    assert_clean_error(invoke(root, "report", "revert", rep.path, "1"), "published")
    assert_clean_error(invoke(root, "report", "show", "p/999"), "no report 999")
    assert_clean_error(invoke(root, "report", "show", "nope"), "project/id")
    assert_clean_error(invoke(root, "report", "show", rep.path, "--project", "other"), "not in project 'other'")

    assert_clean_error(invoke(root, "report", "rm", rep.path), "--yes")  # no terminal to ask on
    assert str(rep.id) in invoke(root, "report", "ls", "p").output
    removed = invoke(root, "report", "rm", rep.path, "--yes")
    assert removed.exit_code == 0 and f"deleted report {rep.path} ('Sweep')" in removed.output
    assert invoke(root, "report", "ls", "p").output == ""
    assert_clean_error(invoke(root, "report", "show", rep.path), f"no report {rep.id}")


def test_export_is_hooked_in(tmp_path):
    import importlib.util

    from tracklet.cli.report import report_group

    assert "export" in report_group.commands
    if importlib.util.find_spec("tracklet.cli.report_export") is None:  # reports-ui's command not in this build
        assert_clean_error(invoke(tmp_path, "report", "export", "p/1", "--format", "html", "-o", "x.html"),
                           "not available")
    else:
        from tracklet.cli.report_export import export

        assert report_group.commands["export"] is export
