"""Damaged record logs: the bounded corruption harness, the kill harness and the fuzz run.

A real recorded run is damaged in seeded, reproducible ways: bit flips, zeroed ranges,
truncations, a zero-filled file, a damaged header, and frames whose checksum is intact but whose
content is not (mutated payloads, history columns for undefined key ids or rows past the batch,
steps without times, unknown enum values, unknown record kinds). Every reader must read it
without raising, read exactly the records a clean log holding only the intact frames reads, and
report the damage: replay, ``Api.run().history()``/summary/console, ``tracklet runs``/``show``/
``export``, the store's indexer with ``Api.runs``/``Api.history``.

The oracle for byte damage: the frames whose bytes are untouched, framed into a fresh log. For a
crafted frame: the frame as a reader should use it (a batch without its bad column) or nothing.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracklet
from tracklet.cli.main import main as cli
from tracklet.core.reader import damage_summary, replay
from tracklet.core.recordlog import MAGIC, frame, scan
from tracklet.proto import records_pb2 as pb

import serverproc
from conftest import QUIET, REPO
from hardening_logs import (PROJECT, RUN_ID, SEED, Outcome, _byte_case, byte_cases, check_replay, clean_log, comparable,
                            corruption_attack, crafted_cases, flip, frames_of, kill_attack, record_pristine,
                            write_log)
from hardening_logs import read_state as _state

_frames, _clean_log, _write, _flip, _comparable = frames_of, clean_log, write_log, flip, comparable


# ---------------------------------------------------------------- the recorded run


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> bytes:
    """A real run's record log (hardening_logs.record_pristine)."""
    return record_pristine(tmp_path_factory.mktemp("pristine"))


def test_replay_reads_exactly_the_intact_records_of_every_damaged_log(pristine, tmp_path):
    rng = random.Random(SEED)
    cases = byte_cases(pristine, rng, 120) + crafted_cases(pristine, rng, 40)
    outcome = Outcome("replay")
    for case in cases:
        outcome.tried += 1
        check_replay(case, outcome, tmp_path)
    print(f"corruption harness: tried {outcome.tried}, lost {outcome.lost}, failed {outcome.failed}")
    assert outcome.problems == []


def test_every_reader_reads_damaged_logs_as_the_intact_frames_alone(tmp_path):
    """The benchmark's corruption attack (benchmarks/attacks.py) at a bounded count: replay,
    Api.run, tracklet runs/show/export/index and the store, against the oracle."""
    outcome = corruption_attack(24, tmp_path, every_reader=24)
    assert outcome.tried == 24 and outcome.problems == []


def test_the_reported_damage_says_what_and_where(pristine, tmp_path):
    frames = _frames(pristine)
    start, end, _ = frames[len(frames) // 2]
    state = _state(_flip(pristine, start + 12, 3), tmp_path)
    assert state.damages[0].offset == start and state.damages[0].end == end
    assert damage_summary(state) == (
        f"damaged at byte {start} (checksum mismatch): {end - start} byte(s) skipped, "
        f"reading resumed at the next intact frame (byte {end})"
    )
    crafted = crafted_cases(pristine, random.Random(SEED), 0)
    invalid = _state(next(c for c in crafted if c.name == "not protobuf").data, tmp_path)
    assert invalid.invalid_count == 1 and "1 invalid record(s) skipped (byte" in damage_summary(invalid)
    dropped = _state(next(c for c in crafted if c.name == "column for an undefined key id").data, tmp_path)
    assert dropped.partial_count == 1 and "key id 9999 was never defined" in damage_summary(dropped)
    alert = _state(next(c for c in crafted if c.name == "unknown alert level").data, tmp_path)
    assert "UNKNOWN_42" in [a.level for a in alert.alerts] and damage_summary(alert) is None
    console = _state(next(c for c in crafted if c.name == "unknown console stream").data, tmp_path)
    assert [(line.stream, line.text) for line in console.console] == [("stdout", "hello from a newer writer")]


# ---------------------------------------------------------------- the Api, the CLI and the store


STORE_CASES = ("zero-filled file", "20% bit flip", "column for an undefined key id", "not protobuf")


def test_a_log_cut_between_two_frames_reads_whole_and_a_cut_inside_one_is_damage(pristine, tmp_path):
    """A cut exactly at a frame's end is what a kill between two writes leaves: no damage to report,
    and the harness's oracle must not expect any (CI's random truncation drew such a cut)."""
    frames = frames_of(pristine)
    end = frames[len(frames) // 2][1]
    between, inside = _byte_case("between", pristine, pristine[:end]), _byte_case("inside", pristine, pristine[:end + 3])
    assert not between.damaged and inside.damaged
    for case in (between, inside):
        outcome = Outcome("replay")
        check_replay(case, outcome, tmp_path)
        assert outcome.problems == [], case.name


def _store_view(root: Path) -> dict:
    api = tracklet.Api(root)
    rows = api.runs(PROJECT, order_by="created")
    assert [r.id for r in rows] == [RUN_ID]
    series = api.history(f"{PROJECT}/{RUN_ID}", ["loss", "epoch", "eval/acc"], buckets=None)
    out = {s.key: (s.steps.tolist(), s.values.tolist()) for s in series}
    api.store.close()
    return out


def test_the_api_cli_and_store_read_damaged_runs_and_say_so(pristine, tmp_path):
    rng = random.Random(SEED)
    cases = {c.name: c for c in byte_cases(pristine, rng, 0) + crafted_cases(pristine, rng, 0)}
    runner = CliRunner()
    for name in STORE_CASES:
        case = cases[name]
        damaged_root, clean_root = tmp_path / f"damaged-{len(name)}-{name[:4]}", tmp_path / f"clean-{name[:4]}{len(name)}"
        _write(damaged_root, case.data)
        _write(clean_root, _clean_log(case.expected))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            recorded = tracklet.Api(damaged_root).run(f"{PROJECT}/{RUN_ID}")
            clean = tracklet.Api(clean_root).run(f"{PROJECT}/{RUN_ID}")
            assert _comparable(dict(recorded.history())) == _comparable(dict(clean.history())), name
            assert recorded.summary == clean.summary and recorded.console == clean.console, name
            assert recorded.damaged and recorded.damage, name

        listing = runner.invoke(cli, ["--dir", str(damaged_root), "runs", PROJECT])
        assert listing.exit_code == 0, (name, listing.output)
        assert "damaged" in listing.output, name
        shown = runner.invoke(cli, ["--dir", str(damaged_root), "show", f"{PROJECT}/{RUN_ID}"])
        assert shown.exit_code == 0 and "Record log" in shown.output and "damaged" in shown.output, name
        exported = runner.invoke(cli, ["--dir", str(damaged_root), "export", f"{PROJECT}/{RUN_ID}", "-f", "jsonl"])
        assert exported.exit_code == 0, (name, exported.output)
        assert exported.stdout.count("\n") == len(clean.history()["_step"]), name
        indexed = runner.invoke(cli, ["--dir", str(damaged_root), "index"])
        assert indexed.exit_code == 0 and "damaged record log" in indexed.output, (name, indexed.output)

        assert _store_view(damaged_root) == _store_view(clean_root), name


def test_one_zero_filled_log_does_not_break_a_project(pristine, tmp_path):
    """A zero-filled log (what some filesystems leave after power loss) beside an intact run."""
    _write(tmp_path, pristine)
    broken = tmp_path / "projects" / PROJECT / "runs" / "zeroed" / "run.tlog"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(bytes(4096))
    runner = CliRunner()
    listing = runner.invoke(cli, ["--dir", str(tmp_path), "runs", PROJECT, "--json"])
    assert listing.exit_code == 0, listing.output
    assert "zeroed" in listing.output and "bad header" in listing.output
    indexed = runner.invoke(cli, ["--dir", str(tmp_path), "index"])
    assert indexed.exit_code == 0 and "Indexed" in indexed.output, indexed.output
    api = tracklet.Api(tmp_path)
    assert sorted(r.id for r in api.runs(PROJECT, order_by="created")) == [RUN_ID, "zeroed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert {r.id: r.damaged for r in api.runs(PROJECT)} == {RUN_ID: False, "zeroed": True}
    api.store.close()


# ---------------------------------------------------------------- resume (item 2)


def test_resuming_a_log_with_a_flipped_bit_keeps_every_intact_row(pristine, root):
    log_file = _write(root, _flip(pristine, len(pristine) // 5, 0))
    before = _state(log_file.read_bytes(), root.parent)
    with pytest.warns(tracklet.TrackletWarning, match="stay in place and readers skip them"):
        run = tracklet.init(project=PROJECT, id=RUN_ID, dir=str(root), settings=QUIET, resume="allow")
    run.log({"loss": 0.001})
    run.finish()
    assert log_file.stat().st_size > len(pristine)  # nothing was cut
    assert log_file.read_bytes()[: len(pristine)] == _flip(pristine, len(pristine) // 5, 0)
    with pytest.warns(tracklet.TrackletWarning, match="damaged at byte"):
        after = tracklet.Api(root).run(f"{PROJECT}/{RUN_ID}").history()
    steps = before.history()["_step"]
    assert after["_step"] == steps + [steps[-1] + 1]  # every intact row, then the resumed one
    assert len(steps) > 200


def test_resuming_after_an_unreadable_tail_moves_it_aside(pristine, root):
    torn = pristine + b"\x40\x00\x00\x00\x00\x00\x00\x00\x0agarbage"
    log_file = _write(root, torn)
    with pytest.warns(tracklet.TrackletWarning, match=rf"moved to .*run\.tlog\.damaged-{len(pristine)}; nothing"):
        run = tracklet.init(project=PROJECT, id=RUN_ID, dir=str(root), settings=QUIET, resume="allow")
    run.log({"loss": 0.001})
    run.finish()
    sidecar = log_file.with_name(f"run.tlog.damaged-{len(pristine)}")
    assert sidecar.read_bytes() == torn[len(pristine):]
    assert log_file.read_bytes()[: len(pristine)] == pristine
    assert scan(log_file.read_bytes()).damage is None


def test_resuming_a_zero_filled_log_starts_it_again_and_keeps_the_bytes(root):
    log_file = _write(root, bytes(4096))
    with pytest.warns(tracklet.TrackletWarning, match="bad header"):
        run = tracklet.init(project=PROJECT, id=RUN_ID, dir=str(root), settings=QUIET, resume="allow")
    run.log({"loss": 1.0})
    run.finish()
    assert log_file.with_name("run.tlog.damaged-0").read_bytes() == bytes(4096)
    assert tracklet.Api(root).run(f"{PROJECT}/{RUN_ID}").history()["loss"] == [1.0]


# ---------------------------------------------------------------- sync (item 13)


def test_sync_uploads_past_local_damage_and_says_what_was_lost(pristine, root, servers):
    """A damaged region in the middle of a local log becomes gap records of its exact length in
    the server's copy: every intact record after it is uploaded at its own offset, and the copy's
    readers report the damage as the local ones do. A killed writer's torn last frame is left."""
    damaged = _flip(pristine, len(pristine) // 5, 0)
    _write(root, damaged)
    torn = root / "projects" / PROJECT / "runs" / "torn" / "run.tlog"  # a killed writer's last frame
    torn.parent.mkdir(parents=True)
    torn.write_bytes(pristine + frame(b"\x0a" * 100)[:50])
    server = servers()
    command = ("sync", "--url", server.url, "-q", "--all")
    done = serverproc.cli(*command, env={"TRACKLET_DIR": str(root)})
    assert done.returncode == 0, done.stdout + done.stderr
    damage = scan(damaged, resync=True).damage
    assert damage is not None and damage.end is not None
    assert f"damaged at byte {damage.offset:,} (checksum mismatch): {damage.length:,} byte(s) replaced by a gap " \
           "record" in done.stderr
    assert f"note: {PROJECT}/torn: uploaded {len(pristine):,} of {len(pristine) + 50:,} bytes" in done.stderr
    assert "Synced 2 of 2 run(s)" in done.stdout

    copy = server.root / "projects" / PROJECT / "runs" / RUN_ID / "run.tlog"
    stored = copy.read_bytes()
    assert len(stored) == len(damaged) and stored[damage.end:] == damaged[damage.end:]
    local, remote = replay(_write(root, damaged)), replay(copy)
    assert dict(remote.history()) == dict(local.history()) and len(local.history()["_step"]) > 0
    assert remote.config == local.config and remote.summary == local.summary
    assert [a.title for a in remote.alerts] == [a.title for a in local.alerts]
    assert [(d.offset, d.end) for d in remote.damages] == [(damage.offset, damage.end)]
    assert "damaged where it was recorded (checksum mismatch)" in remote.damages[0].reason
    from tracklet.store import Store

    store = Store(f"sqlite:///{root / 'copy-index.sqlite'}", root=server.root)
    report = store.index()
    assert [line for line in report.damaged if f"{PROJECT}/{RUN_ID}" in line and "damaged where it was recorded" in line]
    assert store.run(PROJECT, RUN_ID)["last_step"] == local.last_step
    store.close()
    # A second sync has nothing to send and nothing to say.
    again = serverproc.cli(*command, env={"TRACKLET_DIR": str(root)})
    assert again.returncode == 0 and "gap record" not in again.stderr and ": 0 new bytes" in again.stdout


def test_an_online_run_uploads_past_local_damage_and_says_so(pristine, root, servers):
    damaged = _flip(pristine, len(pristine) // 5, 0)
    _write(root, damaged)
    server = servers()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = tracklet.init(project=PROJECT, id=RUN_ID, dir=str(root), mode="online", resume="allow",
                            settings={**QUIET, "base_url": server.url, "upload_interval": 0.05})
        run.log({"loss": 0.001})
        run.finish()
    messages = [str(w.message) for w in caught]
    damage = scan(damaged, resync=True).damage
    assert any("online upload" in m and f"damaged at byte {damage.offset:,}" in m and "gap record" in m
               for m in messages), messages
    local = (root / "projects" / PROJECT / "runs" / RUN_ID / "run.tlog").read_bytes()
    copy = (server.root / "projects" / PROJECT / "runs" / RUN_ID / "run.tlog").read_bytes()
    assert len(copy) == len(local) and copy[damage.end:] == local[damage.end:]  # the resumed session too


# ---------------------------------------------------------------- kill harness


def test_killed_and_resumed_runs_lose_nothing_logged_a_second_before_each_kill(root):
    """Kill, resume, kill, ...: each resume meets a torn tail or none (hardening_logs.kill_attack:
    every row logged more than a second before its kill is read back, no step twice)."""
    outcome = kill_attack(root, 3)
    assert outcome.tried == 3 and outcome.problems == [], outcome.problems


# ---------------------------------------------------------------- fuzz


def test_the_frame_scanner_and_replay_survive_a_bounded_fuzz_run(pristine, tmp_path):
    """Coverage-guided (atheris, libFuzzer) from a corpus of a real log, for a bounded number of
    inputs; any exception from scanning or replaying is a failure (tests/fuzz_recordlog.py)."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pristine").write_bytes(pristine)
    (corpus / "small").write_bytes(_clean_log([p for _, _, p in _frames(pristine)][:3]))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fuzz_recordlog.py")), "-runs=2000", "-seed=1",
         # atheris' instrumentation alone brings the process to ~2 GiB (libFuzzer's default limit):
         # the bound that still catches an input that makes a reader blow up memory is set above it
         "-max_len=16384", "-timeout=20", "-rss_limit_mb=4096", str(corpus)],
        env={**os.environ, "PYTHONPATH": str(REPO), "TRACKLET_FUZZ_DIR": str(tmp_path)}, capture_output=True,
        text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Done 2000 runs" in done.stderr, done.stderr[-2000:]


# ---------------------------------------------------------------- the resync search itself


def _record_payload(size: int, seed: int) -> bytes:
    record = pb.Record()
    record.console.lines.add().text = random.Random(seed).randbytes(size).hex()[:size]
    return record.SerializeToString()


def test_resync_finds_intact_frames_across_garbage_and_next_to_other_damage():
    small = [_record_payload(100, seed) for seed in range(3)]
    big = _record_payload(200_000, 9)  # beyond the size checksummed without a plausible follower
    garbage = random.Random(SEED).randbytes(1 << 20)
    data = (MAGIC + frame(small[0]) + garbage + frame(big) + b"\x00" * 100 + frame(small[1])
            + garbage[:5000] + frame(small[2]))
    result = scan(data, resync=True)
    assert [payload for _, payload in result.payloads] == [small[0], big, small[1], small[2]]
    assert [d.offset for d in result.damages] == [
        8 + len(frame(small[0])),
        8 + len(frame(small[0])) + len(garbage) + len(frame(big)),
        len(data) - len(frame(small[2])) - 5000,
    ]
    assert all(d.end is not None for d in result.damages)


def test_resync_gives_up_within_its_budget_on_hostile_input():
    """Every ninth byte starts a candidate frame announcing 1 MiB: the search stops when its
    checksum budget is spent and says so, instead of checksumming a MiB at every position."""
    unit = (1 << 20).to_bytes(4, "little") + bytes(4) + b"\x0a"
    data = MAGIC + unit * ((2 << 20) // len(unit))
    result = scan(data, resync=True)
    assert result.payloads == [] and len(result.damages) == 1
    assert result.damages[0].end is None and "search limit reached" in result.damages[0].reason


def test_a_zero_filled_tail_is_damage_not_empty_records(pristine):
    result = scan(pristine + bytes(4096), resync=True)
    assert len(result.payloads) == len(_frames(pristine))
    assert result.damage.offset == len(pristine) and result.damage.reason.startswith("empty frame")


@pytest.mark.parametrize("length", [16, 17, 100, 138, 139, 140, 16395, 16396, 16397, 1 << 20, (1 << 21) + 12])
def test_gap_frames_fill_exactly_the_damaged_length_with_intact_frames(length):
    from tracklet.core.decode import RecordDecoder
    from tracklet.core.recordlog import gap_frame, scan_frames

    filler = gap_frame(length, "checksum mismatch")
    assert filler is not None and len(filler) == length
    result = scan_frames(filler, 0, base=4096)
    assert result.damage is None and result.end_offset == 4096 + length
    decoder = RecordDecoder()
    applied: list = []
    decoder.fold(result.payloads, applied.append)
    assert applied == []  # a gap is damage to report, never a record to apply
    assert [(d.offset, d.end) for d in decoder.gaps] == [(4096, 4096 + length)]
    assert gap_frame(15, "x") is None
