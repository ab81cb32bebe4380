"""W&B's MongoDB-style run filters (``{"config.lr": {"$lt": 0.1}, "state": "finished"}``) and orders
(``"-summary_metrics.loss"``) rewritten in tracklet's filter language (docs/store.md)."""

from __future__ import annotations

import json
import re
from typing import Any

from tracklet.compat.wandb.errors import UsageError

_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<=", "$regex": "~"}
_FIELDS = {
    "state": "state", "display_name": "name", "displayName": "name", "name": "run_id", "id": "run_id",
    "group": "group", "job_type": "job_type", "jobType": "job_type", "notes": "notes", "host": "host",
    "created_at": "created", "createdAt": "created", "updated_at": "updated", "updatedAt": "updated",
    "heartbeat_at": "updated", "heartbeatAt": "updated", "tags": "tags", "username": "user",
}
_BARE = re.compile(r"[A-Za-z0-9_/\-]+")


def _key(part: str) -> str:
    return part if _BARE.fullmatch(part) else "`" + part.replace("`", "") + "`"


def field_name(name: str) -> str:
    """A W&B field (``config.lr``, ``config.lr.value``, ``summary_metrics.loss``, ``state``...) as a
    tracklet one."""
    for prefix, target in (("config.", "config"), ("summary_metrics.", "summary"), ("summary.", "summary")):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if target == "config" and rest.endswith(".value"):
                rest = rest[: -len(".value")]
            return target + "." + ".".join(_key(p) for p in rest.split("."))
    if name in _FIELDS:
        return _FIELDS[name]
    raise UsageError(f"filtering or sorting runs on {name!r} is not supported (docs/wandb-compat.md)")


def _value(value: Any) -> str:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return json.dumps(value)
    raise UsageError(f"cannot filter runs on a value of type {type(value).__name__}")


def _condition(name: str, spec: Any) -> str:
    if name in ("$and", "$or", "$nor"):
        parts = [to_filter(item) for item in spec]
        joined = "(" + (" and " if name == "$and" else " or ").join(p for p in parts if p) + ")"
        return f"not {joined}" if name == "$nor" else joined
    if name == "$not":
        return f"not ({to_filter(spec)})"
    if name == "sweep":  # W&B's filter on a run's sweep: tracklet tags a sweep's runs sweep:<id>
        return _sweep_condition(spec)
    field = field_name(name)
    if field == "tags":
        tags = spec.get("$in", []) if isinstance(spec, dict) else [spec]
        return "(" + " or ".join(f"tags contains {_value(str(t))}" for t in tags) + ")" if tags else "run_id = \"\""
    if not isinstance(spec, dict):
        return f"{field} = {_value(spec)}"
    parts = []
    for op, value in spec.items():
        if op in _OPS:
            parts.append(f"{field} {_OPS[op]} {_value(value)}")
        elif op in ("$in", "$nin"):
            items = ", ".join(_value(v) for v in value)
            parts.append(f"{field} {'in' if op == '$in' else 'not in'} [{items}]")
        elif op == "$exists":
            parts.append(f"{field} {'exists' if value else 'not exists'}")
        else:
            raise UsageError(f"the run filter operator {op!r} is not supported (docs/wandb-compat.md)")
    return " and ".join(parts)


def _sweep_condition(spec: Any) -> str:
    """``{"sweep": ID}`` (also ``{"$eq": ID}``, ``{"$in": [IDs]}``, ``{"$ne": ID}``, ``{"$nin": [IDs]}``; an
    ID may be ``entity/project/ID``) as conditions on the ``sweep:<id>`` tag."""
    def tagged(value: Any) -> str:
        if not isinstance(value, str):
            raise UsageError(f"a sweep filter takes sweep ids (str); got {value!r}")
        return f"tags contains {_value('sweep:' + value.rstrip('/').rsplit('/', 1)[-1])}"

    ops = spec if isinstance(spec, dict) else {"$eq": spec}
    parts = []
    for op, value in ops.items():
        if op in ("$eq", "$ne"):
            parts.append(tagged(value) if op == "$eq" else f"not {tagged(value)}")
        elif op in ("$in", "$nin"):
            either = "(" + " or ".join(tagged(v) for v in value) + ")" if value else "run_id = \"\""
            parts.append(either if op == "$in" else f"not {either}")
        else:
            raise UsageError(f"the sweep filter operator {op!r} is not supported (docs/wandb-compat.md)")
    return " and ".join(parts)


def to_filter(filters: dict[str, Any] | None) -> str:
    """The tracklet filter text for a W&B filter dict ('' for none)."""
    if not filters:
        return ""
    return " and ".join(_condition(name, spec) for name, spec in filters.items())


def to_order(order: str | None) -> str | None:
    """``"-created_at"`` → ``"-created"``; ``"+summary_metrics.loss"`` → ``"summary.loss"``."""
    if not order:
        return None
    sign = "-" if order.startswith("-") else ""
    return sign + field_name(order.lstrip("+-"))
