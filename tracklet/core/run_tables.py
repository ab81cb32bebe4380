"""How a run's logged tables are named as artifact versions, as W&B names them: a table logged
under ``key`` by run ``<id>`` is version ``v<n>`` (the writer's number, else the n-th log of that
key by the run, from 0: :func:`version_numbers`)
of artifact ``run-<id>-<key>``, type ``run_table`` (docs/tables.md#lineage). tracklet keeps the
tables in the run's record log; the store indexes each log as a ``logged`` lineage edge under
that name (``store/lineage.py``), and a run that uses one records an ``ArtifactUsed`` naming it.

Every place that makes such a name calls :func:`table_artifact_name`, and every place that reads
one (``use_artifact``, ``wandb.Api().artifact``, ``tracklet artifact show``) asks
:func:`table_name_run_ids` which runs it may name and compares :func:`table_artifact_name` of
their keys (:func:`names_table`): one rule, so the store's edges, the lineage route and the
resolvers agree. :func:`run_logged_tables` reads a run's ``TableLogged`` records without reading
the rest of its log (``use_artifact`` of a run table runs on the caller's training thread)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

RUN_TABLE_TYPE = "run_table"
MAX_NAME_CHARS = 128  # W&B's artifact name limit (NAME_MAXLEN), and the store's name column
_HASH_CHARS = 11  # 64 bits, url-safe base64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_\-.]+")
_RUN_ID_CHARS = re.compile(r"[A-Za-z0-9._-]+")  # what a run id holds (core/layout.py)


def table_artifact_name(run_id: str, key: str) -> str:
    """The name of the artifact of a table logged under ``key`` by run ``run_id``.

    ``run-<run id>-<key>`` as W&B names it; when that has characters an artifact name can't
    (``/`` in ``val/preds``, a space), those left out and a 6-character suffix (the CRC-32 of the
    full name, url-safe base64) added, as W&B's ``sanitize_artifact_name``
    (``wandb/sdk/artifacts/_internal_artifact.py``) does: ``run-<id>-valpreds-<crc>``.

    A name longer than 128 characters (W&B's ``NAME_MAXLEN``; W&B's ``log`` raises ``ValueError``
    for such a table, tracklet records it) is cut to 116 and given ``-`` and an 11-character hash
    of the full name (64 bits of BLAKE2b, url-safe base64), 128 in all: two keys sharing a long
    prefix get two names, and a name is never cut again (the store, the lineage route and the
    resolvers all see these 128 characters)."""
    name = f"run-{run_id}-{key}"
    sanitized = _UNSAFE.sub("", name)
    if sanitized != name:
        crc = zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF
        sanitized = f"{sanitized}-{base64.urlsafe_b64encode(crc.to_bytes(4, 'big')).rstrip(b'=').decode('ascii')}"
    if len(sanitized) <= MAX_NAME_CHARS:
        return sanitized
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    suffix = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return f"{sanitized[:MAX_NAME_CHARS - _HASH_CHARS - 1]}-{suffix}"


def table_name_run_ids(name: str, run_ids: Callable[[str], Iterable[str]] | None = None) -> Iterator[str]:
    """The run ids a run table name ``name`` (no project, no version) may hold, shortest first:
    each prefix of what follows ``run-`` up to a ``-`` that is a valid run id. A name cut to 128
    characters keeps a run id of up to 112 whole; a longer id is cut too, to its first 112
    characters (:func:`cut_run_id_prefix`), and only a listing of the runs finds it: ``run_ids``
    (a data root's: :func:`local_run_ids`; a server's) gives the ids starting with that prefix,
    which follow, in name order. Lazy: the listing is asked for only once the ids the name holds
    whole are used up (a long key's table, the usual cut name, is found without it). Every caller
    still checks each candidate's keys (:func:`names_table`), so a candidate that holds no such
    table costs a lookup, never a wrong answer."""
    from tracklet.core.layout import is_valid_name

    if not name.startswith("run-") or len(name) > MAX_NAME_CHARS:
        return
    rest = name[len("run-"):]
    whole = [rest[:place] for place, char in enumerate(rest) if char == "-" and is_valid_name(rest[:place])]
    yield from whole
    prefix = cut_run_id_prefix(name)
    if prefix is not None and run_ids is not None:
        yield from sorted({run_id for run_id in run_ids(prefix) if run_id.startswith(prefix)
                           and len(run_id) > len(prefix) and is_valid_name(run_id)} - set(whole))


def cut_run_id_prefix(name: str) -> str | None:
    """The first 112 characters of the run id of a cut run table name (``run-`` + 112 characters
    of a longer run id, ``-`` and the 11-character hash: :func:`table_artifact_name`), or None when
    ``name`` can't be one."""
    keep = MAX_NAME_CHARS - _HASH_CHARS - 1
    if len(name) != MAX_NAME_CHARS or not name.startswith("run-") or name[keep] != "-":
        return None
    prefix = name[len("run-"):keep]
    return prefix if _RUN_ID_CHARS.fullmatch(prefix) and prefix[0].isalnum() else None


def local_run_ids(root: Any, project: str) -> Callable[[str], list[str]]:
    """The ids of data root ``root``'s runs of ``project`` starting with a prefix (one directory
    listing), for :func:`table_name_run_ids`."""
    from tracklet.core.layout import RunPaths, is_valid_name

    def listing(prefix: str) -> list[str]:
        runs = RunPaths(root, project, prefix).run_dir.parent
        try:
            with os.scandir(runs) as entries:
                return [entry.name for entry in entries if entry.name.startswith(prefix) and is_valid_name(entry.name)]
        except (OSError, ValueError):
            return []

    return listing


def names_table(name: str, run_id: str, key: str) -> bool:
    """Whether ``name`` is the artifact name of run ``run_id``'s table ``key``."""
    return table_artifact_name(run_id, key) == name


#: A writer's number (``version_plus_one - 1``) is kept below this; at or above, the record has none.
WRITER_NUMBERS = 1 << 62


def version_numbers(records: Iterable[Any], taken: dict[str, Any] | None = None,
                    start: dict[str, int] | None = None) -> list[int]:
    """The ``n`` of ``run-<id>-<key>:v<n>`` of each ``TableLogged`` record of one run, given in
    the readers' order (:func:`run_logged_tables`: the run's own log, then each part's by label).

    A record whose writer gave it a number (``version_plus_one``, from the run directory's counter
    that every writer of the run on one machine shares: ``media/table_versions.py``) keeps it, so
    the numbers don't depend on the order the writers' logs are read or indexed in. The records
    without one (logs written before the field, a counter that could not be taken), and any whose
    number an earlier record of its key gave already (writers on two machines, each with a counter
    of its own), get the lowest numbers no record of the key has, in order: for logs without the
    field this is the rule readers always had (the n-th log of the key, in the readers' order).

    ``taken`` (key -> the numbers had already: a set, or anything with ``in`` and ``add``) and
    ``start`` (key -> a number below which all are had) say what came before (the store's indexed
    edges), and are updated. Every number given is unique per key."""
    records = list(records)
    taken = {} if taken is None else taken
    start = {} if start is None else start
    numbers = [-1] * len(records)
    for place, record in enumerate(records):  # the writers' numbers first: they never move
        number = int(getattr(record, "version_plus_one", 0)) - 1
        if 0 <= number < WRITER_NUMBERS:
            used = taken.get(record.key)
            if used is None:
                used = taken[record.key] = set()
            if number >= start.get(record.key, 0) and number not in used:
                used.add(number)
                numbers[place] = number
    for place, record in enumerate(records):  # then the rest, in order, the lowest free numbers
        if numbers[place] < 0:
            key = record.key
            used = taken.get(key)
            if used is None:
                used = taken[key] = set()
            number = start.get(key, 0)
            while number in used:
                number += 1
            used.add(number)
            start[key] = number + 1
            numbers[place] = number
    return numbers


def numbered_versions(records: Iterable[Any], match: Callable[[Any], bool] | None = None) -> list[tuple[int, Any]]:
    """(n, record) of each record ``match`` takes (all by default), numbered by
    :func:`version_numbers` over all of ``records`` (a key's numbers don't depend on which records
    are asked for), in version order."""
    records = list(records)
    pairs = [(number, record) for number, record in zip(version_numbers(records), records)
             if match is None or match(record)]
    pairs.sort(key=lambda pair: pair[0])
    return pairs


def records_of_version(records: Iterable[Any], key: str, number: int) -> list[Any] | None:
    """The records that make version ``v<number>`` of ``key`` (numbered by :func:`version_numbers`),
    as ``media/table_read.open_table`` takes them (that record last): the record itself, and for
    an INCREMENTAL table the increments of its table before it. None when there is no such
    version. Several writers may log one key at one step: a version is read by its record, never
    by its step."""
    records = [record for record in records if record.key == key]
    found = dict(numbered_versions(records)).get(number)
    if found is None:
        return None
    if found.log_mode != 3:  # LOG_MODE_INCREMENTAL
        return [found]
    earlier = [record for record in records if record.log_mode == 3 and record.table_id == found.table_id
               and record.increment < found.increment]
    return [*earlier, found]


_TABLE_TAG = (14 << 3) | 2  # a Record whose kind is table_logged (field 14, length-delimited) starts so
_pread = os.pread  # what reads the log (a test counts the bytes through it)
# Frame headers are read a chunk at a time (many per read) once this many frames in a row were each
# under _SMALL_FRAME bytes: a log of millions of tiny frames (one read of 9 bytes a frame cost ~1 s a
# million); one of large frames (history records) is still read 9 bytes a frame, not its size.
_SCAN_CHUNK = 1 << 20
_SMALL_FRAME = 512
_SMALL_RUN = 16


def logged_tables(path: Any) -> list[Any] | None:
    """The ``TableLogged`` records of the record log at ``path``, in log order, reading only the
    frames' 9 first bytes (header and the record's kind) and the table records themselves: a log
    of millions of rows is a few bytes a frame, not its size. Where frames are tiny (``_SMALL_RUN``
    frames in a row under ``_SMALL_FRAME`` bytes, or a chunk's frames under that on average), the
    headers are read ``_SCAN_CHUNK`` bytes at a time instead, many per read: memory stays one
    chunk, and as a chunk is read only from the first frame past the last one, the bytes read stay
    under the log's size plus the 9 of each frame and the table records. None when the log is
    damaged (a bad header, a frame whose length is implausible, a table record whose checksum
    fails): read it whole then (the reader resyncs past damage). A torn last frame (a live
    writer's) ends it."""
    from tracklet.core.recordlog import FRAME_HEADER, MAGIC, MAX_RECORD_BYTES
    from tracklet.proto import records_pb2 as pb

    header = FRAME_HEADER.size
    unpack = FRAME_HEADER.unpack_from
    found = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if _pread(fd, len(MAGIC), 0) != MAGIC:
            return None
        offset = len(MAGIC)
        small = 0  # frames in a row under _SMALL_FRAME bytes, up to _SMALL_RUN
        while offset < size:
            chunk = _pread(fd, min(_SCAN_CHUNK, size - offset) if small >= _SMALL_RUN else header + 1, offset)
            if len(chunk) < header + 1:
                break  # a torn last frame
            # Every frame whose head (header and kind) is in the chunk: ``at`` is relative to ``offset``.
            at, last, frames = 0, len(chunk) - header - 1, 0
            while at <= last:
                length, checksum = unpack(chunk, at)
                if not 0 < length <= MAX_RECORD_BYTES:
                    return None
                if chunk[at + header] == _TABLE_TAG:
                    start, end = at + header, at + header + length
                    if offset + end > size:
                        break  # a torn last frame
                    payload = chunk[start:end] if end <= len(chunk) else _pread(fd, length, offset + start)
                    if len(payload) != length or zlib.crc32(payload) != checksum:
                        return None
                    record = pb.Record()
                    record.ParseFromString(payload)
                    if record.WhichOneof("kind") != "table_logged":
                        return None
                    found.append(record.table_logged)
                at += header + length
                frames += 1
            else:
                if frames == 1:
                    small = min(small + 1, _SMALL_RUN) if at < header + _SMALL_FRAME else 0
                else:  # a chunk: on in chunks while its frames were tiny on average
                    small = _SMALL_RUN if at < frames * (header + _SMALL_FRAME) else 0
                offset += at
                continue
            break  # a torn table record ends the log
    finally:
        os.close(fd)
    return found


def run_logged_tables(paths: Any) -> list[Any] | None:
    """The ``TableLogged`` records of run ``paths`` (a ``RunPaths``) in the order the log reader
    lists them (``RecordedRun(paths)._read.tables``): its own log's, then each shared-run part's
    by label (``core/parts.merge_parts``). None when a log is damaged or unreadable (read the run
    whole then)."""
    found: list[Any] = []
    logs = [paths.log_file] if paths.log_file.is_file() else []
    if paths.part is None:
        logs += [paths.part_paths(label).log_file for label in paths.parts()]
    for log in logs:
        try:
            tables = logged_tables(log)
        except OSError:
            return None
        if tables is None:
            return None
        found.extend(tables)
    return found


__all__ = ["MAX_NAME_CHARS", "RUN_TABLE_TYPE", "cut_run_id_prefix", "local_run_ids", "logged_tables", "names_table", "numbered_versions", "records_of_version", "run_logged_tables",
           "table_artifact_name", "table_name_run_ids", "version_numbers"]
