"""Finding a run's logged tables by its record log's frame headers (core/run_tables.logged_tables):
tiny frames' headers are read in chunks, large frames' 9 bytes at a time, with the same tables
found as a full read of the log, and damage or a torn tail handled as before."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from tracklet.core import run_tables
from tracklet.core.recordlog import FRAME_HEADER, MAGIC, RecordLogWriter, read_log
from tracklet.proto import records_pb2 as pb

TINY = pb.Record(console=pb.ConsoleOutput(lines=[pb.ConsoleLine(text="step ok")])).SerializeToString()
LARGE = pb.Record(console=pb.ConsoleOutput(lines=[pb.ConsoleLine(text="h" * 3000)])).SerializeToString()


def _table(step: int) -> bytes:
    return pb.Record(table_logged=pb.TableLogged(key="preds", step=step, table_id=f"t{step}")).SerializeToString()


def _write(path: Path, pattern: list[bytes | int]) -> None:
    """Frames in order: bytes as they are, an int as the table record of that step."""
    writer = RecordLogWriter(path)
    for item in pattern:
        writer.write(_table(item) if isinstance(item, int) else item)
    writer.close()


def _tables_read_whole(path: Path) -> list[int]:
    steps = []
    for _, payload in read_log(path).payloads:
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("kind") == "table_logged":
            steps.append(record.table_logged.step)
    return steps


def _counting(monkeypatch) -> list[int]:
    reads: list[int] = []
    real = run_tables._pread

    def pread(fd: int, length: int, offset: int) -> bytes:
        data = real(fd, length, offset)
        reads.append(len(data))
        return data

    monkeypatch.setattr(run_tables, "_pread", pread)
    return reads


# Tiny frames in long runs (chunks), runs of large frames (9 bytes each) and short runs of tiny ones
# between them; a table among each kind, and one at the log's very end.
PATTERN: list[bytes | int] = ([TINY] * 3000 + [1] + [TINY] * 500 + [LARGE] * 40 + [2] + [LARGE] * 10
                              + [TINY, LARGE] * 30 + [3] + [TINY] * 2000 + [4, TINY, 5, 6] + [TINY] * 50 + [7])


@pytest.mark.parametrize("chunk", [64, 4096, 1 << 20])  # chunks cut through headers and table records, or don't
def test_the_tables_found_are_those_a_full_read_finds_and_tiny_frames_are_read_in_chunks(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(run_tables, "_SCAN_CHUNK", chunk)
    path = tmp_path / "run.tlog"
    _write(path, PATTERN)
    reads = _counting(monkeypatch)
    found = run_tables.logged_tables(path)
    assert found is not None and [t.step for t in found] == _tables_read_whole(path) == [1, 2, 3, 4, 5, 6, 7]
    assert [t.table_id for t in found] == [f"t{step}" for step in range(1, 8)]
    size = path.stat().st_size
    assert sum(reads) <= size + len(PATTERN) * (FRAME_HEADER.size + 1)  # never more than the log, and a header a frame
    if chunk == 1 << 20:
        assert len(reads) < len(PATTERN) / 20  # not one read a frame


def test_a_log_of_large_frames_is_still_read_nine_bytes_a_frame(tmp_path, monkeypatch):
    path = tmp_path / "run.tlog"
    pattern: list[bytes | int] = [LARGE] * 200 + [1] + [LARGE] * 200
    _write(path, pattern)
    reads = _counting(monkeypatch)
    assert [t.step for t in run_tables.logged_tables(path)] == [1]
    assert sum(reads) == len(MAGIC) + len(pattern) * (FRAME_HEADER.size + 1) + len(_table(1))


@pytest.mark.parametrize("where", ["tiny", "large"])
def test_a_damaged_frame_length_gives_none_and_a_torn_tail_ends_the_log(tmp_path, where):
    """A zeroed frame length (damage: the caller reads the log whole, the reader resyncing past
    it) anywhere, in a stretch read in chunks or a frame at a time: None, at once, never a loop;
    a torn last frame (a live writer's), a table record or not: the tables before it."""
    path = tmp_path / "run.tlog"
    filler = TINY if where == "tiny" else LARGE
    pattern: list[bytes | int] = [filler] * 300 + [1] + [filler] * 300 + [2]
    _write(path, pattern)
    intact = path.read_bytes()
    table = _table(9)
    for torn in (b"\x10\x00",  # half a header
                 FRAME_HEADER.pack(len(table), zlib.crc32(table)) + table[:3],  # a table record cut short
                 FRAME_HEADER.pack(len(TINY), zlib.crc32(TINY)) + TINY[:1]):  # another record cut short
        path.write_bytes(intact + torn)
        assert [t.step for t in run_tables.logged_tables(path)] == [1, 2]
    middle = read_log(path).payloads[150][0]  # a frame's offset
    damaged = bytearray(intact)
    damaged[middle:middle + 4] = b"\0\0\0\0"
    path.write_bytes(bytes(damaged))
    assert run_tables.logged_tables(path) is None
    damaged[middle:middle + 4] = b"\xff\xff\xff\x7f"  # a length past MAX_RECORD_BYTES
    path.write_bytes(bytes(damaged))
    assert run_tables.logged_tables(path) is None
