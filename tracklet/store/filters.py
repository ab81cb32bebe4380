"""A small filter and sort language for runs, compiled to SQLAlchemy Core on SQLite and PostgreSQL.

Filters
=======
::

    state = finished and config.lr < 1e-3
    summary."val/loss" <= 0.25 or not (tags contains "broken")
    created > -7d and name ~ "resnet" and config.optimizer in ["adam", "adamw"]
    group exists and exit_code != 0
    name =~ "^sweep-[0-9]+$" and config.layers = [64, 64] and config.amp > false

A filter is conditions joined by ``and``, ``or`` and ``not`` (tightest first: ``not``, then ``and``,
then ``or``) and grouped with parentheses. An empty filter matches every run. Keywords are
case-insensitive; field names are not. The grammar::

    filter    := [or_expr]
    or_expr   := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | "(" or_expr ")" | condition
    condition := FIELD OP VALUE                                     OP: = == != < <= > >= ~ =~
               | FIELD ["not"] "in" "[" [VALUE ("," VALUE)* [","]] "]"
               | FIELD ["not"] "exists"
               | "tags" ["not"] "contains" STRING
               | "tags" "=~" STRING

``~`` is a case-insensitive substring match (``name ~ "res"``) of at most 1,000 characters;
``=~`` a regular expression in RE2 syntax (W&B's ``$regex``; ``tracklet/store/regex.py``: unanchored,
case-sensitive unless ``(?i)``, the same runs on SQLite and PostgreSQL, bounded
time) on a text field, a JSON string or any tag; ``==`` is the same as ``=``.
``FIELD not in [...]``, ``FIELD not exists`` and ``tags not contains "x"`` are ``not`` applied to
the condition.

FIELDs
------
- text: ``name``, ``state``, ``group``, ``job_type``, ``host``, ``notes``, ``run_id``. Values are
  strings; a bare word (ASCII letters, digits and ``_``: ``state in [finished, failed]``) or a
  number (``run_id = 20260101``) is read as the text as written; quote anything else
  (``group = "sweep-a"``). ``exists`` means "not empty". ``=`` is case-sensitive; ``<``/``>``
  follow the database's collation (binary on SQLite, the database locale on PostgreSQL); ``~``
  lowercases only ASCII letters on SQLite.
- numbers: ``exit_code``, ``last_step``. ``exists`` means "is set".
- times: ``created``, ``updated`` (epoch seconds). Values: a number of epoch seconds, a date or
  datetime either bare or quoted (``2026-11-01``, ``2026-11-01T12:00``, ``"2026-11-01 12:00:30Z"``,
  ``2026-11-01T12:00+02:00``; without an offset it is local time, a date alone is its midnight),
  or a relative time ``-30s``, ``-15m``, ``-3h``, ``-7d``, ``-2w`` meaning that long before now
  (now is taken when the filter is compiled). ``created_at``, ``updated_at`` and ``group_name``
  are accepted as aliases.
- JSON: ``config.KEY.KEY...`` and ``summary.KEY...`` walk nested objects (keys only; no array
  indexes). A bare key is letters, digits and ``_ / -`` (``summary.val/loss``,
  ``summary.train-acc``); any other key is quoted with ``"..."``, ``'...'`` or backticks:
  ``config."batch size"``, ``config.model."n.layers"``, or summary.`eval.acc` (backticks take
  the text as is). Where no object nests at a path of several keys, the one key they spell
  joined by dots is taken: ``summary.eval.acc`` finds ``{"eval": {"acc": ...}}`` or else
  ``{"eval.acc": ...}`` (the dashboard's column for either). Any key can be addressed, as written (``config."a\\"b"``, a key with a
  newline or non-ASCII letters), on both databases; NUL in a key or a string matches the U+FFFD
  the store holds in its place (``tracklet/store/text.py``).
  A comparison only matches values of the literal's JSON type: numbers compare numerically with
  numbers, strings with strings, ``true``/``false`` with booleans (false < true). ``=``/``!=``
  with a list (``config.layers = [64, 64]``: numbers, strings, true, false, null) compares a JSON
  array element by element, each within its type. So
  ``config.lr < 0.1`` never matches a config whose lr is the string ``"0.01"`` (nor errors), and
  ``config.lr = "0.1"`` never matches the number 0.1. Numbers compare as double precision
  (``1`` equals ``1.0``); an integer beyond 64 bits is read as a double, and a number beyond a
  double's range is a syntax error. ``exists`` means "present and not null".
- ``tags``: only ``tags contains "x"`` (exact tag) and ``tags exists`` (at least one tag).

VALUEs: numbers (``3``, ``-2``, ``0.5``, ``.5``, ``1e-4``, ``+7``), strings in double or single
quotes with JSON escapes (``\\" \\' \\\\ \\n \\t \\r \\b \\f \\/ \\uXXXX``; a character past U+FFFF
as a surrogate pair), ``true``, ``false``, ``null``; for time fields also dates and relative times as
above.

Every condition is either true or false for a run, never unknown (no SQL three-valued logic):
a missing key, a SQL NULL or a value of another type simply makes the comparison false. So
``not X`` is exactly the runs that ``X`` leaves out, ``A != v`` is ``not A = v`` (it also matches
runs where ``A`` is missing or of another type; use ``A exists and A != v`` to exclude those),
``A = null`` is ``not A exists`` and ``A != null`` is ``A exists``.

Sorts
=====
A comma-separated list of fields, each optionally prefixed with ``-`` (descending) or ``+``
(ascending, the default): ``-summary.val/loss,created``. Missing values sort last in either
direction (``user``: runs without one). A JSON field sorts its numbers (numerically), then its
strings, then everything else, in either direction. Every sort ends with ``run_id`` in the
direction of its last key, so equal keys keep one order and pages never repeat nor skip a run.
``tags`` cannot be sorted on.

Python API
==========
``parse_filter(text) -> FilterExpr`` (``Compare``, ``In``, ``Exists``, ``Contains``, ``Not``,
``And``, ``Or``; ``str()`` of a node gives filter text that parses back to it),
``compile_filter(expr_or_text, runs_table, now=None) -> ColumnElement[bool]``,
``parse_sort(text) -> list[(Field, descending)]`` and
``compile_sort(keys_or_text, runs_table) -> list of ORDER BY clauses``. Syntax and type errors
raise ``FilterSyntaxError`` (a ``ValueError``) naming the problem and its column, with a caret.

All values are bound parameters; nothing from the text is ever evaluated or pasted into SQL.
Statements that contain a JSON condition are not kept in SQLAlchemy's compiled-statement cache
(the JSON accessors render per dialect at compile time).
"""

from __future__ import annotations

import json
import math
import operator
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _dc_field
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement

from tracklet.store.text import store_text
from tracklet.errors import FilterSyntaxError  # noqa: F401  (defined there; imported from here too)

__all__ = [
    "FIELDS",
    "Ago",
    "And",
    "Compare",
    "Contains",
    "Exists",
    "Field",
    "FilterExpr",
    "FilterSyntaxError",
    "In",
    "Not",
    "Or",
    "compile_filter",
    "compile_sort",
    "named_columns",
    "parse_filter",
    "parse_sort",
]


# --------------------------------------------------------------------------------------------
# Fields

# field name -> (column in the runs table, kind); kinds: text, int, time, json, tags
FIELDS: dict[str, tuple[str, str]] = {
    "name": ("name", "text"),
    "state": ("state", "text"),
    "group": ("group_name", "text"),
    "job_type": ("job_type", "text"),
    "host": ("host", "text"),
    "notes": ("notes", "text"),
    "run_id": ("run_id", "text"),
    "exit_code": ("exit_code", "int"),
    "last_step": ("last_step", "int"),
    "created": ("created_at", "time"),
    "updated": ("updated_at", "time"),
    "config": ("config", "json"),
    "summary": ("summary", "json"),
    "tags": ("tags", "tags"),
    # Who created the run: no column of its own (``user_column``; a server passes its own, run_creators.py).
    "user": ("user", "text"),
}
_ALIASES = {"group_name": "group", "created_at": "created", "updated_at": "updated"}
_FIELD_LIST = ", ".join(n for n in FIELDS if FIELDS[n][1] != "json") + ", config.KEY, summary.KEY"

_BARE_KEY = re.compile(r"[A-Za-z0-9_/\-]+")


def _fmt_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


@dataclass(frozen=True)
class Field:
    """A field: ``name`` is one of ``FIELDS``; ``path`` holds the keys under config/summary."""

    name: str
    path: tuple[str, ...] = ()
    pos: int = _dc_field(default=0, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return FIELDS[self.name][1]

    @property
    def column(self) -> str:
        return FIELDS[self.name][0]

    def __str__(self) -> str:
        return self.name + "".join("." + _fmt_key(k) for k in self.path)


# --------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Ago:
    """A relative time: ``seconds`` before now (``-7d`` is ``Ago(604800)``)."""

    seconds: float
    text: str = _dc_field(default="", compare=False)

    def __str__(self) -> str:
        return self.text or f"-{self.seconds:g}s"


Value = str | int | float | bool | None | Ago | tuple[Any, ...]


def _fmt_value(v: Value) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt_value(item) for item in v) + "]"
    return str(v)


@dataclass(frozen=True)
class Compare:
    """``field op value``; op is one of ``= != < <= > >= ~ =~``. Time values are epoch seconds or Ago; a
    JSON field's ``=``/``!=`` value may be a tuple (a list of scalars: list equality)."""

    field: Field
    op: str
    value: Value

    def __str__(self) -> str:
        return f"{self.field} {self.op} {_fmt_value(self.value)}"


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Value, ...]

    def __str__(self) -> str:
        return f"{self.field} in [{', '.join(_fmt_value(v) for v in self.values)}]"


@dataclass(frozen=True)
class Exists:
    field: Field

    def __str__(self) -> str:
        return f"{self.field} exists"


@dataclass(frozen=True)
class Contains:
    """``tags contains value``."""

    field: Field
    value: str

    def __str__(self) -> str:
        return f"{self.field} contains {_fmt_value(self.value)}"


@dataclass(frozen=True)
class Not:
    operand: FilterExpr

    def __str__(self) -> str:
        inner = str(self.operand)
        return f"not ({inner})" if isinstance(self.operand, (And, Or)) else f"not {inner}"


@dataclass(frozen=True)
class And:
    """All operands hold; ``And(())`` (the empty filter) matches every run."""

    operands: tuple[FilterExpr, ...]

    def __str__(self) -> str:
        return " and ".join(f"({o})" if isinstance(o, (And, Or)) else str(o) for o in self.operands)


@dataclass(frozen=True)
class Or:
    operands: tuple[FilterExpr, ...]

    def __str__(self) -> str:
        return " or ".join(f"({o})" if isinstance(o, Or) else str(o) for o in self.operands)


FilterExpr = Compare | In | Exists | Contains | Not | And | Or


# --------------------------------------------------------------------------------------------
# Tokenizer


@dataclass
class _Tok:
    kind: str  # path, str, num, date, ago, op, punct, end
    value: Any
    pos: int
    text: str


_KEYWORDS = {"and", "or", "not", "in", "exists", "contains", "true", "false", "null"}
_OPS = ("<=", ">=", "!=", "==", "=~", "=", "<", ">", "~")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WS = re.compile(r"\s+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_AGO = re.compile(r"-(\d+(?:\.\d+)?)([smhdw])")
_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORD_TAIL = re.compile(r"[A-Za-z0-9_.:+\-]*")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MAX_DEPTH = 64
_MAX_LIST = 1000  # values in a list compared with a JSON array
# The longest text a '~' (substring) condition takes: every run's text is scanned for it.
MAX_SUBSTRING_CHARS = 1000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_VALUE_HINT = 'expected a value: a number, a "string", true, false or null'


def _iso_epoch(text: str) -> float | None:
    """Epoch seconds of an ISO date/datetime (local time without an offset), or None if invalid."""
    m = _ISO.fullmatch(text.strip())
    if not m:
        return None
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    try:
        micro = int((frac or "0").ljust(6, "0")[:6])
        tzinfo = None
        if tz:
            if tz.upper() == "Z":
                tzinfo = timezone.utc
            else:
                digits = tz[1:].replace(":", "")
                delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                tzinfo = timezone(-delta if tz[0] == "-" else delta)
        dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0), micro, tzinfo)
        return dt.timestamp()
    except (ValueError, OverflowError):
        return None


def _continues(text: str, j: int) -> bool:
    return j < len(text) and (text[j].isalnum() or text[j] in "_.:")


def _read_string(text: str, i: int) -> tuple[str, int]:
    quote, j = text[i], i + 1
    out: list[str] = []
    while True:
        if j >= len(text):
            raise FilterSyntaxError("unterminated string", text, i, f"close it with {quote}")
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if c == "\\":
            e = text[j + 1 : j + 2]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                j += 2
                continue
            if e == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[j + 2 : j + 6]):
                code = int(text[j + 2 : j + 6], 16)
                if 0xD800 <= code <= 0xDBFF and re.fullmatch(r"\\u[dD][c-fC-F][0-9A-Fa-f]{2}", text[j + 6 : j + 12]):
                    # A surrogate pair, as JSON writes a character past U+FFFF ("\ud83d\ude80")
                    low = int(text[j + 8 : j + 12], 16)
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    j += 12
                    continue
                if 0xD800 <= code <= 0xDFFF:
                    raise FilterSyntaxError(f"invalid escape {text[j:j + 6]!r}: a lone surrogate is no character", text,
                                            j, "a character past U+FFFF is a surrogate pair: \\ud83d\\ude80")
                out.append(chr(code))
                j += 6
                continue
            raise FilterSyntaxError(f"invalid escape {text[j:j + 2]!r}", text, j,
                                    "escapes: \\\" \\' \\\\ \\n \\t \\r \\b \\f \\/ \\uXXXX")
        out.append(c)
        j += 1


def _read_path(text: str, i: int) -> tuple[list[str], int]:
    m = _IDENT.match(text, i)
    if m is None:
        raise FilterSyntaxError(f"expected a field name at {text[i:i + 1]!r}", text, i)
    segs, j = [m.group()], m.end()
    while j < len(text) and text[j] == ".":
        k = j + 1
        c = text[k : k + 1]
        if c in ('"', "'"):
            key, j = _read_string(text, k)
        elif c == "`":
            end = text.find("`", k + 1)
            if end < 0:
                raise FilterSyntaxError("unterminated key", text, k, "close it with `")
            key, j = text[k + 1 : end], end + 1
        else:
            km = _BARE_KEY.match(text, k)
            if not km:
                raise FilterSyntaxError("expected a key after '.'", text, k,
                                        'quote keys with other characters: summary."val loss"')
            key, j = km.group(), km.end()
        segs.append(key)
    return segs, j


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while True:
        m = _WS.match(text, i)
        if m:
            i = m.end()
        if i >= n:
            toks.append(_Tok("end", None, n, ""))
            return toks
        c = text[i]
        if c in "()[],":
            toks.append(_Tok("punct", c, i, c))
            i += 1
        elif c in "<>=!~":
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                raise FilterSyntaxError(f"unexpected character {c!r}", text, i,
                                        "use != for 'not equal', or 'not' before a condition")
            toks.append(_Tok("op", op, i, op))
            i += len(op)
        elif c in "\"'":
            s, j = _read_string(text, i)
            toks.append(_Tok("str", s, i, text[i:j]))
            i = j
        elif _IDENT.match(text, i):
            segs, j = _read_path(text, i)
            toks.append(_Tok("path", tuple(segs), i, text[i:j]))
            i = j
        elif c.isdigit() or c in "+-.":
            tok = _read_number(text, i)
            toks.append(tok)
            i = tok.pos + len(tok.text)
        elif c == "`":
            raise FilterSyntaxError("unexpected character '`'", text, i,
                                    "backticks quote a key after a '.', e.g. summary.`val loss`")
        else:
            hint = {"&": "use 'and'", "|": "use 'or'"}.get(c)
            raise FilterSyntaxError(f"unexpected character {c!r}", text, i, hint)


def _word_end(text: str, i: int) -> int:
    """Where the word-like run of characters from ``i`` ends (for quoting it in an error)."""
    m = _WORD_TAIL.match(text, i)
    return m.end() if m is not None else i


def _read_number(text: str, i: int) -> _Tok:
    m = _BARE_DATE.match(text, i)
    if m and not _continues(text, m.end()):
        epoch = _iso_epoch(m.group())
        if epoch is None:
            raise FilterSyntaxError(f"invalid date {m.group()!r}", text, i)
        return _Tok("date", epoch, i, m.group())
    m = _AGO.match(text, i)
    if m and not _continues(text, m.end()):
        return _Tok("ago", Ago(float(m.group(1)) * _AGO_UNITS[m.group(2)], m.group()), i, m.group())
    if _DATE_START.match(text, i):
        word = text[i : _word_end(text, i)]
        raise FilterSyntaxError(f"invalid date {word!r}", text, i,
                                'dates look like 2026-11-01, 2026-11-01T12:00 or "2026-11-01 12:00:00+02:00"')
    m = _NUMBER.match(text, i)
    if m is None:
        if text[i] in "+-":
            return _Tok("punct", text[i], i, text[i])
        raise FilterSyntaxError(f"unexpected character {text[i]!r}", text, i)
    if _continues(text, m.end()):
        word = text[i : _word_end(text, m.end())]
        raise FilterSyntaxError(f"invalid number {word!r}", text, i,
                                f'quote text: "{word}"; relative times are written -7d, -3h, -15m, -30s, -2w')
    s = m.group()
    # An integer beyond 64 bits is read as a float (it compares as one); past a double's range, or
    # too long to be a number at all, it is an error.
    value: int | float = int(s) if _INT.fullmatch(s) and len(s) <= 20 else float(s)
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterSyntaxError(f"number out of range {s if len(s) <= 40 else s[:40] + '…'!r}", text, i,
                                "numbers are double precision: at most about 1.8e308")
    return _Tok("num", value, i, s)


# --------------------------------------------------------------------------------------------
# Parser


def _describe(tok: _Tok) -> str:
    return "end of filter" if tok.kind == "end" else f"token {tok.text!r}"


class _Parser:
    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"expected filter text, got {type(text).__name__}")
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def fail(self, problem: str, pos: int, hint: str | None = None) -> NoReturn:
        raise FilterSyntaxError(problem, self.text, pos, hint)

    def unexpected(self, tok: _Tok, expected: str | None = None) -> NoReturn:
        if tok.kind == "punct" and tok.value in "+-":
            expected = f"quote text that contains '{tok.value}', e.g. group = \"sweep-a\""
        self.fail(f"unexpected {_describe(tok)}", tok.pos, expected)

    @staticmethod
    def is_kw(tok: _Tok, *words: str) -> bool:
        return tok.kind == "path" and len(tok.value) == 1 and tok.value[0].lower() in words

    @staticmethod
    def is_punct(tok: _Tok, c: str) -> bool:
        return tok.kind == "punct" and tok.value == c

    # filter := or_expr; or_expr := and_expr ("or" and_expr)*
    def parse_or(self) -> FilterExpr:
        items = [self.parse_and()]
        while self.is_kw(self.peek(), "or"):
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> FilterExpr:
        items = [self.parse_not()]
        while self.is_kw(self.peek(), "and"):
            self.take()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> FilterExpr:
        tok = self.peek()
        if self.is_kw(tok, "not") or self.is_punct(tok, "("):
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                self.fail("filter nested too deeply", tok.pos, f"at most {_MAX_DEPTH} levels of 'not' and '('")
        if self.is_kw(tok, "not"):
            self.take()
            node = Not(self.parse_not())
            self.depth -= 1
            return node
        tok = self.take()
        if self.is_punct(tok, "("):
            inner = self.parse_or()
            self.depth -= 1
            close = self.take()
            if not self.is_punct(close, ")"):
                self.unexpected(close, f"expected 'and', 'or' or ')' to close the '(' at column {tok.pos + 1}")
            return inner
        if tok.kind == "path" and not self.is_kw(tok, *_KEYWORDS):
            return self.parse_condition(self.field(tok))
        self.unexpected(tok, "expected a condition (FIELD OP VALUE), 'not' or '('")

    def field(self, tok: _Tok) -> Field:
        name, *keys = tok.value
        canon = _ALIASES.get(name, name)
        if canon not in FIELDS:
            self.fail(f"unknown field {name!r}", tok.pos, f"fields: {_FIELD_LIST}")
        kind = FIELDS[canon][1]
        if kind == "json" and not keys:
            self.fail(f"{canon} needs a key", tok.pos, f"e.g. {canon}.lr or {canon}.\"val/loss\"")
        if kind != "json" and keys:
            self.fail(f"{canon} has no keys", tok.pos + len(name), "only config and summary have keys")
        return Field(canon, tuple(keys), tok.pos)

    def parse_condition(self, field: Field) -> FilterExpr:
        tok = self.take()
        negate = False
        if self.is_kw(tok, "not"):
            negate, tok = True, self.take()
            if not self.is_kw(tok, "in", "exists", "contains"):
                self.unexpected(tok, "expected 'in', 'exists' or 'contains' after 'not'")
        if field.kind == "tags" and not self.is_kw(tok, "contains", "exists") and not (tok.kind == "op"
                                                                                      and tok.value == "=~"):
            self.unexpected(tok, "tags take 'contains', 'exists' or '=~', e.g. tags contains \"baseline\"")
        if tok.kind == "op":
            op = "=" if tok.value == "==" else tok.value
            node: FilterExpr = Compare(field, op, self.value(field, op, tok))
        elif self.is_kw(tok, "in"):
            node = In(field, self.value_list(field, tok))
        elif self.is_kw(tok, "exists"):
            node = Exists(field)
        elif self.is_kw(tok, "contains"):
            if field.kind != "tags":
                self.fail("'contains' works on tags only", tok.pos, "use ~ for a substring match")
            vtok = self.take()
            if vtok.kind == "str" or (vtok.kind == "path" and len(vtok.value) == 1
                                      and not self.is_kw(vtok, *_KEYWORDS)):
                value = vtok.value if vtok.kind == "str" else vtok.value[0]
            else:
                self.unexpected(vtok, 'expected a tag, e.g. tags contains "baseline"')
            node = Contains(field, value)
        else:
            self.unexpected(tok, f"expected an operator after {field}: = != < <= > >= ~ in exists")
        return Not(node) if negate else node

    def value_list(self, field: Field, in_tok: _Tok) -> tuple[Value, ...]:
        open_ = self.take()
        if not self.is_punct(open_, "["):
            self.unexpected(open_, "expected '[' after 'in', e.g. state in [finished, failed]")
        values: list[Value] = []
        while True:
            tok = self.peek()
            if self.is_punct(tok, "]"):
                self.take()
                return tuple(values)
            values.append(self.value(field, "=", self.take()))
            sep = self.take()
            if self.is_punct(sep, "]"):
                return tuple(values)
            if not self.is_punct(sep, ","):
                self.unexpected(sep, f"expected ',' or ']' to close the '[' at column {open_.pos + 1}")

    def value(self, field: Field, op: str, op_tok: _Tok) -> Value:
        """Read the value after op_tok (or inside a list when op_tok is a value) and check its type."""
        tok = op_tok if op_tok.kind != "op" else self.take()
        kind, name = field.kind, str(field)
        if op == "=~":
            return self.pattern(field, op_tok, tok)
        if self.is_punct(tok, "[") and kind == "json" and op in ("=", "!=") and op_tok.kind == "op":
            return self.json_list(field, tok)
        if tok.kind == "str":
            src, v = "quoted", tok.value
        elif tok.kind in ("num", "date", "ago"):
            src, v = tok.kind, tok.value
        elif tok.kind == "path" and len(tok.value) == 1 and tok.value[0].lower() in ("true", "false"):
            src, v = "bool", tok.value[0].lower() == "true"
        elif self.is_kw(tok, "null"):
            src, v = "null", None
        elif tok.kind == "path" and len(tok.value) == 1 and not self.is_kw(tok, *_KEYWORDS):
            src, v = "word", tok.value[0]
        elif tok.kind == "path" and not self.is_kw(tok, *_KEYWORDS):
            self.unexpected(tok, "expected a value; comparing two fields is not supported (quote a string "
                                 "that contains '.')")
        else:
            self.unexpected(tok, _VALUE_HINT)

        if op == "~" and isinstance(v, str) and len(v) > MAX_SUBSTRING_CHARS:
            self.fail(f"'~' text of {len(v)} characters", tok.pos, f"at most {MAX_SUBSTRING_CHARS}")
        if src == "null":
            if op not in ("=", "!="):
                self.fail("null only compares with = and !=", tok.pos, f"use '{name} exists'")
            return None
        if op == "~" and kind not in ("text", "json"):
            self.fail("'~' (substring) needs a text field", op_tok.pos, f"{name} is not text")
        if kind == "text":
            if src in ("quoted", "word"):
                return v
            if src in ("num", "date"):
                return tok.text
            self.fail(f"{name} is text", tok.pos, f'quote the value, e.g. {name} = "{tok.text}"')
        if kind == "int":
            if src == "num":
                return v
            self.fail(f"{name} is a number", tok.pos, "compare it with a number, e.g. 0, -9 or 1e3")
        if kind == "time":
            if src in ("num", "date"):
                return float(v)
            if src == "ago":
                return v
            if src == "quoted":
                epoch = _iso_epoch(v)
                if epoch is None:
                    self.fail(f"invalid date {v!r}", tok.pos,
                              'dates look like 2026-11-01, "2026-11-01T12:00" or "2026-11-01 12:00:00+02:00"')
                return epoch
            self.fail(f"{name} is a time", tok.pos, "compare it with a date, a relative time or epoch seconds, "
                                                    "e.g. 2026-11-01, \"2026-11-01T12:00\", -7d, -3h or 1793491200")
        # json
        if src == "ago":
            self.fail("relative times work with created and updated only", tok.pos)
        if src == "date":
            v = tok.text
        if op == "~" and not isinstance(v, str):
            self.fail("'~' (substring) needs a string", tok.pos)
        return v

    def pattern(self, field: Field, op_tok: _Tok, tok: _Tok) -> str:
        """A ``=~`` operand: a quoted RE2 pattern that regex.py takes (on text, JSON or tags fields)."""
        from tracklet.store import regex

        if field.kind not in ("text", "json", "tags"):
            self.fail("'=~' (regular expression) needs a text field, config.KEY, summary.KEY or tags", op_tok.pos,
                      f"{field} is not text")
        if tok.kind != "str":
            self.unexpected(tok, 'expected a quoted pattern, e.g. name =~ "^sweep-[0-9]+$"')
        try:
            regex.portable(tok.value)
        except regex.PatternError as error:
            self.fail(f"invalid pattern: {error.problem}", tok.pos, "RE2 syntax (docs/store.md); double each "
                      'backslash inside the quotes: name =~ "^run-\\\\d+$"')
        return str(tok.value)

    def json_list(self, field: Field, open_: _Tok) -> tuple[Any, ...]:
        """A list literal after ``=``/``!=`` on a JSON field (``config.layers = [64, 64]``): its
        scalars, compared with a JSON array element by element."""
        values: list[Any] = []
        while True:
            tok = self.take()
            if self.is_punct(tok, "]"):
                return tuple(values)
            if tok.kind == "str":
                values.append(tok.value)
            elif tok.kind == "num":
                values.append(tok.value)
            elif tok.kind == "path" and len(tok.value) == 1 and tok.value[0].lower() in ("true", "false", "null"):
                word = tok.value[0].lower()
                values.append(None if word == "null" else word == "true")
            else:
                self.unexpected(tok, "a list to compare with holds numbers, \"strings\", true, false or null")
            if len(values) > _MAX_LIST:
                self.fail(f"a list of more than {_MAX_LIST} values", tok.pos)
            sep = self.take()
            if self.is_punct(sep, "]"):
                return tuple(values)
            if not self.is_punct(sep, ","):
                self.unexpected(sep, f"expected ',' or ']' to close the '[' at column {open_.pos + 1}")


def parse_filter(text: str) -> FilterExpr:
    """Parse filter text (see the module docstring) into its AST; raise FilterSyntaxError if invalid.

    An empty or blank filter gives ``And(())``, which matches every run.
    """
    p = _Parser(text)
    if p.peek().kind == "end":
        return And(())
    expr = p.parse_or()
    tok = p.peek()
    if tok.kind != "end":
        p.unexpected(tok, "expected 'and', 'or' or the end of the filter")
    return expr


def parse_sort(text: str) -> list[tuple[Field, bool]]:
    """Parse ``-summary.val/loss,created`` into ``[(Field, descending), ...]``; blank gives []."""
    p = _Parser(text)
    keys: list[tuple[Field, bool]] = []
    if p.peek().kind == "end":
        return keys
    while True:
        tok = p.take()
        descending = False
        if tok.kind == "punct" and tok.value in "+-":
            descending, tok = tok.value == "-", p.take()
        if tok.kind != "path":
            p.unexpected(tok, "expected a field to sort by, e.g. -summary.val/loss,created")
        field = p.field(tok)
        if field.kind == "tags":
            p.fail("cannot sort by tags", tok.pos)
        keys.append((field, descending))
        sep = p.take()
        if sep.kind == "end":
            return keys
        if not p.is_punct(sep, ","):
            p.unexpected(sep, "expected ',' between sort fields")


# --------------------------------------------------------------------------------------------
# JSON access, rendered per dialect


class _Json(ColumnElement):
    """A JSON value or test, rendered per dialect (SQLite json_* functions, PostgreSQL jsonb operators).

    kinds: ``number`` / ``string`` / ``boolean`` / ``array``: the value at ``keys`` when it has that
    JSON type, else NULL (an array as JSON); ``present``: true when the value at ``keys`` exists and
    is not JSON null; ``nonempty``: the column is a non-empty array; ``has``: the column is an array
    holding the string ``arg``; ``tag_regex``: the column is an array holding a string that the
    portable pattern ``arg`` (regex.py) matches; ``list``: the column (an ``array`` value) equals
    the list of scalars ``arg``, element by element, each compared within its JSON type.
    """

    # Keys and tags become bound parameters made while compiling, which a cached statement would
    # replay with their first values: so no cache key (no _traverse_internals either, since
    # SQLAlchemy would build a cache key from it that leaves the keys out).
    inherit_cache = False

    def __init__(self, column, keys: tuple[str, ...], kind: str, arg: Any = None):
        self.column = column
        self.keys = tuple(store_text(key) for key in keys)  # as the store holds them (text.py)
        self.kind = kind
        self.arg = store_text(arg) if isinstance(arg, str) else arg
        self.type = {"number": sa.Float, "string": sa.String, "array": sa.String}.get(kind, sa.Boolean)()

    @property
    def _from_objects(self):
        return self.column._from_objects


def _json_at(column, path: tuple[str, ...], kind: str) -> sa.ColumnElement[Any]:
    """The value at ``path`` (``number``/``string``/``boolean``, or ``present``), or where no object
    nests there, at the one key the path's keys joined by dots name: ``summary.exact.correct``
    finds ``{"exact": {"correct": 1}}`` and also ``{"exact.correct": 1}`` (an evaluation's
    summary, ``wandb.config["optimizer.lr"]``), as the dashboard shows such a key as a column."""
    nested = _Json(column, path, kind)
    if len(path) < 2:
        return nested
    flat = _Json(column, (".".join(path),), kind)
    return sa.or_(nested, flat) if kind == "present" else sa.func.coalesce(nested, flat, type_=nested.type)


_SQLITE_TYPES = {"number": ("integer", "real"), "string": ("text",), "boolean": ("true", "false"),
                 "array": ("array",)}
_PG_TYPES = {"number": "number", "string": "string", "boolean": "boolean", "array": "array"}


def _as(elem, kind: str):
    if kind == "array":
        return elem  # the JSON value itself (SQLite: its JSON text)
    return {"number": elem.as_float, "string": elem.as_string, "boolean": elem.as_boolean}[kind]()


class _Regex(ColumnElement):
    """``text`` matched by a portable pattern (regex.py), on its first ``regex.MAX_TEXT_CHARS``
    characters: SQLite calls the function each store connection registers (google-re2),
    PostgreSQL runs ``~``. NULL for a NULL text."""

    inherit_cache = False
    type = sa.Boolean()

    def __init__(self, text, pattern: str):
        self.text = text
        self.pattern = pattern

    @property
    def _from_objects(self):
        return self.text._from_objects


@compiles(_Regex)
def _regex_compile(el: _Regex, compiler, **kw) -> str:
    from tracklet.store import regex

    pattern = compiler.process(sa.literal(el.pattern, sa.String()), **kw)
    if compiler.dialect.name == "postgresql":
        return f"(left({compiler.process(el.text, **kw)}, {regex.MAX_TEXT_CHARS}) ~ {pattern})"
    _sqlite_engine_check()
    return f"({regex.SQLITE_FUNCTION}({pattern}, {compiler.process(el.text, **kw)}) = 1)"


def _sqlite_engine_check() -> None:
    from tracklet.errors import MissingDriver
    from tracklet.store import regex

    reason = regex.engine_available()
    if reason is not None:
        raise MissingDriver(reason)


def _list_sqlite(el: _Json, compiler, **kw) -> str:
    """An array (JSON text) equal to ``el.arg``: as long, and each element equal within its type."""
    array = compiler.process(el.column, **kw)
    checks = []
    for index, value in enumerate(el.arg):
        if value is None:
            typed = "_el.type = 'null'"
        elif isinstance(value, bool):
            typed = f"_el.type = '{'true' if value else 'false'}'"
        elif isinstance(value, str):
            typed = f"_el.type = 'text' AND _el.value = {compiler.process(sa.literal(value, sa.String()), **kw)}"
        else:
            typed = ("_el.type IN ('integer', 'real') AND CAST(_el.value AS REAL) = "
                     f"{compiler.process(sa.literal(float(value), sa.Float()), **kw)}")
        checks.append(f"(_el.key = {index} AND {typed})")
    matched = (f"(SELECT count(*) FROM json_each({array}) AS _el WHERE {' OR '.join(checks)})" if checks else "0")
    return f"(json_array_length({array}) = {len(el.arg)} AND {matched} = {len(el.arg)})"


@compiles(_Json)
def _json_compile(el: _Json, compiler, **kw) -> str:
    name = compiler.dialect.name
    if name == "postgresql":
        return _json_pg(el, compiler, **kw)
    if name in ("sqlite", "default"):  # "default": str() of a statement, for debugging
        return _json_sqlite(el, compiler, **kw)
    raise sa.exc.CompileError(f"run filters support SQLite and PostgreSQL, not {name}")


def _json_sqlite(el: _Json, compiler, **kw) -> str:
    col = el.column
    if el.kind == "list":
        return _list_sqlite(el, compiler, **kw)
    if el.kind == "tag_regex":
        from tracklet.store import regex

        _sqlite_engine_check()
        pattern = compiler.process(sa.literal(el.arg, sa.String()), **kw)
        return (f"EXISTS (SELECT 1 FROM json_each({compiler.process(col, **kw)}) AS _tag "
                f"WHERE _tag.type = 'text' AND {regex.SQLITE_FUNCTION}({pattern}, _tag.value) = 1)")
    if el.kind == "has":
        tag = compiler.process(sa.literal(el.arg, sa.String()), **kw)
        return (f"EXISTS (SELECT 1 FROM json_each({compiler.process(col, **kw)}) AS _tag "
                f"WHERE _tag.type = 'text' AND _tag.value = {tag})")
    if el.kind == "nonempty":
        return compiler.process(sa.func.coalesce(sa.func.json_array_length(col), 0) > 0, **kw)
    if not all(_PATH_SAFE.fullmatch(key) for key in el.keys):
        return _json_sqlite_each(el, compiler, **kw)
    # Same path text as SQLAlchemy's own SQLite JSONPathType renders for col[keys].
    path = sa.literal("$" + "".join(f'."{k}"' for k in el.keys), sa.String())
    jtype = sa.func.json_type(col, path)
    if el.kind == "present":
        expr = sa.func.coalesce(jtype, "null") != "null"
    elif el.kind == "array":  # its JSON text (col[keys] would quote it as a string)
        expr = sa.case((jtype == "array", sa.func.json_extract(col, path)))
    else:
        expr = sa.case((jtype.in_(_SQLITE_TYPES[el.kind]), _as(col[el.keys], el.kind)))
    return compiler.process(expr, **kw)


# Keys a SQLite JSON path can address: SQLite compares a path's key with the key's JSON text as
# stored, escapes included, and the store's JSON text escapes '"', '\\', control characters and
# everything past ASCII ('\u00e9'); its path syntax has no escapes at all.
_PATH_SAFE = re.compile(r'[ !#-\[\]-~]*')
_SQLITE_EACH = {
    "number": "CASE WHEN {t}.type IN ('integer', 'real') THEN CAST({t}.value AS REAL) END",
    "string": "CASE WHEN {t}.type = 'text' THEN {t}.value END",
    "boolean": "CASE WHEN {t}.type IN ('true', 'false') THEN {t}.value END",
    "present": "{t}.type",
    "array": "CASE WHEN {t}.type = 'array' THEN {t}.value END",
}


def _json_sqlite_each(el: _Json, compiler, **kw) -> str:
    """The value at any keys on SQLite: ``json_each`` decodes each object's keys, so they are
    compared as written, one nesting level per join (one bound parameter per key)."""
    source = compiler.process(el.column, **kw)
    froms, conditions = [], []
    for depth, key in enumerate(el.keys):
        alias = f"_key{depth}"
        froms.append(f"json_each({source}) AS {alias}")
        conditions.append(f"{alias}.key = {compiler.process(sa.literal(key, sa.String()), **kw)}")
        # Only an object has keys: anything else is walked as an empty one (never parsed as JSON).
        source = f"CASE WHEN {alias}.type = 'object' THEN {alias}.value ELSE '{{}}' END"
    found = _SQLITE_EACH[el.kind].format(t=f"_key{len(el.keys) - 1}")
    lookup = f"(SELECT {found} FROM {', '.join(froms)} WHERE {' AND '.join(conditions)})"
    return f"(COALESCE({lookup}, 'null') != 'null')" if el.kind == "present" else lookup


def _json_pg(el: _Json, compiler, **kw) -> str:
    col = el.column
    if el.kind == "list":
        return _list_pg(el, compiler, **kw)
    if el.kind == "tag_regex":
        from tracklet.store import regex

        tags = compiler.process(col, **kw)
        pattern = compiler.process(sa.literal(el.arg, sa.String()), **kw)
        return (f"EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof({tags}) = 'array' THEN {tags} "
                f"ELSE '[]'::jsonb END) AS _tag(v) WHERE jsonb_typeof(_tag.v) = 'string' "
                f"AND left(_tag.v #>> '{{}}', {regex.MAX_TEXT_CHARS}) ~ {pattern})")
    if el.kind == "has":
        return compiler.process(sa.type_coerce(col, postgresql.JSONB()).has_key(el.arg), **kw)
    expr: sa.ColumnElement[Any]
    if el.kind == "nonempty":
        expr = sa.case((sa.func.jsonb_typeof(col) == "array", sa.func.jsonb_array_length(col) > 0),
                       else_=sa.false())
        return compiler.process(expr, **kw)
    # Chained "->" with one bound key each: any key text is safe (SQLAlchemy's tuple path renders a
    # '{a, b}' array literal without quoting, which breaks on keys with commas, braces or quotes).
    elem = col
    for key in el.keys:
        elem = elem[key]
    jtype = sa.func.jsonb_typeof(elem)
    if el.kind == "present":
        expr = sa.func.coalesce(jtype, "null") != "null"
    elif el.kind == "number":  # as a double, never an error (an int of 400 digits is infinity)
        text = compiler.process(elem.as_string(), **kw)
        return f"(CASE WHEN {compiler.process(jtype, **kw)} = 'number' THEN {_pg_double(text)} END)"
    else:
        # CASE guarantees the cast only runs on values of the right type ('abc'::float would fail).
        expr = sa.case((jtype == _PG_TYPES[el.kind], _as(elem, el.kind)))
    return compiler.process(expr, **kw)


# PostgreSQL's float8 refuses a number that rounds to infinity or, non-zero, to 0 (jsonb keeps any
# numeric: an int of 400 digits): read as SQLite reads them, +-infinity and 0, as run_sort_values
# holds them (store migration 0015; exact bounds: 2**1024 - 2**970 rounds to infinity, 2**-1075 to 0).
_PG_OVER = str(2**1024 - 2**970)
_PG_UNDER = "0." + str(5**1075).rjust(1075, "0")


def _pg_double(text: str) -> str:
    """SQL of a jsonb number's text (``text``: SQL giving it) as a double, as SQLite's CAST gives it,
    never an error; the caller checks that the value is a number first."""
    return (f"CASE WHEN CAST({text} AS NUMERIC) >= {_PG_OVER} THEN CAST('Infinity' AS FLOAT) "
            f"WHEN CAST({text} AS NUMERIC) <= -{_PG_OVER} THEN CAST('-Infinity' AS FLOAT) "
            f"WHEN abs(CAST({text} AS NUMERIC)) <= {_PG_UNDER} THEN CAST(0 AS FLOAT) "
            f"ELSE CAST({text} AS FLOAT) END")


def _list_pg(el: _Json, compiler, **kw) -> str:
    """An array (jsonb) equal to ``el.arg``: as long, and each element equal within its type, a number
    as a double (as ``_list_sqlite``, and as a single number compares: jsonb's own equality is exact)."""
    array = compiler.process(el.column, **kw)
    checks = []
    for index, value in enumerate(el.arg):
        item, text = f"({array} -> {index})", f"({array} ->> {index})"
        if value is None:
            checks.append(f"jsonb_typeof({item}) = 'null'")
        elif isinstance(value, bool):
            checks.append(f"{item} = CAST('{'true' if value else 'false'}' AS JSONB)")
        elif isinstance(value, str):
            checks.append(f"({text} = {compiler.process(sa.literal(value, sa.String()), **kw)} "
                          f"AND jsonb_typeof({item}) = 'string')")
        else:  # CASE: the number's casts only on a number
            checks.append(f"COALESCE((CASE WHEN jsonb_typeof({item}) = 'number' THEN {_pg_double(text)} END) = "
                          f"{compiler.process(sa.literal(float(value), sa.Float()), **kw)}, false)")
    # Nested CASEs: jsonb_array_length fails on anything but an array, and AND's operands have no order.
    return (f"(CASE WHEN jsonb_typeof({array}) = 'array' THEN (CASE WHEN jsonb_array_length({array}) = "
            f"{len(el.arg)} THEN {' AND '.join(checks) or 'true'} ELSE false END) ELSE false END)")


# --------------------------------------------------------------------------------------------
# Compilation

_CMP = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def user_column(runs_table: sa.Table) -> sa.ColumnElement[str]:
    """The ``user`` field in a data root's store: the OS user name the run's process recorded
    (``metadata.username``), "" without one. A server passes its own (``columns``): the user its
    API keys verified."""
    return sa.func.coalesce(_json_at(runs_table.c.metadata, ("username",), "string"), "")


class _Columns:
    """The columns fields name: the runs table's, and ``extra`` ones that are expressions (``user``)."""

    def __init__(self, table: sa.Table, extra: Mapping[str, sa.ColumnElement[Any]] | None) -> None:
        self.table = table
        self.extra = {"user": user_column(table), **(extra or {})}

    def __getitem__(self, name: str) -> Any:
        found = self.extra.get(name)
        return found if found is not None else self.table.c[name]


class _Compiler:
    def __init__(self, table, now: float, columns: Mapping[str, sa.ColumnElement[Any]] | None = None):
        self.t = table
        self.c = _Columns(table, columns)
        self.now = now

    def visit(self, node: FilterExpr) -> sa.ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(*map(self.visit, node.operands)) if node.operands else sa.true()
        if isinstance(node, Or):
            return sa.or_(*map(self.visit, node.operands)) if node.operands else sa.false()
        if isinstance(node, Not):
            return sa.not_(self.visit(node.operand))
        if isinstance(node, Exists):
            return self.exists(node.field)
        if isinstance(node, Contains):
            return _Json(self.c[node.field.column], (), "has", node.value)
        if isinstance(node, Compare):
            if node.op == "!=":
                return sa.not_(self.compare(node.field, "=", node.value))
            return self.compare(node.field, node.op, node.value)
        if isinstance(node, In):
            return self.in_(node.field, node.values)
        raise TypeError(f"not a filter node: {node!r}")

    def exists(self, field: Field):
        col = self.c[field.column]
        kind = field.kind
        if kind == "text":
            return col != ""
        if kind in ("int", "time"):
            return col.is_not(None)
        if kind == "json":
            return _json_at(col, field.path, "present")
        return _Json(col, (), "nonempty")

    def _literal(self, field: Field, v: Value) -> Any:
        """``v`` as the value bound against ``field``'s column."""
        if v is None:
            raise TypeError(f"null is not a literal ({field})")
        if field.kind == "time":
            if isinstance(v, tuple):
                raise TypeError(f"a list on {field}")
            return self.now - v.seconds if isinstance(v, Ago) else float(v)
        if isinstance(v, Ago):
            raise TypeError(f"relative time {v} on {field}")
        if isinstance(v, str):
            return store_text(v)  # text as the store holds it (text.py)
        if isinstance(v, int) and not isinstance(v, bool) and not _INT64_MIN <= v <= _INT64_MAX:
            return float(v)  # an AST built by hand: beyond the databases' integers
        return v

    def _json_value(self, field: Field, v: Value):
        kind = "boolean" if isinstance(v, bool) else "string" if isinstance(v, str) else "number"
        return _json_at(self.c[field.column], field.path, kind)

    def compare(self, field: Field, op: str, v: Value):
        if v is None:
            if op != "=":
                raise ValueError(f"null only compares with = and != ({field} {op} null)")
            return sa.not_(self.exists(field))
        if op == "=~":
            return self.regex(field, str(v))
        if field.kind == "tags":
            raise ValueError("tags take 'contains', 'exists' or '=~'")
        if isinstance(v, tuple):
            if field.kind != "json":
                raise ValueError(f"only config and summary values compare with a list ({field})")
            found = _json_at(self.c[field.column], field.path, "array")
            return sa.func.coalesce(_Json(found, (), "list", tuple(store_text(x) if isinstance(x, str) else x
                                                                   for x in v)), sa.false())
        bound = self._literal(field, v)
        if field.kind == "json":
            x = self._json_value(field, bound)
            if isinstance(bound, bool):
                bound = sa.literal(bound, sa.Boolean())  # false < true (SQLAlchemy orders no bare bool)
            elif isinstance(bound, (int, float)):
                bound = float(bound)
            cond = x.icontains(bound, autoescape=True) if op == "~" else _CMP[op](x, bound)
            return sa.func.coalesce(cond, sa.false())
        col = self.c[field.column]
        if op == "~":
            cond = col.icontains(str(bound), autoescape=True)
        else:
            if field.kind == "int" and isinstance(bound, float):
                bound = sa.literal(bound, sa.Float())  # keep 2.5 from being bound (and cast) as an integer
            cond = _CMP[op](col, bound)
        return sa.and_(col.is_not(None), cond) if getattr(col, "nullable", False) else cond

    def regex(self, field: Field, pattern: str):
        """``field =~ pattern``: the portable pattern (regex.py) on the text, the JSON string or any tag."""
        from tracklet.store import regex

        portable = regex.portable(store_text(pattern))
        col = self.c[field.column]
        if field.kind == "tags":
            return _Json(col, (), "tag_regex", portable)
        text = _json_at(col, field.path, "string") if field.kind == "json" else col
        return sa.func.coalesce(_Regex(text, portable), sa.false())

    def in_(self, field: Field, values: tuple[Value, ...]):
        parts = []
        if any(v is None for v in values):
            parts.append(sa.not_(self.exists(field)))
        present = [self._literal(field, v) for v in values if v is not None]
        if field.kind == "json":
            groups: dict[str, list] = {}
            for v in present:
                kind = "boolean" if isinstance(v, bool) else "string" if isinstance(v, str) else "number"
                groups.setdefault(kind, []).append(float(v) if kind == "number" else v)
            for kind, vals in groups.items():
                x = _json_at(self.c[field.column], field.path, kind)
                parts.append(sa.func.coalesce(x.in_(vals), sa.false()))
        elif present:
            col = self.c[field.column]
            if field.kind == "int" and any(isinstance(v, float) for v in present):
                cond = sa.or_(*(self.compare(field, "=", v) for v in present))
            else:
                cond = col.in_(present)
            parts.append(sa.and_(col.is_not(None), cond) if getattr(col, "nullable", False) else cond)
        return sa.or_(*parts) if parts else sa.false()


def named_columns(expr: FilterExpr) -> set[str]:
    """The columns (``Field.column``) a filter's conditions name: which joins its query needs."""
    if isinstance(expr, (And, Or)):
        return set().union(*map(named_columns, expr.operands))
    if isinstance(expr, Not):
        return named_columns(expr.operand)
    return {expr.field.column}


# Fields whose conditions an index on (project_id, column) serves: ix_runs_project_state (store
# migration 0012) and ix_runs_project_created.
INDEXED_FIELDS = frozenset({"state", "created"})


def indexed_alternatives(expr: FilterExpr) -> tuple[FilterExpr, ...] | None:
    """The operands of ``expr``'s disjunction (``expr`` itself or one of its top-level conjuncts),
    each narrowed to its conditions an index of a project's runs serves, when each has one, else None.

    A planner reads an ``or`` of two indexed conditions as a scan of every run of the project (the
    dashboard's poll ``state = "running" or created > X``: docs/performance.md, session 24); the
    runs each narrowed operand selects, found by its own index and united, hold every run the filter
    selects (the caller applies the whole filter too). Narrowed, an alternative names only the runs
    table's own columns, so it means the same compiled alone as inside the filter (a server's
    ``user`` is a joined column the alternative's subquery would not have)."""
    for term in expr.operands if isinstance(expr, And) else (expr,):
        if isinstance(term, Or) and term.operands and all(map(_indexed, term.operands)):
            return tuple(map(_indexed_part, term.operands))
    return None


def _indexed_part(expr: FilterExpr) -> FilterExpr:
    """``expr`` (one that ``_indexed`` accepts) less its conjuncts no index serves: it holds for
    every run ``expr`` holds for."""
    if isinstance(expr, And):
        parts = tuple(_indexed_part(operand) for operand in expr.operands if _indexed(operand))
        return parts[0] if len(parts) == 1 else And(parts)
    return expr


def _indexed(expr: FilterExpr) -> bool:
    if isinstance(expr, Compare):
        return expr.field.name in INDEXED_FIELDS and expr.op in ("=", "<", "<=", ">", ">=")
    if isinstance(expr, In):
        return expr.field.name in INDEXED_FIELDS
    return isinstance(expr, And) and any(map(_indexed, expr.operands))


def compile_filter(expr: FilterExpr | str, runs_table: sa.Table, *, now: float | None = None,
                   columns: Mapping[str, sa.ColumnElement[Any]] | None = None) -> sa.ColumnElement[bool]:
    """The WHERE clause for a filter (an AST from parse_filter, or filter text) on ``runs_table``.

    ``now`` (epoch seconds, default ``time.time()``) anchors relative times like ``-7d``. The result
    is two-valued (never NULL) and renders on SQLite and PostgreSQL. ``columns``: expressions for
    fields the runs table has no column for (``user``; default ``user_column``), never NULL.
    """
    if isinstance(expr, str):
        expr = parse_filter(expr)
    return _Compiler(runs_table, time.time() if now is None else now, columns).visit(expr)


def compile_sort(keys: list[tuple[Field, bool]] | str, runs_table: sa.Table, *,
                 columns: Mapping[str, sa.ColumnElement[Any]] | None = None, tie_break: bool = True) -> list:
    """ORDER BY clauses for parse_sort's keys (or sort text), missing values last on both dialects,
    then the run id (unique in a project) in the direction of the last key: a total order, so
    pages by offset list each run once.

    A JSON field gives two clauses: its numeric values, then its string values. ``columns`` as
    ``compile_filter``'s. A column that is never NULL (``name``, ``state``...) gets no NULLS LAST:
    the same order, and one PostgreSQL reads from an index backwards for a descending key (it
    reads ``(project_id, name)`` backwards only as ``name DESC NULLS FIRST``). ``user`` is text that
    is "" for a run without one: those runs go last in either direction, as missing values do.
    ``tie_break=False``: without the run id (a caller adding its own).
    """
    if isinstance(keys, str):
        keys = parse_sort(keys)
    named = _Columns(runs_table, columns)
    clauses = []
    descending = False
    for field, descending in keys:
        col = named[field.column]
        if field.kind == "tags":
            raise ValueError("cannot sort by tags")
        exprs = [_json_at(col, field.path, "number"), _json_at(col, field.path, "string")] if field.kind == "json" \
            else [col]
        if field.name == "user":  # runs without a user last, both ways (a server reads it apart: Store.runs)
            clauses.append(sa.case((col == "", 1), else_=0).asc())
        for x in exprs:
            clause = x.desc() if descending else x.asc()
            clauses.append(clause if getattr(x, "nullable", True) is False else clause.nulls_last())
    if tie_break and not any(field.name == "run_id" for field, _ in keys):
        # The run id last, unique in a project: runs with equal keys keep one order, so pages by
        # offset never repeat nor skip one. In the last key's direction: an index ending with it
        # (store migration 0014) serves a key both ways, and a descending sort lists its ascending
        # one backwards (but for missing values, last in both).
        tie = runs_table.c.run_id
        clauses.append(tie.desc() if descending else tie.asc())
    return clauses
