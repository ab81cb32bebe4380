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


def update_record(changes: Mapping[str, Any], time: float) -> Any:
    """A ``Record`` holding a ``RunUpdate`` of checked ``changes``."""
    from tracklet.proto import records_pb2 as pb

    record = pb.Record()
    update = record.run_update
    update.SetInParent()
    update.time = time
    for field in ("name", "notes", "group", "job_type"):
        if field in changes:
            setattr(update, field, changes[field])
    if "tags" in changes:
        update.tags_set = True
        update.tags.extend(changes["tags"])
    return record


def changes_of(update: Any) -> dict[str, Any]:
    """What a ``RunUpdate`` changes."""
    changes: dict[str, Any] = {field: getattr(update, field) for field in ("name", "notes", "group", "job_type")
                               if update.HasField(field)}
    if update.tags_set:
        changes["tags"] = list(update.tags)
    return changes
