"""``tracklet index --rebuild``: the store is derived from the record logs. A rebuilt store (on
SQLite and a real PostgreSQL) answers every query as the incrementally indexed one did, and the
tables no record log holds (users, API keys, project members, segment tables) survive it."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import QUIET, wait_for_system_sample
from test_cli import invoke

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import RecordLogWriter, read_log
from tracklet.proto import records_pb2 as pb
from tracklet.server.auth import Accounts
from tracklet.artifacts.registry import VersionInfo
from tracklet.errors import PromotionRequired
from tracklet.registry.sql import ModelRegistry
from tracklet.reports.sql import ReportStore
from tracklet.server.schema import (SERVER_TABLES, artifact_aliases, artifact_blobs, artifact_chunks,
                                    artifact_collections, artifact_commits,
                                    artifact_deleted_versions, artifact_files,
                                    artifact_packed_blobs,
                                    artifact_versions, audit_events, audit_intents, automation_attempts,
                                    automation_deliveries,
                                    automations, event_outbox, log_heads, log_segments, registry_checks,
                                    registry_members, run_creators, run_primaries, sweep_journal, sweep_leases, sweep_studies,
                                    media_prune_digests, media_prune_states)
from tracklet.store import Store
from tracklet.store.store import RUN_FIELDS
from tracklet.store.schema import blocks, runs, series

LOUD = {**QUIET, "console": "wrap"}
MONITORED = {**LOUD, "system_metrics": True, "system_interval": 0.02, "system_window": 0.05, "capture_wait": 60}


def _data_root(root: Path) -> list[str]:
    """Runs of every kind the store derives something from; returns their paths."""
    paths = []
    full = tracklet.init(project="p", dir=str(root), id="full", name="full", tags=["a", "b"], group="g",
                         config={"lr": 0.01, "layers": 3, "opt": {"name": "adam"}}, settings=MONITORED)
    for step in range(3000):
        full.log({"loss": 1.0 / (step + 1), "acc": step / 3000, **({"val/loss": 0.5} if step % 100 == 0 else {})})
        if step % 1000 == 0:
            print(f"step {step}")
            print(f"warning at {step}", file=sys.stderr)
            time.sleep(0.06)  # a few system metric windows
    full.alert("diverging", "loss went up", level="WARN")
    full.alert("done", level="INFO")
    tracklet.op(name="outer")(lambda: tracklet.op(name="inner")(lambda x: x + 1)(1))()  # a trace of two spans
    full.summary["best"] = 0.25
    wait_for_system_sample(full)
    full.finish()
    paths.append(full.path)

    failed = tracklet.init(project="p", dir=str(root), id="failed", config={"lr": 0.1}, settings=QUIET)
    failed.log({"loss": float("nan")})
    failed.log({"loss": float("inf")})
    failed.finish(exit_code=1)
    paths.append(failed.path)

    other = tracklet.init(project="q", dir=str(root), id="other", settings=QUIET)
    other.log({"x": 1})
    other.finish()
    paths.append(other.path)

    # A crashed run: its writer is gone and the log has no exit record.
    crashed = RunPaths(root, "p", "crashed")
    crashed.run_dir.mkdir(parents=True)
    writer = RecordLogWriter(crashed.log_file)
    record = pb.Record()
    record.run_start.run_id, record.run_start.project, record.run_start.start_time = "crashed", "p", 1.8e9
    writer.write(record.SerializeToString())
    record = pb.Record()
    record.history.new_keys.add(id=0, name="loss")
    record.history.steps.extend(range(10))
    record.history.times.extend([1.8e9 + i for i in range(10)])
    record.history.columns.add(key=0, floats=[float(i) for i in range(10)])
    writer.write(record.SerializeToString())
    writer.close()
    paths.append("p/crashed")

    # A damaged run: one history record's checksum broken in the middle of its log.
    damaged = tracklet.init(project="p", dir=str(root), id="damaged", settings=QUIET)
    for step in range(200):
        damaged.log({"loss": float(step)})
        if step % 50 == 49:
            damaged.flush()
    damaged.finish()
    log_file = Path(damaged.dir) / "run.tlog"
    frames = [offset for offset, payload in read_log(log_file).payloads
              if pb.Record.FromString(payload).WhichOneof("kind") == "history"]
    data = bytearray(log_file.read_bytes())
    data[frames[1] + 20] ^= 0x10
    log_file.write_bytes(bytes(data))
    paths.append(damaged.path)
    return paths


def _plain(value: Any) -> Any:
    """Query answers as comparable plain data (arrays as lists; NaN compares by its repr)."""
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    if isinstance(value, float):
        return repr(value)
    return value


def _answers(store: Store, paths: list[str]) -> dict[str, Any]:
    """What the dashboard and Api ask the store, for every run."""
    fields = tuple(field for field in RUN_FIELDS if field != "heartbeat_at")  # when the store last saw it grow
    answers: dict[str, Any] = {
        "p": store.runs("p", fields=fields),
        "q": store.runs("q", fields=fields),
        "filtered": store.runs("p", filter='config.lr < 0.05 and state = "finished"', order_by="-summary.loss",
                               fields=fields),
        "sorted": store.runs("p", order_by="name", limit=2, offset=1, fields=fields),
        "states": {row["run_id"]: row["state"] for row in store.runs("p")},
    }
    for path in paths:
        project, run_id = path.split("/")
        keys = [key for key in ("loss", "acc", "val/loss", "x") if key in store.run(project, run_id)["keys"]]
        answers[path] = {
            "history": store.history(path, keys, buckets=None),
            "buckets": store.history(path, keys, buckets=50),
            "window": store.history(path, keys, start=100, end=2500, buckets=20),
            "console": store.console(path, limit=2),
            "console_rest": store.console(path, after=2),
            "errors": store.console(path, stream="stderr"),
            "alerts": store.alerts(path),
            "system": store.system_history(path, buckets=10),
            "system_names": store.system_names(path),
            "traces": store.traces(project, run_id=run_id),
        }
    return _plain(answers)


def test_a_rebuilt_store_answers_every_query_as_before(root, store_url):
    paths = _data_root(root)
    store = Store(store_url, root=root)
    first = store.index()
    assert first.runs_updated == len(paths) and not first.failed
    assert any(line.startswith("p/damaged:") for line in first.damaged)
    before = _answers(store, paths)
    assert before["states"] == {"full": "finished", "failed": "failed", "crashed": "crashed", "damaged": "finished"}
    full = before["p/full"]
    assert len(full["alerts"]) == 2 and full["console"]["lines"] and full["system_names"]
    assert [s["name"] for s in full["traces"][0]["spans"]] == ["outer", "inner"]

    rebuilt = store.index(rebuild=True)
    assert rebuilt.runs_updated == len(paths) and not rebuilt.failed
    assert [line.split(":")[0] for line in rebuilt.damaged] == ["p/damaged"]
    assert _answers(store, paths) == before
    assert store.index().runs_updated == 0  # nothing left to ingest after a rebuild
    store.close()


def test_a_rebuild_keeps_users_keys_members_and_segment_tables(root, pg_url):
    _data_root_small(root)
    store = Store(pg_url, root=root)
    store.index()
    accounts = Accounts(store)
    key = accounts.create_user("alice").key
    accounts.create_user("bob", admin=True)
    accounts.create_key("alice", label="laptop")
    accounts.set_member("p", "alice", "write")
    with store.engine.begin() as connection:
        connection.execute(log_heads.insert().values(project="p", run_id="r", size=10, updated_at=1.0))
        connection.execute(log_segments.insert().values(project="p", run_id="r", offset=0, length=10))
        # Who created the run (server migration s0016).
        connection.execute(run_creators.insert().values(project="p", run_id="r", user_id=1, user_name="alice",
                                                        created_at=1.0))
        # A scaled-out server's artifact versions and the blobs each project holds (server migration s0002).
        connection.execute(artifact_blobs.insert().values(project="p", digest="a" * 64, size=3, created_at=1.0))
        connection.execute(artifact_versions.insert().values(
            project="p", name="mnist", version=0, type="dataset", digest="b" * 64, manifest="a" * 64, size=3,
            file_count=1, description="", metadata="{}", created_at=1.0, logged_by="p/r"))
        connection.execute(artifact_aliases.insert().values(project="p", name="mnist", alias="latest", version=0))
        # The commit id that answered it (server migration s0023).
        connection.execute(artifact_commits.insert().values(project="p", name="mnist", commit_id="c" * 32, version=0,
                                                            logged_by="p/r", created_at=1.0))
        # A collection's own description and tags (server migration s0018).
        connection.execute(artifact_collections.insert().values(project="p", name="mnist", description="digits",
                                                                tags='["vision"]', updated_at=1.0))
        # A deleted version's number, never given again (server migration s0015).
        connection.execute(artifact_deleted_versions.insert().values(
            project="p", name="mnist", version=1, digest="e" * 64, manifest="f" * 64, deleted_at=2.0))
        # Chunks and chunked files each project holds (server migration s0007).
        connection.execute(artifact_chunks.insert().values(project="p", chunk_id="c" * 64, pack_id="d" * 64,
                                                           pack_offset=0, length=3, created_at=1.0))
        connection.execute(artifact_files.insert().values(project="p", digest="e" * 64, recipe="a" * 64, size=3,
                                                          created_at=1.0))
        # Small blobs placed in packs (server migration s0013).
        connection.execute(artifact_packed_blobs.insert().values(digest="a" * 64, pack_id="d" * 64, pack_offset=3,
                                                                 length=3, member="c" * 64, created_at=1.0))
        # The audit log, the events outbox and automations with their delivery log (server migration s0004).
        connection.execute(audit_events.insert().values(
            time=1.0, actor="alice", key_id="k", action="put_log", method="PUT", target="runs/p/r/log", project="p",
            client="127.0.0.1", status=200, outcome="ok"))
        connection.execute(event_outbox.insert().values(time=1.0, kind="run.finished", subject="p/r", payload="{}",
                                                        dispatched=True))
        connection.execute(automations.insert().values(name="hook", event="*", filter="{}", action="webhook",
                                                       url="http://127.0.0.1:9/", secret="s", created_at=1.0))
        connection.execute(automation_deliveries.insert().values(
            event_id=1, automation_id=1, idempotency_key="i", state="delivered", attempts=1, next_attempt_at=1.0,
            created_at=1.0))
        connection.execute(automation_attempts.insert().values(delivery_id=1, attempt=1, time=1.0, status=200,
                                                               duration=0.1))
        # A server-mode sweep's row and study journal (server migration s0005).
        connection.execute(sweep_studies.insert().values(id="s1", project="p", info="{}", state="{}", created_at=1.0))
        connection.execute(sweep_journal.insert().values(sweep_id="s1", seq=0, log="{}"))
        connection.execute(sweep_leases.insert().values(sweep_id="s1", trial=0, agent="a", expires=1.0, record="{}"))
    # The model registry's tables (server migration s0003): a link, an alias move, a card, a protected
    # alias with a reviewed promotion request.
    registry = ModelRegistry(store.engine)
    source = VersionInfo(project="p", name="mnist", version=0, type="dataset", digest="b" * 64, manifest="a" * 64,
                         size=3, file_count=1)
    registry.link("model", "mnist", source, ["staging"], actor="alice")
    registry.save_card("model", "mnist", 0, "# mnist", author="alice")
    registry.protect("model", "mnist", "production", 1)
    with pytest.raises(PromotionRequired) as opened:
        registry.set_alias("model", "mnist", "production", "v0", actor="alice")
    registry.review(opened.value.request_id, "approve", reviewer="bob")
    # Registry roles and a protected alias's webhook check (server migration s0009).
    with store.engine.begin() as connection:
        connection.execute(registry_members.insert().values(registry="model", user_id=1, role="admin"))
        connection.execute(registry_checks.insert().values(registry="model", collection="mnist", alias="production",
                                                           automation_id=1))
        # An audit intent in flight (server migration s0012).
        connection.execute(audit_intents.insert().values(time=1.0, owner="host:1:1", event="{}"))
        # A shared run's primary claim (server migration s0021).
        connection.execute(run_primaries.insert().values(project="p", run_id="r", token="t" * 32, host="node-1",
                                                         pid=7, claimed_at=1.0))
        # A paged media prune under way (server migration s0025).
        connection.execute(media_prune_states.insert().values(
            token="a" * 32, project="p", policy="{}", phase="seen", step=2, after="p/r", done=1, running="", note="",
            removed=0, freed=0, kept_shared=0, grants=0, kept_running=0, updated_at=1.0))
        connection.execute(media_prune_digests.insert().values(token="a" * 32, digest="b" * 64, wanted=1, named=0,
                                                               shared=False))
    # Reports, their versions and view tokens (server migration s0008).
    reports = ReportStore(store.engine)
    report = reports.create("p", "Findings", "# loss\n", author="alice")
    reports.save("p", report["id"], "# loss, lower\n", parent=1, author="alice")
    reports.create_token("p", report["id"], author="alice")

    def kept() -> dict[str, list]:
        with store.engine.connect() as connection:
            return {table.name: sorted(map(tuple, connection.execute(sa.select(table)).all()), key=repr)
                    for table in SERVER_TABLES}

    before = kept()
    assert all(before.values())
    store.index(rebuild=True)
    assert kept() == before
    assert accounts.authenticate(key)[0] is not None
    assert accounts.members("p") and store.runs("p")
    store.close()


def _data_root_small(root: Path) -> None:
    run = tracklet.init(project="p", dir=str(root), id="r", settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()


def test_rebuild_drops_runs_whose_logs_are_gone_and_the_cli_says_what_it_did(root):
    """The derived tables really are emptied: a run whose log was deleted is not in the rebuilt store."""
    _data_root_small(root)
    gone = tracklet.init(project="p", dir=str(root), id="gone", settings=QUIET)
    gone.log({"loss": 2.0})
    gone.finish()
    assert invoke(root, "index").exit_code == 0
    (Path(gone.dir) / "run.tlog").unlink()
    result = invoke(root, "index", "--rebuild")
    assert result.exit_code == 0, result.output
    assert "Indexed 1 of 1 runs" in result.output
    with Store(root=root) as store:
        assert [row["run_id"] for row in store.runs("p")] == ["r"]
        with store.engine.connect() as connection:  # no series or blocks left of the gone run
            run_pks = {row.id for row in connection.execute(sa.select(runs.c.id))}
            assert {row.run_pk for row in connection.execute(sa.select(series.c.run_pk))} == run_pks
            orphans = sa.select(sa.func.count()).select_from(blocks).where(blocks.c.series_id.not_in(sa.select(series.c.id)))
            assert connection.execute(orphans).scalar() == 0


def _server_answers(client: Any, headers: dict[str, str], run_ids: list[str]) -> dict[str, Any]:
    """What the dashboard asks a server: projects, the runs list, each run's row (config,
    summary, state), history (exact and bucketed), console, alerts, system metrics."""
    def get(path: str, **params: Any) -> Any:
        response = client.get(f"/api/v1{path}", params=params, headers=headers)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def row(run: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in run.items() if key != "heartbeat_at"}  # when the store saw it grow

    answers: dict[str, Any] = {
        "projects": get("/projects"),
        "runs": [row(run) for run in get("/projects/p/runs")["runs"]],
        "sorted": [row(run) for run in get("/projects/p/runs", order_by="-summary.loss", filter='state = "finished"')["runs"]],
        "keys": get("/projects/p/keys"),
    }
    for run_id in run_ids:
        answers[run_id] = {
            "run": row(get(f"/runs/p/{run_id}")["run"]),
            "history": get(f"/runs/p/{run_id}/history", keys="loss,acc", buckets=0),
            "buckets": get(f"/runs/p/{run_id}/history", keys="loss", buckets=20),
            "console": get(f"/runs/p/{run_id}/console"),
            "alerts": get(f"/runs/p/{run_id}/alerts"),
        }
    return answers


def test_a_servers_segment_logs_rebuild_to_the_same_answers_and_accounts_survive(root, tmp_path, pg_url):
    """A scaled-out server keeps its logs as segments (`tracklet server --logs`): `tracklet index
    --rebuild --store ... --logs ...` re-derives its store from them, the server answers every
    query as before, and its users, keys, members and segment tables are untouched."""
    from fastapi.testclient import TestClient

    from tracklet.server.app import create_app

    paths = [path for path in _data_root(root) if path != "p/damaged"]  # uploads move intact logs only
    run_ids = [path.split("/")[1] for path in paths if path.startswith("p/")]
    server_root, segments = tmp_path / "server", tmp_path / "segments"
    with Store(pg_url, root=server_root) as store:
        accounts = Accounts(store)
        admin = {"Authorization": f"Bearer {accounts.create_user('root', admin=True).key}"}
        alice = accounts.create_user("alice").key
    app = create_app(server_root, store_url=pg_url, logs_url=str(segments))
    with TestClient(app) as client:
        for path in paths:
            project, run_id = path.split("/")
            log = RunPaths(root, project, run_id).log_file.read_bytes()
            middle = [offset for offset, _ in read_log(RunPaths(root, project, run_id).log_file).payloads][-2]
            for start, end in ((0, middle), (middle, len(log))):  # two segments each
                put = client.put(f"/api/v1/runs/{project}/{run_id}/log", params={"offset": start}, content=log[start:end],
                                 headers={**admin, "Content-Type": "application/octet-stream"})
                assert put.status_code == 200, put.text
        client.put("/api/v1/projects/p/members/alice", json={"role": "read"}, headers=admin)
        before = _server_answers(client, admin, run_ids)
        assert before["failed"]["run"]["state"] == "failed" and before["full"]["run"]["summary"]["best"] == 0.25
        assert len(before["full"]["alerts"]["alerts"]) == 2 and before["full"]["console"]["lines"]
        with Store(pg_url, root=server_root) as store:
            kept = _kept(store)
        assert len(kept["log_segments"]) == 2 * len(paths)

        result = invoke(server_root, "index", "--rebuild", "--store", pg_url, "--logs", str(segments))
        assert result.exit_code == 0, result.output
        assert f"Indexed {len(paths)} of {len(paths)} runs" in result.output

        assert _server_answers(client, admin, run_ids) == before
        with Store(pg_url, root=server_root) as store:
            assert _kept(store) == kept
        assert client.get("/api/v1/projects/p/runs", headers={"Authorization": f"Bearer {alice}"}).status_code == 200
        assert client.get("/api/v1/projects/q/runs", headers={"Authorization": f"Bearer {alice}"}).status_code == 403


def _kept(store: Store) -> dict[str, list]:
    with store.engine.connect() as connection:
        return {table.name: sorted(map(tuple, connection.execute(sa.select(table)).all()), key=repr)
                for table in SERVER_TABLES}
