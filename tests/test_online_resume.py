"""An online run resumed on a machine that doesn't have its log (W&B's pattern on preemptible
nodes): ``init(id=..., resume="allow")`` downloads the server's copy, checked frame by frame, and
goes on from it; the server's log read route that serves it (bounded pieces, whole frames)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import httpx
import pytest

import tracklet
from tracklet.core.layout import RunPaths
from tracklet.core.recordlog import FRAME_HEADER, MAGIC, frame, read_log
from tracklet.errors import ResumeError

QUIET = {"console": "off", "capture_environment": False, "system_metrics": False}


def _online(root: Path, url: str, **kwargs) -> tracklet.Run:
    settings = {**QUIET, "base_url": url, **kwargs.pop("settings", {})}
    return tracklet.init(project="p", dir=str(root), mode="online", settings=settings, **kwargs)


def _first_session(root: Path, url: str, run_id: str = "runabc") -> int:
    """Five steps, a config and a summary, recorded online and finished; the log's size."""
    run = _online(root, url, id=run_id, config={"lr": 0.1, "layers": 3})
    for step in range(5):
        run.log({"loss": float(step)})
    run.summary["best"] = 0.5
    run.finish()
    return RunPaths(root, "p", run_id).log_file.stat().st_size


def _server_log(server_root: Path, run_id: str = "runabc") -> Path:
    return server_root / "projects" / "p" / "runs" / run_id / "run.tlog"


def test_an_online_run_resumes_from_the_server_on_a_machine_without_its_log(servers, tmp_path):
    server = servers(tmp_path / "srv")
    first = _first_session(tmp_path / "a", server.url)
    assert _server_log(tmp_path / "srv").stat().st_size == first

    run = _online(tmp_path / "b", server.url, id="runabc", resume="allow")  # an empty data root
    assert run.config["lr"] == 0.1 and run.summary["best"] == 0.5
    for step in range(3):
        run.log({"loss": 10.0 + step})
    run.finish()

    local = RunPaths(tmp_path / "b", "p", "runabc").log_file
    assert not list(local.parent.glob("*.download"))
    assert _server_log(tmp_path / "srv").read_bytes() == local.read_bytes()  # appended to, never forked
    remote = tracklet.Api(base_url=server.url).run("p/runabc")
    history = remote.history(["loss"])
    assert history["_step"] == list(range(8))  # every step once, in order: the counter went on
    assert history["loss"] == [0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0]
    assert remote.config["lr"] == 0.1 and remote.config["layers"] == 3
    assert remote.summary["best"] == 0.5 and remote.summary["loss"] == 12.0
    assert remote.state == "finished"


def test_resume_must_of_a_run_the_server_lacks_raises_naming_the_server(servers, tmp_path):
    server = servers(tmp_path / "srv")
    with pytest.raises(ValueError, match=f"resume='must'.*nor on the server {server.url}"):
        _online(tmp_path / "b", server.url, id="nosuch", resume="must")
    assert not (tmp_path / "b" / "projects").exists()  # not even an empty project
    # "allow" starts it new, as a local resume of an unknown run does
    run = _online(tmp_path / "b", server.url, id="nosuch", resume="allow")
    run.log({"loss": 1.0})
    run.finish()
    assert tracklet.Api(base_url=server.url).run("p/nosuch").history(["loss"])["_step"] == [0]


def test_a_wandb_script_resumes_online_from_the_server(servers, tmp_path, monkeypatch):
    import tracklet.compat.wandb as wandb

    server = servers(tmp_path / "srv")
    _first_session(tmp_path / "a", server.url, run_id="wbrun")
    monkeypatch.setenv("TRACKLET_MODE", "online")
    monkeypatch.setenv("TRACKLET_BASE_URL", server.url)
    monkeypatch.setenv("TRACKLET_DIR", str(tmp_path / "b"))
    quiet = wandb.Settings(console="off", x_disable_stats=True, disable_git=True, x_disable_meta=True)
    run = wandb.init(project="p", id="wbrun", resume="allow", settings=quiet)
    assert run.config["lr"] == 0.1
    wandb.log({"loss": 42.0})
    wandb.finish()
    history = tracklet.Api(base_url=server.url).run("p/wbrun").history(["loss"])
    assert history["_step"] == list(range(6)) and history["loss"][-1] == 42.0


def test_a_damaged_server_copy_leaves_no_local_run_and_says_where(servers, tmp_path):
    server = servers(tmp_path / "srv")
    size = _first_session(tmp_path / "a", server.url)
    stored = _server_log(tmp_path / "srv")
    data = bytearray(stored.read_bytes())
    data[size // 2] ^= 0xFF  # a flipped byte inside a frame
    stored.write_bytes(bytes(data))

    with pytest.raises(ResumeError, match=r"no intact frame starts at byte \d+ of the stored log of p/runabc"):
        _online(tmp_path / "b", server.url, id="runabc", resume="allow")
    assert not (tmp_path / "b" / "projects").exists()


def test_a_stored_frame_that_is_no_record_is_refused_by_the_download(servers, tmp_path):
    """A frame whose CRC is right but whose payload is not a record the readers accept: the
    server serves what it stores, the client checks every record before keeping any."""
    server = servers(tmp_path / "srv")
    _first_session(tmp_path / "a", server.url)
    stored = _server_log(tmp_path / "srv")
    stored.write_bytes(stored.read_bytes() + frame(b"\xff\xff\xff\xff"))  # not a tracklet.v1.Record

    with pytest.raises(ResumeError, match=r"the frame at byte \d+ is not a valid record"):
        _online(tmp_path / "b", server.url, id="runabc", resume="must")
    assert not (tmp_path / "b" / "projects" / "p" / "runs" / "runabc").exists()


def test_an_unreachable_server_is_named_and_no_log_is_started(tmp_path, monkeypatch):
    from tracklet.client import log_download

    monkeypatch.setattr(log_download, "REACH_TIMEOUT", 0.5)
    with pytest.raises(ResumeError, match=r"cannot .*127\.0\.0\.1:9.*not resumed"):
        _online(tmp_path / "b", "http://127.0.0.1:9", id="runabc", resume="allow")
    assert not (tmp_path / "b" / "projects").exists()
    # no id: a new run whatever the server holds, so the server isn't asked (the uploader retries later)
    run = _online(tmp_path / "b", "http://127.0.0.1:9", resume="allow", settings={"upload_timeout": 0})
    run.log({"loss": 1.0})
    run.finish()


def test_the_log_route_answers_whole_frames_in_bounded_pieces(servers, tmp_path):
    server = servers(tmp_path / "srv")
    run = _online(tmp_path / "a", server.url, id="big")
    for step in range(2_000):
        run.log({"loss": float(step), "note": "x" * 200})
        if step % 100 == 99:
            run.flush()
    run.finish()
    stored = _server_log(tmp_path / "srv", "big").read_bytes()
    url = f"{server.url}/api/v1/runs/p/big/log"
    pieces, offset = [], 0
    with httpx.Client(timeout=30) as http:
        while offset < len(stored):
            answer = http.get(url, params={"offset": offset, "limit": 4096})
            assert answer.status_code == 200 and int(answer.headers["X-Tracklet-Log-Size"]) == len(stored)
            assert 0 < len(answer.content) and (len(answer.content) <= 4096 or read_log_count(answer.content) == 1)
            pieces.append(answer.content)
            offset += len(answer.content)
        assert len(pieces) > 1 and b"".join(pieces) == stored
        assert http.get(url, params={"offset": len(stored)}).content == b""
        assert http.get(url, params={"offset": len(MAGIC) + 1}).status_code == 400  # not a frame boundary
        assert http.get(url, params={"limit": 17 << 20}).status_code == 422  # at most 16 MiB a request
        assert http.get(f"{server.url}/api/v1/runs/p/nosuch/log").status_code == 404


def read_log_count(piece: bytes) -> int:
    """Frames in a piece that doesn't start at the header."""
    count, at = 0, 0
    while at < len(piece):
        length, _ = FRAME_HEADER.unpack_from(piece, at)
        at += FRAME_HEADER.size + length
        count += 1
    return count


def test_the_log_route_needs_the_read_role(servers, tmp_path):
    from serverproc import cli

    root = tmp_path / "srv"
    admin = cli("admin", "--dir", str(root), "create-user", "root", "--admin", timeout=60).stdout.strip()
    server = servers(root, dev=False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as http:
        outsider = http.post("/api/v1/users", json={"name": "outsider"}).json()["key"]
    run = tracklet.init(project="p", id="keyed", dir=str(tmp_path / "a"), mode="online",
                        settings={**QUIET, "base_url": server.url, "api_key": admin})
    run.log({"loss": 1.0})
    run.finish()
    url = f"{server.url}/api/v1/runs/p/keyed/log"
    assert httpx.get(url, headers={"Authorization": f"Bearer {outsider}"}).status_code == 403
    assert httpx.get(url).status_code == 401
    answer = httpx.get(url, headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 200 and answer.content == _server_log(root, "keyed").read_bytes()


def test_the_log_route_reads_segments_in_shared_storage(servers, tmp_path, pg_url):
    server = servers(tmp_path / "srv", store=pg_url, extra=("--logs", str(tmp_path / "segments")))
    _first_session(tmp_path / "a", server.url)
    run = _online(tmp_path / "b", server.url, id="runabc", resume="must")
    run.log({"loss": 7.0})
    run.finish()
    history = tracklet.Api(base_url=server.url).run("p/runabc").history(["loss"])
    assert history["_step"] == list(range(6)) and history["loss"][-1] == 7.0


# ---------------------------------------------------------------- the download's checks, byte by byte


def _checked(data: bytes, pieces: list[int]) -> bytes:
    """Feed ``data`` to a ``FrameChecker`` cut at ``pieces`` (chunk sizes), as one answer."""
    from tracklet.client.log_download import FrameChecker

    out = io.BytesIO()
    checker = FrameChecker(out, "test")
    checker.begin()
    at = 0
    for size in pieces:
        checker.feed(data[at:at + size])
        at += size
    checker.feed(data[at:])
    checker.end()
    return out.getvalue()


def test_the_checker_keeps_intact_frames_however_the_answer_is_chunked(tmp_path):
    run = tracklet.init(project="p", id="c", dir=str(tmp_path), settings=QUIET, config={"a": 1})
    run.log({"loss": 1.0})
    run.finish()
    data = RunPaths(tmp_path, "p", "c").log_file.read_bytes()
    assert read_log(RunPaths(tmp_path, "p", "c").log_file).damage is None
    for pieces in ([], [1] * 40, [3, 7, 11, 13]):
        assert _checked(data, pieces) == data


@pytest.mark.parametrize("damage", ["cut", "crc", "length", "header"])
def test_the_checker_refuses_a_cut_or_corrupted_answer(tmp_path, damage):
    run = tracklet.init(project="p", id="c", dir=str(tmp_path), settings=QUIET)
    run.log({"loss": 1.0})
    run.finish()
    data = bytearray(RunPaths(tmp_path, "p", "c").log_file.read_bytes())
    expected = {"cut": "ends inside a frame", "crc": "checksum mismatch", "length": "implausible frame length",
                "header": "not a tracklet record log"}[damage]
    if damage == "cut":
        data = data[:-3]
    elif damage == "crc":
        data[-1] ^= 0xFF
    elif damage == "length":
        FRAME_HEADER.pack_into(data, len(MAGIC), 0, zlib.crc32(b""))
    else:
        data[0] ^= 0xFF
    with pytest.raises(ResumeError, match=expected):
        _checked(bytes(data), [5])


def test_a_window_at_an_offset_that_is_no_frame_boundary_reads_at_most_its_bound():
    """The log route reads at an offset the client chose: one that isn't a frame boundary must not
    make the server read the rest of the log (the indexer's fallback past long damage)."""
    from tracklet.store.logsource import read_window

    log = MAGIC + b"".join(frame(b"\x08" + bytes([step % 100]) * 1000) for step in range(1_000))
    asked: list[int] = []

    def read(start: int, end: int) -> bytes:
        asked.append(min(end, len(log)) - start)
        return log[start:end]

    for resync in (False, True):
        asked.clear()
        result = read_window(read, len(MAGIC) + 3, len(MAGIC) + 3 + 4096, len(log), resync=resync, bound=8192)
        assert sum(asked) <= 8192 + 4096
        assert not result.payloads or result.payloads[0][0] != len(MAGIC) + 3
    whole = read_window(read, len(MAGIC), len(MAGIC) + 4096, len(log), bound=8192)
    assert whole.payloads and whole.payloads[0][0] == len(MAGIC)
