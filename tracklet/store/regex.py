"""Regular expressions in run filters (``name =~ "^sweep-\\\\d+$"``, W&B's ``$regex``): RE2 syntax
(W&B's), checked and rewritten into one *portable* pattern that RE2 and PostgreSQL's ``~`` read the
same way, so both store backends select the same runs.

Semantics (W&B's, whose server runs RE2): a match anywhere in the text unless anchored with ``^`` /
``$`` (the start and end of the whole text: no multi-line mode); case-sensitive but after ``(?i)``
(to the end of its group) or inside ``(?i:...)``; ``.`` matches any character but a newline;
``\\d \\w \\s`` and POSIX classes are ASCII. The rewrite spells every construct out in the few forms
both engines agree on: ``.`` as ``[^\\n]``, ``\\d`` as ``[0-9]``, case-insensitive letters as explicit
alternatives (``k`` becomes ``[Kk\\u212a]``, RE2's Unicode simple case folding, checked character by
character against RE2), every group as ``(?:...)``, laziness dropped (it never changes whether a text
matches). Constructs on which the engines disagree are refused, naming the construct: ``\\b``/``\\B``
(word characters), ``\\pN`` (Unicode classes), flags other than ``i``, repetition counts above
:data:`MAX_REPEAT` (PostgreSQL's limit). What RE2 itself refuses (backreferences, lookaround,
repetitions nested past :data:`MAX_NESTED_COUNT`) is refused too.

Time is bounded: a pattern has at most :data:`MAX_PATTERN_CHARS` characters and a program of at
most :data:`MAX_PROGRAM` steps once counted repetitions are multiplied out (``a{255}b{255}c{255}d{255}``
is refused), both engines run in time linear in the text (RE2 by construction; PostgreSQL's engine,
without backreferences, as a DFA), and a text is matched on its first :data:`MAX_TEXT_CHARS`
characters. On SQLite the store registers :func:`sqlite_regexp` (google-re2) on each connection
(store/engine.py).
"""

from __future__ import annotations

import functools
import string
from typing import Any, NoReturn

from tracklet.errors import TrackletError

MAX_PATTERN_CHARS = 1000
MAX_REPEAT = 255  # PostgreSQL's largest repetition count (RE2's is 1000)
MAX_PROGRAM = 1000  # atoms once counted repetitions are expanded
MAX_TEXT_CHARS = 4096  # a longer text is matched on its first MAX_TEXT_CHARS characters
MAX_NESTING = 50  # groups inside groups
MAX_NESTED_COUNT = 1000  # the product of {n,m} counts nested in each other (RE2's limit)
SQLITE_FUNCTION = "tracklet_regexp"

_MAX_CP = 0x10FFFF
_META = set("\\.+*?()|[]{}^$")
_CLASS_SPECIAL = set("\\]^-[")
_DIGIT = [(0x30, 0x39)]
_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE = [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)]  # RE2's \s: [\t\n\f\r ]
_POSIX = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)], "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)], "blank": [(0x09, 0x09), (0x20, 0x20)], "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": _DIGIT, "graph": [(0x21, 0x7E)], "lower": [(0x61, 0x7A)], "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)], "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)], "word": _WORD, "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
_PERL = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_CONTROL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_FOLD_RANGE_LIMIT = 512  # under (?i), a range of more characters is refused (its folding isn't spelled out)


class PatternError(TrackletError):
    """A pattern tracklet refuses: ``problem`` says why, naming the construct; ``offset`` is where
    in the pattern. The filter parser reports it as a ``FilterSyntaxError``, W&B's layer as its
    ``FilterError``."""

    def __init__(self, problem: str, offset: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.offset = offset

    def __reduce__(self) -> Any:
        return (type(self), (self.problem, self.offset))


# RE2 folds case by Unicode's simple case folding: a character's orbit is what its lowercase and
# uppercase mappings reach, but for these orbits, whose members no mapping from the others reaches
# (KELVIN SIGN, LATIN SMALL LETTER LONG S, GREEK SMALL LETTER FINAL SIGMA...; found by checking
# every cased character against RE2 itself) and DOTLESS I, which RE2 folds with nothing.
_ORBITS = ("Kk\u212a|Ss\u017f|\xb5\u039c\u03bc|\xc5\xe5\u212b|\xdf\u1e9e|\u01c4\u01c5\u01c6|\u01c7\u01c8\u01c9|"
            "\u01ca\u01cb\u01cc|\u01f1\u01f2\u01f3|\u0345\u0399\u03b9\u1fbe|\u0392\u03b2\u03d0|"
            "\u0395\u03b5\u03f5|\u0398\u03b8\u03d1\u03f4|\u039a\u03ba\u03f0|\u03a0\u03c0\u03d6|"
            "\u03a1\u03c1\u03f1|\u03a3\u03c2\u03c3|\u03a6\u03c6\u03d5|\u03a9\u03c9\u2126|\u0412\u0432\u1c80|"
            "\u0414\u0434\u1c81|\u041e\u043e\u1c82|\u0421\u0441\u1c83|\u0422\u0442\u1c84\u1c85|"
            "\u042a\u044a\u1c86|\u0462\u0463\u1c87|\u1c88\ua64a\ua64b|\u1e60\u1e61\u1e9b|\u1f80\u1f88|"
            "\u1f81\u1f89|\u1f82\u1f8a|\u1f83\u1f8b|\u1f84\u1f8c|\u1f85\u1f8d|\u1f86\u1f8e|\u1f87\u1f8f|"
            "\u1f90\u1f98|\u1f91\u1f99|\u1f92\u1f9a|\u1f93\u1f9b|\u1f94\u1f9c|\u1f95\u1f9d|\u1f96\u1f9e|"
            "\u1f97\u1f9f|\u1fa0\u1fa8|\u1fa1\u1fa9|\u1fa2\u1faa|\u1fa3\u1fab|\u1fa4\u1fac|\u1fa5\u1fad|"
            "\u1fa6\u1fae|\u1fa7\u1faf|\u1fb3\u1fbc|\u1fc3\u1fcc|\u1ff3\u1ffc")
_DOTLESS_I = "\u0131"


@functools.lru_cache(maxsize=1)
def _orbit_table() -> dict[str, frozenset[str]]:
    return {c: frozenset(group) for group in _ORBITS.split("|") for c in group}


def _variants(c: str) -> frozenset[str]:
    """``c`` and every character RE2's ``(?i)`` matches it with."""
    found = _orbit_table().get(c)
    if found is not None:
        return found
    if c == _DOTLESS_I:
        return frozenset(c)
    seen, todo = {c}, [c]
    while todo:
        current = todo.pop()
        for other in (current.lower(), current.upper()):
            if len(other) == 1 and other not in seen:
                seen.add(other)
                todo.append(other)
    seen.discard(_DOTLESS_I)
    return frozenset(seen)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, start = [], 0
    for lo, hi in _merge(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_CP:
        out.append((start, _MAX_CP))
    return out


def _class_char(cp: int) -> str:
    c = chr(cp)
    return "\\" + c if c in _CLASS_SPECIAL else c


def _emit_set(ranges: list[tuple[int, int]], negate: bool) -> str:
    """A bracket expression both engines read alike: explicit code-point ranges, no classes. NUL
    is never in a stored text (tracklet/store/text.py holds U+FFFD in its place, which a set holding
    NUL matches instead); surrogates are no characters."""
    if not negate and any(lo == 0 for lo, _ in ranges):
        ranges = [*ranges, (0xFFFD, 0xFFFD)]
    parts = []
    for lo, hi in _merge(ranges):
        lo = max(lo, 1)
        if 0xD800 <= lo <= 0xDFFF:
            lo = 0xE000
        if 0xD800 <= hi <= 0xDFFF:
            hi = 0xD7FF
        if lo > hi:
            continue
        parts.append(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}")
    if not parts:  # an empty set: matches no character (negated: any character)
        return ("[" if negate else "[^") + "\x01-\U0010ffff]"
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.i = 0
        self.fold = False
        self.depth = 0
        self.nested = 1  # the largest product of nested {n,m} counts in the atom just read

    def fail(self, problem: str, offset: int | None = None) -> NoReturn:
        raise PatternError(problem, self.i if offset is None else offset)

    def peek(self, k: int = 0) -> str:
        return self.s[self.i + k] if self.i + k < len(self.s) else ""

    def parse(self) -> str:
        if len(self.s) > MAX_PATTERN_CHARS:
            self.fail(f"a pattern of {len(self.s)} characters; at most {MAX_PATTERN_CHARS}", 0)
        text, size, _ = self.alternation()
        if self.i < len(self.s):  # only a ')' stops the top level early
            self.fail("unmatched ')'")
        if size > MAX_PROGRAM:
            self.fail(f"the pattern is too large once its repetitions are counted out ({size} steps; at most "
                      f"{MAX_PROGRAM}): use fewer or smaller {{n,m}} counts", 0)
        return text

    def alternation(self) -> tuple[str, int, int]:
        """Branches: their portable text, size, and the largest product of nested repetition counts."""
        texts, size, counts = [], 0, 1
        while True:
            text, part, nested = self.concatenation()
            texts.append(text)
            size += part
            counts = max(counts, nested)
            if self.peek() != "|":
                return "|".join(texts), size + len(texts) - 1, counts
            self.i += 1

    def concatenation(self) -> tuple[str, int, int]:
        out, size, counts = [], 0, 1
        while self.i < len(self.s) and self.peek() not in "|)":
            start = self.i
            self.nested = 1
            text, part, anchor = self.atom()
            text, part, nested = self.repetitions(text, part, anchor, start, self.nested)
            counts = max(counts, nested)
            out.append(text)
            size += part
            if size > MAX_PROGRAM:
                self.fail(f"the pattern is too large once its repetitions are counted out (more than {MAX_PROGRAM} "
                          "steps): use fewer or smaller {n,m} counts", start)
        return "".join(out), size, counts

    def counted(self) -> tuple[int, int | None, int] | None:
        """``{n}``, ``{n,}`` or ``{n,m}`` at the cursor: (n, m or None, its length); None when the
        text there is no repetition (RE2 then reads ``{`` as itself)."""
        j = self.i + 1
        k = j
        while k < len(self.s) and self.s[k].isdigit() and self.s[k].isascii():
            k += 1
        if k == j or k - j > 6:
            return None
        low = int(self.s[j:k])
        if self.s[k : k + 1] == "}":
            return low, low, k + 1 - self.i
        if self.s[k : k + 1] != ",":
            return None
        m = k + 1
        while m < len(self.s) and self.s[m].isdigit() and self.s[m].isascii():
            m += 1
        if self.s[m : m + 1] != "}" or m - (k + 1) > 6:
            return None
        high = int(self.s[k + 1 : m]) if m > k + 1 else None
        return low, high, m + 1 - self.i

    def repetitions(self, text: str, size: int, anchor: bool, start: int, nested: int) -> tuple[str, int, int]:
        repeated = False
        while True:
            c = self.peek()
            counted = self.counted() if c == "{" else None
            if c not in ("*", "+", "?") and counted is None:
                return text, size, nested
            if repeated:
                self.fail(f"bad repetition operator {self.s[start:self.i + 1]!r} (a repetition of a repetition: "
                          "group it first, (?:a*)*)")
            if anchor:
                self.fail(f"a repetition of {self.s[start:self.i]!r} (an anchor matches no character)")
            repeated = True
            if counted is None:
                self.i += 1
                text = text + c
                size = size + 1
            else:
                low, high, length = counted
                if max(low, high or 0) > MAX_REPEAT:
                    self.fail(f"the repetition count in {self.s[self.i:self.i + length]!r} is above {MAX_REPEAT} "
                              "(the most PostgreSQL takes)")
                if high is not None and high < low:
                    self.fail(f"bad repetition {self.s[self.i:self.i + length]!r}: the second count is below the first")
                self.i += length
                text += f"{{{low}}}" if high == low else f"{{{low},}}" if high is None else f"{{{low},{high}}}"
                size = size * max(high if high is not None else low + 1, 1)
                nested *= max(high if high is not None else low, 1)
                if nested > MAX_NESTED_COUNT:
                    self.fail(f"bad repetition operator {self.s[self.i - length:self.i]!r}: repetitions nested in "
                              f"each other count more than {MAX_NESTED_COUNT} in all (RE2's limit)")
            if self.peek() == "?":  # lazy: the same texts match
                self.i += 1

    def folded(self, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """A class's (ASCII) ranges with, under (?i), every character's case variants, as RE2 folds
        classes before it negates them (``(?i)\\W`` leaves out KELVIN SIGN, ``(?i)[[:upper:]]`` is
        every letter)."""
        if not self.fold:
            return ranges
        return ranges + [(ord(v), ord(v)) for lo, hi in ranges for cp in range(lo, hi + 1) for v in _variants(chr(cp))]

    def literal(self, c: str) -> str:
        if c == "\x00":
            c = "\ufffd"  # as the store holds it
        variants = _variants(c) if self.fold else frozenset(c)
        if len(variants) > 1:
            return _emit_set([(ord(v), ord(v)) for v in variants], False)
        return "\\" + c if c in _META else c

    def atom(self) -> tuple[str, int, bool]:
        start = self.i
        c = self.s[self.i]
        if self.s.startswith("(?i)", self.i):  # case-insensitive to the end of the enclosing group, as RE2
            self.i += 4
            self.fold = True
            return "", 0, True
        if c == "(":
            text, size = self.group()
            return text, size + 1, False
        if c == "[":
            return self.bracket(), 1, False
        if c == ".":
            self.i += 1
            return "[^\n]", 1, False
        if c in "^$":
            self.i += 1
            return c, 0, True
        if c == "\\":
            return self.escape()
        if c in "*+?":
            self.fail(f"missing argument to repetition operator {c!r}", start)
        if c == "{" and self.counted() is not None:
            self.fail("missing argument to repetition operator '{'", start)
        self.i += 1
        return self.literal(c), 1, False

    def group(self) -> tuple[str, int]:
        start = self.i
        outer_fold = self.fold
        if self.s.startswith("(?:", self.i):
            self.i += 3
        elif self.s.startswith("(?i:", self.i):
            self.i += 4
            self.fold = True
        elif self.s.startswith("(?P<", self.i) or (self.s.startswith("(?<", self.i) and self.peek(3) not in "=!"):
            end = self.s.find(">", self.i)
            name = self.s[self.i + (4 if self.peek(2) == "P" else 3) : end] if end > 0 else ""
            if end < 0 or not name or not all(ch.isalnum() or ch == "_" for ch in name):
                self.fail("invalid named capture group", start)
            self.i = end + 1
        elif self.peek(1) == "?":
            construct = self.s[self.i : self.i + 3]
            if construct in ("(?=", "(?!") or self.s.startswith(("(?<=", "(?<!"), self.i):
                shown = self.s[self.i : self.i + (3 if construct in ("(?=", "(?!") else 4)]
                self.fail(f"{shown!r} (lookaround) is not regular-expression syntax RE2 (W&B's engine) has", start)
            self.fail(f"the flag group {self.s[self.i:self.s.find(')', self.i) + 1 or self.i + 3]!r}: only (?i) and "
                      "(?i:...) (case-insensitive) are supported", start)
        else:
            self.i += 1
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.fail(f"groups nested more than {MAX_NESTING} deep", start)
        inner, size, nested = self.alternation()
        self.depth -= 1
        if self.peek() != ")":
            self.fail("missing ')'", start)
        self.i += 1
        self.nested = nested
        self.fold = outer_fold
        return "(?:" + inner + ")", size

    def escape(self) -> tuple[str, int, bool]:
        start = self.i
        e = self.peek(1)
        if not e:
            self.fail("trailing backslash at the end of the pattern", start)
        self.i += 2
        if e in _PERL or e.lower() in _PERL:
            return _emit_set(self.folded(_PERL[e.lower()]), e.isupper()), 1, False
        if e == "A":
            return "^", 0, True
        if e == "z":
            return "$", 0, True
        if e == "Q":
            end = self.s.find("\\E", self.i)
            body = self.s[self.i :] if end < 0 else self.s[self.i : end]
            self.i = len(self.s) if end < 0 else end + 2
            return "".join(self.literal(ch) for ch in body), max(len(body), 0), False
        char = self.char_escape(e, start)
        return self.literal(char), 1, False

    def char_escape(self, e: str, start: int) -> str:
        """The character ``\\e`` stands for (the cursor after ``e``)."""
        if e in _CONTROL:
            return _CONTROL[e]
        if e == "x":
            if self.peek() == "{":
                end = self.s.find("}", self.i)
                digits = self.s[self.i + 1 : end] if end > 0 else ""
                self.i = end + 1 if end > 0 else self.i
            else:
                digits = self.s[self.i : self.i + 2]
                self.i += 2
                if len(digits) != 2:  # \xHH: exactly two
                    digits = ""
            if not digits or len(digits) > 6 or not all(ch in string.hexdigits for ch in digits):
                self.fail(f"invalid escape sequence {self.s[start:self.i]!r}", start)
            cp = int(digits, 16)
            if cp > _MAX_CP or 0xD800 <= cp <= 0xDFFF:
                self.fail(f"invalid escape sequence {self.s[start:self.i]!r} (not a character)", start)
            return chr(cp)
        if e in "bB":
            self.fail(f"\\{e} (a word boundary) is not supported: the databases disagree on which characters make "
                      "words", start)
        if e in "pP":
            self.fail(f"\\{e} (a Unicode character class) is not supported: the databases disagree on them", start)
        if e.isdigit():
            self.fail(f"\\{e}: backreferences and octal escapes are not supported (RE2, W&B's engine, has no "
                      "backreferences)", start)
        if e.isascii() and not e.isalnum() and e.isprintable():
            return e
        self.fail(f"invalid escape sequence \\{e}", start)

    def bracket(self) -> str:
        start = self.i
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        items: list[tuple[int, int]] = []  # folded under (?i) below
        classes: list[tuple[int, int]] = []  # \d, [:alpha:] ...: folded as they are read
        first = True
        while True:
            c = self.peek()
            if not c:
                self.fail("missing ']' to close the character class", start)
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            end = self.s.find(":]", self.i + 2) if c == "[" and self.peek(1) == ":" else -1
            name = self.s[self.i + 2 : end] if end > 0 else ""
            if end > 0 and name and all(ch.isascii() and (ch.isalpha() or ch == "^") for ch in name):
                negated = name.startswith("^")
                if name.lstrip("^") not in _POSIX:
                    self.fail(f"invalid character class {self.s[self.i:end + 2]!r}", self.i)
                ranges = self.folded(_POSIX[name.lstrip("^")])
                classes.extend(_complement(ranges) if negated else ranges)
                self.i = end + 2
                continue
            if c == "\\":
                e = self.peek(1)
                if e and (e in _PERL or e.lower() in _PERL):
                    ranges = self.folded(_PERL[e.lower()])
                    classes.extend(_complement(ranges) if e.isupper() else ranges)
                    self.i += 2
                    continue
                low = self.class_char()
            else:
                self.i += 1
                low = c
            high = low
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                if self.peek() == "\\" and self.peek(1) and (self.peek(1) in _PERL or self.peek(1).lower() in _PERL):
                    self.fail("a range may not end in a class (\\d, \\w, \\s)", self.i)
                if self.peek() == "\\":
                    high = self.class_char()
                else:
                    high = self.peek()
                    self.i += 1
                if ord(high) < ord(low):
                    self.fail(f"invalid character class range {low}-{high}", start)
            items.append((ord(low), ord(high)))
        if self.fold:
            folded = list(items)
            for lo, hi in items:
                if hi - lo >= _FOLD_RANGE_LIMIT:
                    self.fail(f"under (?i), a range of {hi - lo + 1} characters ({chr(lo)!r}-{chr(hi)!r}) is not "
                              f"supported (at most {_FOLD_RANGE_LIMIT})", start)
                for cp in range(lo, hi + 1):
                    folded.extend((ord(v), ord(v)) for v in _variants(chr(cp)))
            items = folded
        return _emit_set(items + classes, negate)

    def class_char(self) -> str:
        """An escaped character inside a class (the cursor on the backslash)."""
        start = self.i
        e = self.peek(1)
        if not e:
            self.fail("trailing backslash at the end of the pattern", start)
        self.i += 2
        if e in "bB":  # RE2 reads no \b inside a class either
            self.fail(f"invalid escape sequence \\{e}", start)
        return self.char_escape(e, start)


@functools.lru_cache(maxsize=256)
def portable(pattern: str) -> str:
    """``pattern`` (RE2 syntax) as the portable pattern both engines run; a :class:`PatternError`
    naming the construct for one tracklet refuses."""
    return _Parser(pattern).parse()


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    import re2  # google-re2: a dependency; imported the first time a SQLite store runs a pattern

    options = re2.Options()
    options.log_errors = False
    options.max_mem = 8 << 20
    return re2.compile(pattern, options)


def sqlite_regexp(pattern: str | None, text: str | None) -> int | None:
    """SQLite's ``tracklet_regexp(pattern, text)``: 1 when the portable ``pattern`` matches the
    first MAX_TEXT_CHARS characters of ``text``, else 0 (NULL for NULL)."""
    if pattern is None or text is None:
        return None
    return 1 if _compiled(pattern).search(text[:MAX_TEXT_CHARS]) is not None else 0


def engine_available() -> str | None:
    """Why SQLite can't run patterns here (google-re2 missing), or None."""
    try:
        import re2  # noqa: F401
    except ImportError:
        return ("regular expressions in filters need the package google-re2 on a SQLite store "
                "(pip install google-re2)")
    return None
