"""The filter language of ``run.table(key).filter(...)``, compiled to a DuckDB ``WHERE`` clause
with bound parameters. A filter string crosses a trust boundary (the server passes one from a
request): it is parsed here against a small grammar, every column name must be one of the
table's, every value becomes a bound parameter, and nothing of the text is pasted into SQL but
column names that exist, quoted. Size is bounded (``MAX_FILTER_CHARS``, ``MAX_CONDITIONS``,
``MAX_DEPTH``, ``MAX_LIST``), so parsing takes bounded time and memory.

::

    score > 0.9 and label = 'cat'
    not (split in ["val", "test"]) or `my column` is null
    name ~ "resnet"

Grammar (keywords are case-insensitive, column names are not)::

    filter    := or_expr
    or_expr   := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | "(" or_expr ")" | condition
    condition := COLUMN OP VALUE                       OP: = == != <> < <= > >= ~
               | COLUMN ["not"] "in" ("[" | "(") VALUE ("," VALUE)* [","] ("]" | ")")
               | COLUMN "is" ["not"] "null"

COLUMN: a bare name (a letter or ``_``, then letters, digits, ``_ . / -``) or any name in
backticks (a backtick in the name doubled: ```a``b``` is ``a`b``). VALUE: a number (``3``,
``-2.5``, ``1e-4``, ``NaN``, ``Infinity``, ``-inf``: case-insensitive), a string in single or double quotes (escapes ``\\\\ \\' \\" \\n \\t \\r``
and JSON's others, ``\\/ \\b \\f \\uXXXX``, so any JSON string is one), ``true``, ``false``
or ``null``.

Types: number columns compare with numbers, text columns with strings (``~`` is a
case-insensitive substring match), bool columns with ``true``/``false`` (``=``, ``!=``), date
and time columns with strings DuckDB reads as dates/times (``ts > '2026-01-01'``); any column with
``is null``/``= null``. Other pairings are errors naming the column and its type.

Every condition is true or false, never unknown: a null never matches a comparison, and
``A != v`` is ``not A = v`` (so it matches nulls), as pandas' ``!=`` does. A NaN in a float
column is DuckDB's: greater than every number and equal to itself.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NoReturn

from tracklet.errors import FilterSyntaxError

MAX_FILTER_CHARS = 4096
MAX_CONDITIONS = 128
MAX_DEPTH = 32
MAX_LIST = 1000

_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">", "~")
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_./\-]*")
# NaN and the infinities as values (JSON's texts of them, which the server sends a group's value as)
_NONFINITE = {"nan": math.nan, "inf": math.inf, "infinity": math.inf}
_SIGNED_INFINITY = re.compile(r"([+-])(inf|infinity)(?![A-Za-z0-9_./\-])", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "/": "/", "b": "\b", "f": "\f"}
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})(?:\\u([0-9a-fA-F]{4}))?")


@dataclasses.dataclass(frozen=True)
class _Tok:
    kind: str  # word, column, number, string, op, punct, end
    value: Any
    pos: int


def column_kind(arrow_type: str) -> str:
    """``number``, ``text``, ``bool``, ``time``, ``null`` or ``other`` for an Arrow type as
    pyarrow prints it (what ``TableLogged.columns`` holds)."""
    t = arrow_type.strip()
    if re.fullmatch(r"u?int(8|16|32|64)|float|double|halffloat|float(16|32|64)|decimal(32|64|128|256)?\(.*\)", t):
        return "number"
    if t in ("string", "large_string", "utf8", "large_utf8", "string_view") or (
            t.startswith("dictionary<values=string") or t.startswith("dictionary<values=large_string")):
        return "text"
    if t in ("bool", "boolean"):
        return "bool"
    if re.match(r"(timestamp|date32|date64|time32|time64|duration)\b", t):
        return "time"
    if t == "null":
        return "null"
    return "other"


def quote_identifier(name: str) -> str:
    """A column name as a DuckDB identifier (double quotes, doubled inside)."""
    return '"' + name.replace('"', '""') + '"'


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "()[],":
            tokens.append(_Tok("punct", c, i))
            i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(_Tok("op", "=" if op == "==" else "!=" if op == "<>" else op, i))
            i += len(op)
            continue
        if c in "'\"":
            value, end = _read_string(text, i)
            tokens.append(_Tok("string", value, i))
            i = end
            continue
        if c == "`":
            name, end = _read_quoted_name(text, i)
            tokens.append(_Tok("column", name, i))
            i = end
            continue
        infinity = _SIGNED_INFINITY.match(text, i)
        if infinity is not None:
            tokens.append(_Tok("number", -math.inf if infinity.group(1) == "-" else math.inf, i))
            i = infinity.end()
            continue
        number = _NUMBER.match(text, i)
        if number is not None and (c.isdigit() or c in "+-." ):
            end = number.end()
            if end < n and (text[end].isalnum() or text[end] == "_"):
                _fail("a number runs into a name", text, i, "put a space after the number, or quote the name")
            tokens.append(_Tok("number", _number(number.group(), text, i), i))
            i = end
            continue
        word = _BARE.match(text, i)
        if word is not None:
            value = word.group()
            kind = "word" if value.lower() in _KEYWORDS else "column"
            tokens.append(_Tok(kind, value.lower() if kind == "word" else value, i))
            i = word.end()
            continue
        _fail(f"unexpected character {c!r}", text, i,
              "filters compare columns with values: score > 0.9 and label = 'cat' (quote odd column names in backticks)")
    tokens.append(_Tok("end", None, n))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\":
            escaped = text[i + 1:i + 2]
            if escaped == "u":
                character, i = _read_unicode_escape(text, i)
                out.append(character)
                continue
            if escaped not in _ESCAPES:
                _fail(f"unknown escape \\{escaped}", text, i,
                      "escapes: \\\\ \\' \\\" \\n \\t \\r \\/ \\b \\f \\uXXXX")
            out.append(_ESCAPES[escaped])
            i += 2
            continue
        out.append(c)
        i += 1
    _fail("unterminated string", text, start)


def _read_quoted_name(text: str, start: int) -> tuple[str, int]:
    """The column name in backticks at ``start`` (a doubled backtick is one backtick of the name)
    and where it ends."""
    out: list[str] = []
    i = start + 1
    while True:
        end = text.find("`", i)
        if end < 0:
            _fail("unterminated `column name`", text, start)
        out.append(text[i:end])
        if text.startswith("`", end + 1):
            out.append("`")
            i = end + 2
            continue
        if end == start + 1:
            _fail("empty `column name`", text, start)
        return "".join(out), end + 1


def _read_unicode_escape(text: str, pos: int) -> tuple[str, int]:
    """The character a JSON ``\\uXXXX`` escape at ``pos`` writes (a surrogate pair: two escapes)
    and where it ends."""
    match = _UNICODE_ESCAPE.match(text, pos)
    if match is None:
        _fail("\\u needs four hex digits", text, pos)
    high = int(match.group(1), 16)
    if 0xD800 <= high < 0xDC00 and match.group(2) and 0xDC00 <= (low := int(match.group(2), 16)) < 0xE000:
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)), match.end()
    if 0xD800 <= high < 0xE000:
        _fail("\\u escape of a lone surrogate (not a character)", text, pos)
    return chr(high), pos + 6


def _number(literal: str, text: str, pos: int) -> int | float:
    if re.fullmatch(r"[+-]?\d+", literal):
        value = int(literal)
        return value if abs(value) < 2**63 else float(value)
    number = float(literal)
    if not math.isfinite(number):
        _fail(f"number {literal} is out of range", text, pos)
    return number


def _fail(problem: str, text: str, pos: int, hint: str | None = None) -> NoReturn:
    raise FilterSyntaxError(problem, text, pos, hint)


class _Compiler:
    """Recursive descent over the tokens, emitting SQL and its parameters."""

    def __init__(self, text: str, columns: dict[str, str]) -> None:
        self.text = text
        self.columns = columns
        self.tokens = _tokenize(text)
        self.at = 0
        self.params: list[Any] = []
        self.conditions = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.tokens[self.at]

    def take(self) -> _Tok:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def is_word(self, token: _Tok, *words: str) -> bool:
        return token.kind == "word" and token.value in words

    def unexpected(self, token: _Tok, expected: str) -> NoReturn:
        shown = "the end of the filter" if token.kind == "end" else repr(str(token.value))
        _fail(f"expected {expected}, found {shown}", self.text, token.pos)

    def compile(self) -> str:
        sql = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            self.unexpected(token, "'and', 'or' or the end of the filter")
        return sql

    def or_expr(self) -> str:
        parts = [self.and_expr()]
        while self.is_word(self.peek(), "or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def and_expr(self) -> str:
        parts = [self.not_expr()]
        while self.is_word(self.peek(), "and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def not_expr(self) -> str:
        token = self.peek()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            _fail(f"the filter nests deeper than {MAX_DEPTH} levels", self.text, token.pos)
        try:
            if self.is_word(token, "not"):
                self.take()
                return f"(NOT {self.not_expr()})"
            if token.kind == "punct" and token.value == "(":
                self.take()
                inner = self.or_expr()
                closing = self.take()
                if not (closing.kind == "punct" and closing.value == ")"):
                    self.unexpected(closing, "')'")
                return inner
            return self.condition()
        finally:
            self.depth -= 1

    def condition(self) -> str:
        token = self.take()
        if token.kind != "column":
            self.unexpected(token, "a column name" if token.kind != "word" else "a column name (quote a column named "
                            f"{token.value!r} in backticks)")
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            _fail(f"the filter has more than {MAX_CONDITIONS} conditions", self.text, token.pos)
        name = token.value
        if name not in self.columns:
            listed = ", ".join(sorted(self.columns)[:20]) + (", ..." if len(self.columns) > 20 else "")
            _fail(f"unknown column {name!r}", self.text, token.pos, f"the table's columns: {listed}")
        kind = column_kind(self.columns[name])
        column = quote_identifier(name)
        following = self.take()
        if self.is_word(following, "is"):
            negated = self.is_word(self.peek(), "not")
            if negated:
                self.take()
            null = self.take()
            if not self.is_word(null, "null"):
                self.unexpected(null, "'null'")
            return f"({column} IS {'NOT ' if negated else ''}NULL)"
        if self.is_word(following, "not", "in"):
            negated = following.value == "not"
            if negated:
                word = self.take()
                if not self.is_word(word, "in"):
                    self.unexpected(word, "'in'")
            return self.in_list(name, column, kind, negated)
        if following.kind != "op":
            self.unexpected(following, "an operator (= != < <= > >= ~), 'in' or 'is'")
        op = following.value
        value_token = self.take()
        value = self.value(value_token)
        if value is None:
            if op not in ("=", "!="):
                _fail("null can only be compared with = or !=", self.text, value_token.pos)
            return f"({column} IS {'NOT ' if op == '!=' else ''}NULL)"
        self.check_type(name, kind, op, value, value_token)
        if op == "~":
            self.params.append(value)
            return f"({column} IS NOT NULL AND contains(lower({column}), lower(?)))"
        self.params.append(value)
        if op == "!=":
            return f"(NOT ({column} IS NOT NULL AND {column} = ?))"
        return f"({column} IS NOT NULL AND {column} {op} ?)"

    def in_list(self, name: str, column: str, kind: str, negated: bool) -> str:
        opening = self.take()
        if not (opening.kind == "punct" and opening.value in "(["):
            self.unexpected(opening, "'[' after 'in'")
        closer = "]" if opening.value == "[" else ")"
        values: list[Any] = []
        while True:
            token = self.take()
            if token.kind == "punct" and token.value == closer and values:
                break
            value = self.value(token)
            if value is None:
                _fail("null can't be in a list; use 'is null'", self.text, token.pos)
            self.check_type(name, kind, "=", value, token)
            values.append(value)
            if len(values) > MAX_LIST:
                _fail(f"a list holds more than {MAX_LIST} values", self.text, token.pos)
            separator = self.take()
            if separator.kind == "punct" and separator.value == closer:
                break
            if not (separator.kind == "punct" and separator.value == ","):
                self.unexpected(separator, f"',' or '{closer}'")
        self.params.extend(values)
        marks = ", ".join("?" * len(values))
        matched = f"({column} IS NOT NULL AND {column} IN ({marks}))"
        return f"(NOT {matched})" if negated else matched

    def value(self, token: _Tok) -> Any:
        if token.kind in ("number", "string"):
            return token.value
        if self.is_word(token, "true"):
            return True
        if self.is_word(token, "false"):
            return False
        if self.is_word(token, "null"):
            return None
        if token.kind == "column" and token.value.lower() in _NONFINITE:
            return _NONFINITE[token.value.lower()]
        self.unexpected(token, "a value (a number, a 'string', true, false, null, nan or inf)")

    def check_type(self, name: str, kind: str, op: str, value: Any, token: _Tok) -> None:
        given = "bool" if isinstance(value, bool) else "number" if isinstance(value, (int, float)) else "text"
        allowed = {"number": {"number"}, "text": {"text"}, "bool": {"bool"}, "time": {"text"},
                   "null": {"number", "text", "bool"}, "other": set()}[kind]
        if given not in allowed:
            what = {"number": "a number", "text": "a string", "bool": "true/false"}[given]
            column_type = self.columns[name]
            if kind == "other":
                _fail(f"column {name!r} ({column_type}) can only be tested with 'is null' / 'is not null'",
                      self.text, token.pos)
            _fail(f"column {name!r} is {column_type}; it can't be compared with {what}", self.text, token.pos)
        if op == "~" and kind != "text":
            _fail(f"~ (contains) needs a text column; {name!r} is {self.columns[name]}", self.text, token.pos)
        if kind == "bool" and op not in ("=", "!="):
            _fail(f"column {name!r} is bool: use = or !=", self.text, token.pos)


def compile_filter(text: str, columns: dict[str, str]) -> tuple[str, list[Any]]:
    """``text`` as a SQL boolean expression over ``columns`` (name -> Arrow type) and its bound
    parameters. ``FilterSyntaxError`` (a ``ValueError``) names what is wrong, with a caret."""
    if not isinstance(text, str):
        raise FilterSyntaxError(f"a filter is a str, not {type(text).__name__}", "", 0)
    if len(text) > MAX_FILTER_CHARS:
        raise FilterSyntaxError(f"the filter is {len(text)} characters long; at most {MAX_FILTER_CHARS} are allowed",
                                text[:80], 0)
    if not text.strip():
        raise FilterSyntaxError("the filter is empty", text, 0, "e.g. score > 0.9 and label = 'cat'")
    compiler = _Compiler(text, columns)
    sql = compiler.compile()
    return sql, compiler.params


def check_sort_column(name: Any, columns: dict[str, str]) -> str:
    """``name`` if the table has such a column of a sortable type; else ``FilterSyntaxError``."""
    if not isinstance(name, str) or name not in columns:
        listed = ", ".join(sorted(columns)[:20])
        raise FilterSyntaxError(f"unknown column {name!r} to sort by", str(name)[:80], 0, f"the table's columns: {listed}")
    if column_kind(columns[name]) == "other":
        raise FilterSyntaxError(f"column {name!r} ({columns[name]}) can't be sorted", name, 0)
    return name
