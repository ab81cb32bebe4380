"""Text as the store keeps it: NUL (U+0000) becomes U+FFFD everywhere, and it fits its column.

PostgreSQL's ``text`` refuses NUL and its ``jsonb`` refuses the escape ``\\u0000``, so one NUL in a
run name, a tag, a config key or value, a metric key or a console line would fail the run's whole
transaction there. Every text that reaches the store (plain columns, JSON keys and string values,
series keys, console lines) and every key or string a query binds goes through these functions,
on SQLite too, so both backends hold, and find, the same thing. The record log keeps the original
characters. Likewise a text longer than its column (a run name past 512 characters, a metric
key past 1,024: ``fit``, ``stored_key``) is cut to fit rather than failing the run on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tracklet.store.schema import series

NUL = "\x00"
REPLACEMENT = "\ufffd"


def store_text(text: str) -> str:
    """``text`` with every NUL replaced by U+FFFD."""
    return text.replace(NUL, REPLACEMENT) if NUL in text else text


def fit(text: str, length: int | None) -> str:
    """``text`` cut to a column's ``length`` (PostgreSQL refuses longer values in a ``varchar(n)``,
    which would fail the run's whole transaction; SQLite would keep them, so both cut)."""
    return text if length is None or len(text) <= length else text[:length]


def column_length(column: sa.Column[Any]) -> int | None:
    """A text column's declared length (``varchar(n)``); None when it has none or is not text."""
    return column.type.length if isinstance(column.type, sa.String) else None


_KEY_LENGTH = column_length(series.c.key)


def stored_key(name: str) -> str:
    """A metric's or system metric's name as its series' key is stored (and looked up)."""
    return fit(store_text(name), _KEY_LENGTH)


def store_json(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, scalars) with ``store_text`` applied to every string and
    every dict key; containers holding a NUL are copied, others returned as they are."""
    if isinstance(value, (dict, list)) and "\\x00" not in repr(value):
        return value  # repr writes every NUL as \x00: none here (one C-level pass, not a walk per value)
    if isinstance(value, str):
        return store_text(value)
    if isinstance(value, dict):
        return {store_text(k) if isinstance(k, str) else k: store_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [store_json(v) for v in value]
    return value
