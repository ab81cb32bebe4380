"""W&B's MongoDB-style run filters (``{"config.lr": {"$lt": 0.1}, "state": "finished"}``) and orders
(``"-summary_metrics.loss"``) rewritten in tracklet's filter language (docs/store.md)."""

from __future__ import annotations

import json
import math
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


# The longest ``$regex`` pattern taken: a substring match of at most this many characters.
MAX_REGEX_CHARS = 1000
_SCALAR = (bool, int, float, str)
# Regular-expression syntax a substring match cannot honour (an escaped character is itself).
_REGEX_SYNTAX = re.compile(r"(?<!\\)(?:\\\\)*[.^$*+?()\[\]{}|]|\\[A-Za-z0-9]")


def _operand(field: str, op: str, value: Any) -> Any:
    """``value`` checked as ``op``'s operand on ``field``: every operator's operand type is
    checked here, one place, so a wrong one (``$in`` given a string or a number, ``$gt`` a list,
    a ``$regex`` too long, invalid or using syntax a substring match can't honour) is refused with a
    ``UsageError`` naming the field, the operator, what it takes and what it got, never read as
    something else (a string's characters as a list) nor left to fail deeper down."""
    def refuse(takes: str) -> UsageError:
        got = f"{type(value).__name__} {value!r}"
        return UsageError(f"run filter {field}: {op or 'a value'} takes {takes}; got {got[:200]}")

    def scalar(item: Any, *, null: bool = True) -> bool:
        if item is None:
            return null
        if isinstance(item, float) and not math.isfinite(item):
            return False
        return isinstance(item, _SCALAR)

    if op in ("$eq", "$ne"):
        if not scalar(value):
            raise refuse("a number, a string, a boolean or null")
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        if not scalar(value, null=False) or isinstance(value, bool):
            raise refuse("a number or a string")
    elif op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple)):
            raise refuse("a list of values")
        if not all(scalar(item) for item in value):
            raise refuse("a list of numbers, strings, booleans or nulls")
    elif op == "$exists":
        if not isinstance(value, bool):
            raise refuse("true or false")
    elif op == "$regex":
        if not isinstance(value, str):
            raise refuse("a string")
        if len(value) > MAX_REGEX_CHARS:
            raise UsageError(f"run filter {field}: $regex pattern of {len(value)} characters; at most "
                             f"{MAX_REGEX_CHARS}")
        try:
            re.compile(value)
        except re.error as error:
            raise UsageError(f"run filter {field}: invalid $regex {value[:100]!r}: {error}") from None
        syntax = _REGEX_SYNTAX.search(value)
        if syntax is not None:
            raise UsageError(f"run filter {field}: $regex {value[:100]!r} uses {syntax.group()!r}: tracklet's $regex is "
                             "a case-insensitive substring match of plain text (escape a character with \\ to "
                             "match it as is; docs/wandb-compat.md)")
        value = re.sub(r"\\(.)", r"\1", value)
    elif op in ("$and", "$or", "$nor"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(item, dict) for item in value):
            raise refuse("a list of filters (dicts)")
    elif op == "$not":
        if not isinstance(value, dict):
            raise refuse("a filter (a dict)")
    elif not scalar(value):  # a bare value: {"state": "finished"}
        raise refuse("a number, a string, a boolean or null (or a dict of operators)")
    return value


def _value(value: Any) -> str:
    return json.dumps(value)


def _condition(name: str, spec: Any) -> str:
    if name in ("$and", "$or", "$nor"):
        parts = [to_filter(item) for item in _operand("(top level)", name, spec)]
        joined = "(" + (" and " if name == "$and" else " or ").join(p for p in parts if p) + ")"
        if joined == "()":  # no condition: $and (and $nor) of none holds for every run, $or of none for none
            return 'run_id = ""' if name == "$or" else ""
        return f"not {joined}" if name == "$nor" else joined
    if name == "$not":
        inner = to_filter(_operand("(top level)", name, spec))
        return f"not ({inner})" if inner else 'run_id = ""'
    if name == "sweep":  # W&B's filter on a run's sweep: tracklet tags a sweep's runs sweep:<id>
        return _sweep_condition(spec)
    field = field_name(name)
    ops = spec if isinstance(spec, dict) else {"": spec}
    if field == "tags":
        return _tags_condition(name, ops)
    parts = []
    for op, value in ops.items():
        value = _operand(name, op, value)
        if op == "":
            parts.append(f"{field} = {_value(value)}")
        elif op in _OPS:
            parts.append(f"{field} {_OPS[op]} {_value(value)}")
        elif op in ("$in", "$nin"):
            items = ", ".join(_value(v) for v in value)
            parts.append(f"{field} {'in' if op == '$in' else 'not in'} [{items}]")
        elif op == "$exists":
            parts.append(f"{field} {'exists' if value else 'not exists'}")
        else:
            raise UsageError(f"the run filter operator {op!r} is not supported (docs/wandb-compat.md)")
    return " and ".join(parts)


def _tags_condition(name: str, ops: dict[str, Any]) -> str:
    """Conditions on the run's tags: a tag (``{"tags": "x"}``, ``$eq``/``$ne``), any of a list
    (``$in``), none of one (``$nin``), or any tag at all (``$exists``)."""
    parts = []
    for op, value in ops.items():
        if op not in ("", "$eq", "$ne", "$in", "$nin", "$exists"):
            raise UsageError(f"run filter {name}: {op!r} is not supported on tags (use $in, $nin, $eq, $ne or "
                             "$exists)")
        value = _operand(name, op, value)
        if op == "$exists":  # at least one tag
            parts.append("tags exists" if value else "not tags exists")
            continue
        tags = value if op in ("$in", "$nin") else [value]
        either = "(" + " or ".join(f"tags contains {_value(str(t))}" for t in tags) + ")" if tags else 'run_id = ""'
        parts.append(f"not {either}" if op in ("$ne", "$nin") else either)
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
            value = _operand("sweep", op, value)
            either = "(" + " or ".join(tagged(v) for v in value) + ")" if value else "run_id = \"\""
            parts.append(either if op == "$in" else f"not {either}")
        else:
            raise UsageError(f"the sweep filter operator {op!r} is not supported (docs/wandb-compat.md)")
    return " and ".join(parts)


def to_filter(filters: dict[str, Any] | None) -> str:
    """The tracklet filter text for a W&B filter dict ('' for none)."""
    if not filters:
        return ""
    if not isinstance(filters, dict):
        raise UsageError(f"run filters are a dict of fields and operators; got {type(filters).__name__}")
    return " and ".join(_condition(name, spec) for name, spec in filters.items())


def to_order(order: str | None) -> str | None:
    """``"-created_at"`` → ``"-created"``; ``"+summary_metrics.loss"`` → ``"summary.loss"``."""
    if not order:
        return None
    sign = "-" if order.startswith("-") else ""
    return sign + field_name(order.lstrip("+-"))
