"""A run's name, tags, notes, group and job type, and changes to them after the run started.

``RunStart`` records them; a ``RunUpdate`` record changes those it carries (``run.name = ...`` on a
live run, ``wandb.Api().run(...).update()`` on a finished one). Readers and the store apply the
updates in log order over the ``RunStart``'s values, so the change is as durable as the log.
"""

from __future__ import annotations

from typing import Any, Mapping

FIELDS = ("name", "tags", "notes", "group", "job_type")


def checked_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` validated: ``tags`` a list of strings (not one string), the others strings
    (None is the empty string); ``TypeError`` naming the field otherwise, ``ValueError`` for a
    field that is not one of these."""
    out: dict[str, Any] = {}
    for field, value in changes.items():
        if field not in FIELDS:
            raise ValueError(f"{field!r} is not a run field that can change; these can: {', '.join(FIELDS)}")
        if field == "tags":
            if isinstance(value, str) or not all(isinstance(t, str) for t in value or ()):
                raise TypeError(f"tags must be a list of strings; got {value!r}")
            out[field] = list(value or ())
        elif value is not None and not isinstance(value, str):
            raise TypeError(f"{field} must be a string; got {type(value).__name__}")
        else:
            out[field] = value or ""
    return out


def of_start(start: Any) -> dict[str, Any]:
    """The identity a ``RunStart`` gives."""
    return {"name": start.name, "tags": list(start.tags), "notes": start.notes, "group": start.group,
            "job_type": start.job_type}


def update_record(changes: Mapping[str, Any], time: float, preempting: bool = False) -> Any:
    """A ``Record`` holding a ``RunUpdate`` of checked ``changes`` (``preempting``: marking the
    run as expecting to be stopped and resumed, at ``time``)."""
    from tracklet.proto import records_pb2 as pb

    record = pb.Record()
    update = record.run_update
    update.SetInParent()
    update.time = time
    if preempting:
        update.preempting = time
    for field in ("name", "notes", "group", "job_type"):
        if field in changes:
            setattr(update, field, changes[field])
    if "tags" in changes:
        update.tags_set = True
        update.tags.extend(changes["tags"])
    return record


# A serialized Record whose kind is ``run_update`` (field 22, length-delimited) starts with this tag.
_UPDATE_TAG = bytes([(22 << 3) | 2, 1])


def read_identity(log_file: Any, start: Any) -> dict[str, Any]:
    """A run's identity from its log without reading the whole log: the ``RunStart``'s values, then
    every ``RunUpdate``. Only frame headers are read (a seek past each other frame), and only the
    updates are checksummed and parsed, so listings and name lookups cost what the number of
    frames costs, not the size of the histories. A frame that doesn't check out ends the walk
    (reading the run fully reports the damage and resynchronizes)."""
    import zlib

    from tracklet.core.parsecost import parse_record
    from tracklet.core.recordlog import FRAME_HEADER, MAGIC, MAX_RECORD_BYTES

    known = of_start(start)
    with open(log_file, "rb") as file:
        if file.read(len(MAGIC)) != MAGIC:
            return known
        while True:
            head = file.read(FRAME_HEADER.size + len(_UPDATE_TAG))
            if len(head) < FRAME_HEADER.size + len(_UPDATE_TAG):
                return known
            length, crc = FRAME_HEADER.unpack_from(head)
            if not len(_UPDATE_TAG) <= length <= MAX_RECORD_BYTES:
                return known
            if head[FRAME_HEADER.size:] != _UPDATE_TAG:
                file.seek(length - len(_UPDATE_TAG), 1)
                continue
            payload = head[FRAME_HEADER.size:] + file.read(length - len(_UPDATE_TAG))
            if len(payload) != length or zlib.crc32(payload) != crc:
                return known
            try:
                record = parse_record(payload)  # within bounded memory (core/parsecost.py)
            except Exception:  # not a record after all, or too costly to parse: the full read reports it
                return known
            if record.WhichOneof("kind") == "run_update":
                known.update(changes_of(record.run_update))


def changes_of(update: Any) -> dict[str, Any]:
    """What a ``RunUpdate`` changes."""
    changes: dict[str, Any] = {field: getattr(update, field) for field in ("name", "notes", "group", "job_type")
                               if update.HasField(field)}
    if update.tags_set:
        changes["tags"] = list(update.tags)
    return changes
