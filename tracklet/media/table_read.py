"""Which fragments make a logged table version: ``run.table(key, step=None)`` (``RecordedRun``).

A run's ``TableLogged`` records (``RunState.tables``, in log order) say, per log of a table, its
step, its log mode, its table id and its fragments. The version read at ``step`` (default: the
latest) is the last record of ``key`` at or before it; when that record is INCREMENTAL, the
version is every increment of the same table (same id) at or before it, in order.

Records come from a record log on disk (a trust boundary): a digest that is not 64 hex digits is
refused by name, a fragment missing from the blob store too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from tracklet.errors import TableError, TableNotFound
from tracklet.media.query import Fragment, TableQuery, TableSource
from tracklet.media.table_chart import read_chart

_DIGEST = re.compile(r"[0-9a-f]{64}")
_MODES = {1: "IMMUTABLE", 2: "MUTABLE", 3: "INCREMENTAL"}


def table_keys(records: Sequence[Any]) -> list[str]:
    """The keys a run logged tables under, in the order first logged (``keys_in_logged_order``:
    not the record log's order, which differs across keys)."""
    from tracklet.media.read import keys_in_logged_order

    return keys_in_logged_order(records)


def version_records(records: Sequence[Any], key: str, step: int | None = None) -> list[Any]:
    """The records whose fragments make ``key``'s version at ``step`` (default: the latest)."""
    matching = [record for record in records if record.key == key and (step is None or record.step <= step)]
    if not matching:
        logged = table_keys(records)
        where = "" if step is None else f" at or before step {step}"
        known = f"; tables logged: {', '.join(map(repr, logged[:20]))}" if logged else "; it logged no tables"
        raise TableNotFound(f"no table {key!r}{where} in this run{known}")
    last = matching[-1]
    if _MODES.get(last.log_mode) != "INCREMENTAL":
        return [last]
    increments = [record for record in matching
                  if record.table_id == last.table_id and _MODES.get(record.log_mode) == "INCREMENTAL"]
    return sorted(increments, key=lambda record: record.increment)  # in the order added, however written


def open_table(data_root: Path, records: Sequence[Any], key: str, step: int | None = None, *,
               locate: Callable[[str], Path | None] | None = None, where: str | None = None) -> TableQuery:
    """A lazy query (``TableQuery``) over ``key``'s version at ``step``. Fragments are read from
    the data root's artifacts directory, or where ``locate(digest)`` says (a local file, or
    ``None`` when it has no such fragment: a tracking server's blobs, ``where`` naming them)."""
    return _query(data_root, version_records(records, key, step), key, locate=locate, where=where)


def open_every_version(data_root: Path, records: Sequence[Any], key: str, *,
                       locate: Callable[[str], Path | None] | None = None, where: str | None = None,
                       seen: set[str] | None = None) -> TableQuery | None:
    """A lazy query over the rows of every fragment of ``records`` of ``key`` (each distinct
    fragment once; columns by name across versions): which values any of those versions holds,
    e.g. whether a media cell names a blob. ``seen``: digests of fragments queried already (left
    out, and those of these records added); None when every fragment was."""
    chosen = [record for record in records if record.key == key]
    if not chosen:
        version_records(records, key)  # TableNotFound naming the keys there are
    distinct: list[Any] = []
    seen = set() if seen is None else seen
    fresh = False
    for record in chosen:
        fragments = [fragment for fragment in record.fragments if fragment.digest not in seen]
        seen.update(fragment.digest for fragment in fragments)
        if fragments:
            fresh = True
            copy = type(record)()
            copy.CopyFrom(record)
            del copy.fragments[:]
            copy.fragments.extend(fragments)
            distinct.append(copy)
    if not fresh and any(record.fragments for record in chosen):
        return None
    return _query(data_root, distinct or chosen[-1:], key, locate=locate, where=where)


def _query(data_root: Path, chosen: Sequence[Any], key: str, *, locate: Callable[[str], Path | None] | None = None,
           where: str | None = None) -> TableQuery:
    from tracklet.artifacts.blobs import FsspecBlobStore
    from tracklet.artifacts.storage import artifact_dir

    blobs = FsspecBlobStore(artifact_dir(data_root))
    fragments: list[Fragment] = []
    columns: dict[str, str] = {}
    base = 0
    for record in chosen:
        for column in record.columns:
            columns.setdefault(column.name, column.type)
        for fragment in record.fragments:
            if not _DIGEST.fullmatch(fragment.digest):
                raise TableError(f"table {key!r} at step {record.step}: the record names a fragment "
                                 f"{fragment.digest[:80]!r}, which is not a sha256 digest")
            if locate is not None:
                path = locate(fragment.digest)
                if path is None:
                    raise TableError(f"table {key!r} at step {record.step}: fragment {fragment.digest} is not in "
                                     f"{where or 'the blob store'}")
                fragments.append(Fragment(str(path), base, int(fragment.rows)))
                base += int(fragment.rows)
                continue
            path = blobs.local_path(fragment.digest)
            if path is None:
                raise TableError(f"table {key!r}: fragments in {blobs.url} (not a local directory) can't be queried "
                                 "yet")
            if not path.is_file():
                raise TableError(f"table {key!r} at step {record.step}: fragment {fragment.digest} is missing from "
                                 f"the blob store {blobs.url}")
            fragments.append(Fragment(str(path), base, int(fragment.rows)))
            base += int(fragment.rows)
    last = chosen[-1]
    source = TableSource(key, int(last.step), _MODES.get(last.log_mode, "IMMUTABLE"), tuple(fragments),
                         tuple(columns.items()), read_chart(last))
    return TableQuery(source)
