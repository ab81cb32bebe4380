"""W&B's MongoDB-style run filters (``{"config.lr": {"$lt": 0.1}, "state": "finished"}``) and orders
(``"-summary_metrics.loss"``) rewritten in tracklet's filter language (docs/store.md). Each operand
is checked against the type W&B's filter models give it (``wandb/_filters/operators.py``) and the
filter against bounds (:data:`MAX_VALUES`, :data:`MAX_DEPTH`, :data:`MAX_QUERY`): a
:class:`FilterError` names the operator and the key, the same for a data root and a server.
``$regex`` is a regular expression in RE2 syntax, W&B's (tracklet's ``=~``: tracklet/store/regex.py);
``$contains`` a substring (``~``); a list compares with a config or summary list (W&B's types take a
list for ``$eq``/``$ne``); bools order (false < true); a time without an offset is UTC."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from tracklet.compat.wandb.errors import UsageError

_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<=", "$regex": "=~", "$contains": "~"}
_FIELDS = {
    "state": "state", "display_name": "name", "displayName": "name", "name": "run_id", "id": "run_id",
    "group": "group", "job_type": "job_type", "jobType": "job_type", "notes": "notes", "host": "host",
    "created_at": "created", "createdAt": "created", "updated_at": "updated", "updatedAt": "updated",
    "heartbeat_at": "updated", "heartbeatAt": "updated", "tags": "tags", "username": "user",
}
_BARE = re.compile(r"[A-Za-z0-9_/\-]+")


def _key(part: str) -> str:
    """A config/summary key as tracklet's filter language reads it: bare, or quoted as a JSON
    string, so any character is kept (between backticks a key can't hold one: "a`b" was "ab")."""
    return part if _BARE.fullmatch(part) else json.dumps(part, ensure_ascii=False)


def config_path(rest: str) -> list[str]:
    """The config keys a W&B config field names (what follows ``config.``). W&B keeps each
    top-level key's value under ``value`` (``{"optimizer": {"value": {"name": "adam"}}}``), so its
    filters say ``config.lr.value`` and, for a nested key, ``config.optimizer.value.name``: that
    ``value`` after the top-level key is dropped (until session 29 only a trailing one was, and
    ``config.optimizer.value.name`` matched no run, silently); a trailing one still is
    (``config.a.b.value``), and a field without it (``config.optimizer.name``) is taken as it is."""
    parts = rest.split(".")
    if len(parts) > 1 and parts[1] == "value":
        del parts[1]
    elif len(parts) > 1 and parts[-1] == "value":
        del parts[-1]
    return parts


def field_name(name: str) -> str:
    """A W&B field (``config.lr``, ``config.lr.value``, ``config.optimizer.value.name``,
    ``summary_metrics.loss``, ``state``...) as a tracklet one."""
    for prefix, target in (("config.", "config"), ("summary_metrics.", "summary"), ("summary.", "summary")):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            parts = config_path(rest) if target == "config" else rest.split(".")
            return target + "." + ".".join(_key(p) for p in parts)
    if name in _FIELDS:
        return _FIELDS[name]
    raise FilterError(f"filtering or sorting runs on {name!r} is not supported (docs/wandb-compat.md)")


class FilterError(UsageError, ValueError):
    """A W&B run filter tracklet refuses: an operand of the wrong type for its operator, an unknown
    operator or field, or a filter past the bounds below. A ``ValueError`` (and W&B's ``UsageError``)
    whose message names the operator and the key it was given for. W&B sends a filter to its server
    unchecked and its server refuses what it can't run; tracklet checks it before it reads a run, the
    same way for a data root and a server."""


MAX_VALUES = 1000  # values in one $in / $nin list
MAX_DEPTH = 20  # $and / $or / $nor / $not nested in each other (tracklet's parser takes 64 levels)
MAX_QUERY = 32 << 10  # the translated filter, URL-encoded: it travels in a request's head (64 KiB) to a server

MAX_REGEX_CHARS = 1000  # a $regex pattern: tracklet/store/regex.py's MAX_PATTERN_CHARS (RE2 syntax)
_TEXT_FIELDS = ("name", "run_id", "state", "group", "job_type", "notes", "host", "user")  # what $regex takes
_NAIVE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")

_SCALARS = "a string, a number, a bool or None"
_ALL, _NONE = 'run_id != ""', 'run_id = ""'  # every run has an id


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        text = f"<{value.bit_length()}-bit int>" if isinstance(value, int) else "<unprintable>"
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _in_double(value: int) -> bool:
    """Whether an int is within a double's range (tracklet compares numbers as doubles past int64)."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


class _Translation:
    """One filter's translation: where it is (for messages), how deep and how long it has got."""

    def __init__(self) -> None:
        self.depth = 0
        self.length = 0

    def fail(self, where: str, why: str, value: Any) -> FilterError:
        return FilterError(f"wandb.Api().runs(filters=...): {where}: {why}; got {_shown(value)}")

    def add(self, text: str) -> str:
        """``text``, counted towards MAX_QUERY: every condition is, as it is made, so a filter too
        large is refused before all of it is translated."""
        from urllib.parse import quote

        self.length += len(quote(text, safe=""))
        if self.length > MAX_QUERY:
            raise FilterError(f"wandb.Api().runs(filters=...): the filter is larger than {MAX_QUERY} bytes as a "
                              "request's query (tracklet's filter language, URL-encoded): split it into several calls")
        return text

    def value(self, key: str, op: str, value: Any, *, order: bool = False) -> str:
        """A scalar operand as a filter literal; ``order``: for < <= > >= (a number or a string)."""
        where = f"{op} on {key!r}"
        if order and value is None:  # W&B's types: a scalar (a bool too: false < true)
            raise self.fail(where, f"{op} compares with a number, a string or a bool", value)
        if isinstance(value, float) and not math.isfinite(value) or isinstance(value, int) and not _in_double(value):
            raise self.fail(where, "a number to filter on is finite (at most about 1.8e308)", value)
        if isinstance(value, (bool, int, float, str)) or value is None:
            return json.dumps(value)
        if op in ("$eq", "$ne") and isinstance(value, dict):
            raise self.fail(where, f"{op} takes a value or a list of values, as W&B's filter types do (a dict is an "
                            "operator dict, never a value to compare with)", value)
        raise self.fail(where, f"{op} takes one value ({'a number, a string or a bool' if order else _SCALARS})",
                        value)

    def listed(self, key: str, op: str, field: str, value: Any) -> str:
        """A list compared as a whole (``{"config.layers": [64, 64]}``, ``{"$eq": [...]}``): W&B's
        types take a list of scalars for $eq/$ne; only a config or summary value holds one."""
        where = f"{op} on {key!r}"
        if not field.startswith(("config.", "summary.")):
            raise self.fail(where, f"only config and summary values are lists: {{{key!r}: {{'$in': [...]}}}} matches "
                            "any of several values", value)
        if len(value) > MAX_VALUES:
            raise FilterError(f"wandb.Api().runs(filters=...): {where}: a list of at most {MAX_VALUES} values; "
                              f"got {len(value)}")
        return "[" + ", ".join(self.value(key, op, item) for item in value) + "]"

    def values(self, key: str, op: str, value: Any) -> list[Any]:
        """A $in / $nin operand: a list (or tuple) of at most MAX_VALUES scalars."""
        where = f"{op} on {key!r}"
        if not isinstance(value, (list, tuple)):
            raise self.fail(where, f"{op} takes a list of values, e.g. {{{key!r}: {{{op!r}: [...]}}}}", value)
        if len(value) > MAX_VALUES:
            raise FilterError(f"wandb.Api().runs(filters=...): {where}: {op} takes at most {MAX_VALUES} values; "
                              f"got {len(value)}")
        for item in value:
            if not (isinstance(item, (bool, int, float, str)) or item is None):
                raise self.fail(where, f"each value in {op} is {_SCALARS}", item)
        return list(value)

    def nested(self, op: str, spec: Any) -> list[Any]:
        """A $and / $or / $nor operand: a list of filter dicts (W&B's types take an empty one)."""
        if not isinstance(spec, (list, tuple)):
            raise self.fail(op, f"{op} takes a list of filter dicts, e.g. {{{op!r}: [{{'state': "
                                "'finished'}, {'config.lr': {'$lt': 0.1}}]}", spec)
        if len(spec) > MAX_VALUES:
            raise FilterError(f"wandb.Api().runs(filters=...): {op}: {op} takes at most {MAX_VALUES} filters; "
                              f"got {len(spec)}")
        for item in spec:
            if not isinstance(item, dict):
                raise self.fail(op, f"each item of {op} is a filter dict", item)
        return list(spec)

    def filter(self, filters: Any, where: str = "filters") -> str:
        if not isinstance(filters, dict):
            raise self.fail(where, "a filter is a dict, e.g. {'state': 'finished'}", filters)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"wandb.Api().runs(filters=...): $and/$or/$nor/$not nested more than {MAX_DEPTH} deep")
        try:
            return " and ".join(part for part in (self.condition(name, spec) for name, spec in filters.items()) if part)
        finally:
            self.depth -= 1

    def condition(self, name: Any, spec: Any) -> str:
        if not isinstance(name, str):
            raise self.fail("filters", "a filter's keys are field names (str)", name)
        if name in ("$and", "$or", "$nor"):
            parts = [self.filter(item, name) or _ALL for item in self.nested(name, spec)]
            if not parts:  # none: $and holds for every run, $or for none
                return _NONE if name == "$or" else _ALL
            joined = "(" + (" and " if name == "$and" else " or ").join(parts) + ")"
            return f"not {joined}" if name == "$nor" else joined
        if name == "$not":
            if not isinstance(spec, dict) or not spec:
                raise self.fail(name, "$not takes a filter dict, e.g. {'$not': {'state': 'finished'}}", spec)
            return f"not ({self.filter(spec, name)})"
        if name.startswith("$"):
            raise FilterError(f"wandb.Api().runs(filters=...): the operator {name!r} is not supported at the top "
                              "level of a filter ($and $or $nor $not are; docs/wandb-compat.md)")
        if name == "sweep":  # W&B's filter on a run's sweep: tracklet tags a sweep's runs sweep:<id>
            return self.sweep(spec)
        field = field_name(name)
        if field == "tags":
            return self.tags(name, spec)
        if not isinstance(spec, dict):
            if isinstance(spec, (list, tuple)):
                return self.add(f"{field} = {self.listed(name, '$eq', field, spec)}")
            return self.add(f"{field} = {self.time(field, self.value(name, '$eq', spec))}")
        return self.operators(name, field, spec)

    @staticmethod
    def time(field: str, literal: str) -> str:
        """A createdAt/heartbeatAt literal: W&B reads a time without an offset as UTC (tracklet's
        language as local time), so such a one gets ``Z``."""
        if field in ("created", "updated") and literal.startswith('"') and _NAIVE_TIME.fullmatch(literal[1:-1]):
            return literal[:-1] + 'Z"'
        return literal

    def operators(self, name: str, field: str, spec: dict[str, Any]) -> str:
        if not spec:
            raise self.fail(f"{name!r}", "an operator dict names at least one operator, e.g. {'$gt': 0}", spec)
        parts = []
        for op, value in spec.items():
            if op in ("$eq", "$ne", "$regex", "$contains"):
                if op in ("$regex", "$contains") and not isinstance(value, str):
                    raise self.fail(f"{op} on {name!r}", f"{op} takes a string", value)
                if op == "$regex":
                    self.pattern(name, field, value)
                if op in ("$eq", "$ne") and isinstance(value, (list, tuple)):
                    parts.append(self.add(f"{field} {_OPS[op]} {self.listed(name, op, field, value)}"))
                    continue
                parts.append(self.add(f"{field} {_OPS[op]} {self.time(field, self.value(name, op, value))}"))
            elif op in _OPS:
                parts.append(self.add(f"{field} {_OPS[op]} {self.time(field, self.value(name, op, value, order=True))}"))
            elif op in ("$in", "$nin"):
                items = ", ".join(self.value(name, op, item) for item in self.values(name, op, value))
                parts.append(self.add(f"{field} {'in' if op == '$in' else 'not in'} [{items}]"))
            elif op == "$exists":
                if not isinstance(value, bool):
                    raise self.fail(f"$exists on {name!r}", "$exists takes True or False", value)
                parts.append(self.add(f"{field} {'exists' if value else 'not exists'}"))
            elif op == "$not":
                if not isinstance(value, dict) or not value:
                    raise self.fail(f"$not on {name!r}", "$not on a field takes an operator dict, e.g. "
                                    f"{{{name!r}: {{'$not': {{'$gt': 0.5}}}}}}", value)
                self.depth += 1
                try:
                    if self.depth > MAX_DEPTH:
                        raise FilterError(f"wandb.Api().runs(filters=...): $not nested more than {MAX_DEPTH} deep")
                    parts.append(f"not ({self.operators(name, field, value)})")  # counted once inside
                finally:
                    self.depth -= 1
            elif op == "$options":
                raise FilterError(f"wandb.Api().runs(filters=...): $options on {name!r} is not supported: start the "
                                  "$regex pattern with (?i) for a case-insensitive match (RE2 syntax, as W&B's)")
            else:
                raise FilterError(f"wandb.Api().runs(filters=...): the operator {op!r} on {name!r} is not supported "
                                  "(docs/wandb-compat.md)")
        return " and ".join(parts)

    def pattern(self, name: str, field: str, value: str) -> None:
        """Check a ``$regex`` operand: RE2 syntax (W&B's) that tracklet runs the same on every store
        (tracklet/store/regex.py), on a field that holds text."""
        where = f"$regex on {name!r}"
        if field not in _TEXT_FIELDS and not field.startswith(("config.", "summary.", "tags")):
            raise self.fail(where, "$regex matches text: a name, state, group, job type, notes, host, username, "
                            "tags or a config or summary value", value)
        if len(value) > MAX_REGEX_CHARS:
            raise FilterError(f"wandb.Api().runs(filters=...): {where}: a pattern of {len(value)} characters; at "
                              f"most {MAX_REGEX_CHARS}")
        from tracklet.store.regex import PatternError, portable  # (the store package imports SQLAlchemy)

        try:
            portable(value)
        except PatternError as error:
            raise self.fail(where, f"{error.problem} (at character {error.offset + 1} of the pattern; "
                            "docs/wandb-compat.md)", value) from None

    def tags(self, name: str, spec: Any) -> str:
        """``tags``: a tag (runs that have it), or ``$in``/``$nin``/``$eq``/``$ne``/``$exists``."""
        def has(tag: Any, op: str) -> str:
            if not isinstance(tag, str):
                raise self.fail(f"{op} on {name!r}", "tags are strings", tag)
            return f"tags contains {json.dumps(tag)}"

        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        if not ops:
            raise self.fail(f"{name!r}", "an operator dict names at least one operator, e.g. {'$in': ['a']}", spec)
        parts = []
        for op, value in ops.items():
            if op in ("$eq", "$ne"):
                parts.append(self.add(has(value, op) if op == "$eq" else f"not {has(value, op)}"))
            elif op in ("$in", "$nin"):
                tags = self.values(name, op, value)
                either = "(" + " or ".join(has(tag, op) for tag in tags) + ")" if tags else _NONE
                parts.append(self.add(either if op == "$in" else f"not {either}"))
            elif op == "$all":
                tags = self.values(name, op, value)
                parts.append(self.add(" and ".join(has(tag, op) for tag in tags) if tags else _ALL))
            elif op == "$exists":
                if not isinstance(value, bool):
                    raise self.fail(f"$exists on {name!r}", "$exists takes True or False", value)
                parts.append(self.add("tags exists" if value else "not tags exists"))
            elif op == "$regex":  # any tag matches
                if not isinstance(value, str):
                    raise self.fail(f"$regex on {name!r}", "$regex takes a string", value)
                self.pattern(name, "tags", value)
                parts.append(self.add(f"tags =~ {json.dumps(value)}"))
            else:
                raise FilterError(f"wandb.Api().runs(filters=...): the operator {op!r} on {name!r} is not supported "
                                  "(tags take $in $nin $all $eq $ne $exists $regex)")
        return " and ".join(parts)

    def sweep(self, spec: Any) -> str:
        """``{"sweep": ID}`` (also ``{"$eq": ID}``, ``{"$in": [IDs]}``, ``{"$ne": ID}``, ``{"$nin": [IDs]}``; an
        ID may be ``entity/project/ID``) as conditions on the ``sweep:<id>`` tag."""
        def tagged(value: Any, op: str) -> str:
            if not isinstance(value, str):
                raise self.fail(f"{op} on 'sweep'", "a sweep filter takes sweep ids (str)", value)
            return f"tags contains {json.dumps('sweep:' + value.rstrip('/').rsplit('/', 1)[-1])}"

        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        if not ops:
            raise self.fail("'sweep'", "an operator dict names at least one operator, e.g. {'$in': ['abc']}", spec)
        parts = []
        for op, value in ops.items():
            if op in ("$eq", "$ne"):
                parts.append(self.add(tagged(value, op) if op == "$eq" else f"not {tagged(value, op)}"))
            elif op in ("$in", "$nin"):
                ids = self.values("sweep", op, value)
                either = "(" + " or ".join(tagged(v, op) for v in ids) + ")" if ids else _NONE
                parts.append(self.add(either if op == "$in" else f"not {either}"))
            else:
                raise FilterError(f"wandb.Api().runs(filters=...): the operator {op!r} on 'sweep' is not supported "
                                  "(a sweep filter takes $eq $ne $in $nin)")
        return " and ".join(parts)


def to_filter(filters: dict[str, Any] | None) -> str:
    """The tracklet filter text for a W&B filter dict ('' for none); a :class:`FilterError` for one
    it can't translate."""
    if filters is None:
        return ""
    translation = _Translation()
    text = translation.filter(filters)
    translation.length = 0
    translation.add(text)  # the whole, with its joins
    return text


def to_order(order: str | None) -> str | None:
    """``"-created_at"`` → ``"-created"``; ``"+summary_metrics.loss"`` → ``"summary.loss"``."""
    if not order:
        return None
    sign = "-" if order.startswith("-") else ""
    return sign + field_name(order.lstrip("+-"))
