"""The common records' protobuf wire format, written without importing protobuf.

Importing protobuf and the generated ``records_pb2`` costs ~30-40 ms of CPU in a fresh process,
which a short script's ``finish()`` waited for (the worker imported it as ``init()`` returned and
could encode nothing until it had). The records every run writes (``RunStart``, ``ConfigUpdate``,
``HistoryBatch``, ``SummaryUpdate``, ``ConsoleOutput``, ``Environment``, ``SeedsSet``, ``RunExit``, and
``ArtifactLogged``/``ArtifactUsed``: a code snapshot is logged as an artifact by many runs) are built here instead, as
:class:`Message` objects with the part of protobuf's Python API the recording code uses (fields
by attribute, ``extend``/``append``/``add()`` on repeated fields, ``SetInParent``,
``SerializeToString``), and serialized by hand: bytes for bytes what protobuf's
``SerializeToString(deterministic=True)`` writes for the same message, except the order of a
map's entries (the Environment's two maps), which protobuf leaves unspecified: here by key; the
message parses back equal.

``records.proto`` stays the single source of truth: ``SCHEMA`` below restates the fields of the
messages built here, and ``tests/test_wire.py`` checks every entry against the generated
descriptor (numbers, types, labels, oneofs, packing) and compares the bytes with protobuf's over
random messages. Values are checked as protobuf checks them (a ``str`` with a lone surrogate,
an int outside its field's range, a float in an int field raise), and a repeated field's
``extend`` adds all of its values or none.

Columns are packed at C level: doubles by ``struct`` (native mode) into an ``array`` that is itself
a part of the record's bytes; varints (steps, int columns, row indexes) through numpy when the
program has imported it, through slices of byte patterns for consecutive non-negative steps (the
usual history), and value by value only otherwise.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from operator import index
from typing import Any, Iterable, cast
from tracklet.core.modules import loaded

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
_RANGES = {"int32": INT32, "enum": INT32, "uint32": UINT32, "int64": INT64, "sint64": INT64, "uint64": UINT64}
_VARINT_KINDS = frozenset(("int32", "enum", "uint32", "int64", "sint64", "uint64", "bool"))
_LITTLE = sys.byteorder == "little"

# message -> ((field, number, kind, repeated, type of a message field or oneof name), ...).
# kind: a scalar type of records.proto, "message", or "map" (map<string, string>). Restated from
# records.proto; tests/test_wire.py checks each entry against the generated descriptor.
SCHEMA: dict[str, tuple[tuple[str, int, str, bool, str], ...]] = {
    "Record": (
        ("run_start", 1, "message", False, "RunStart"),
        ("config", 2, "message", False, "ConfigUpdate"),
        ("history", 3, "message", False, "HistoryBatch"),
        ("summary", 4, "message", False, "SummaryUpdate"),
        ("console", 6, "message", False, "ConsoleOutput"),
        ("exit", 8, "message", False, "RunExit"),
        ("environment", 10, "message", False, "Environment"),
        ("artifact_logged", 11, "message", False, "ArtifactLogged"),
        ("artifact_used", 12, "message", False, "ArtifactUsed"),
        ("seeds", 24, "message", False, "SeedsSet"),
    ),
    "ArtifactVersionRef": (
        ("project", 1, "string", False, ""),
        ("name", 2, "string", False, ""),
        ("type", 3, "string", False, ""),
        ("version", 4, "int64", False, ""),
        ("digest", 5, "string", False, ""),
    ),
    "ArtifactLogged": (
        ("artifact", 1, "message", False, "ArtifactVersionRef"),
        ("aliases", 2, "string", True, ""),
        ("size_bytes", 3, "uint64", False, ""),
        ("file_count", 4, "uint64", False, ""),
        ("time", 5, "double", False, ""),
        ("reused", 6, "bool", False, ""),
        ("bytes_written", 7, "uint64", False, ""),
    ),
    "ArtifactUsed": (("artifact", 1, "message", False, "ArtifactVersionRef"), ("time", 2, "double", False, "")),
    "Value": (
        ("float_value", 1, "double", False, ""),
        ("int_value", 2, "sint64", False, ""),
        ("bool_value", 3, "bool", False, ""),
        ("string_value", 4, "string", False, ""),
        ("bytes_value", 5, "bytes", False, ""),
        ("list_value", 6, "message", False, "ValueList"),
        ("map_value", 7, "message", False, "ValueMap"),
        ("null_value", 8, "enum", False, ""),
        ("histogram_value", 9, "message", False, "Histogram"),
        ("big_int_value", 10, "string", False, ""),
    ),
    "ValueList": (("items", 1, "message", True, "Value"),),
    "ValueMap": (("entries", 1, "message", True, "MapEntry"),),
    "MapEntry": (("key", 1, "string", False, ""), ("value", 2, "message", False, "Value")),
    "Histogram": (
        ("edges", 1, "double", True, ""),
        ("counts", 2, "uint64", True, ""),
        ("nan_count", 3, "uint64", False, ""),
        ("inf_count", 4, "uint64", False, ""),
    ),
    "RunStart": (
        ("schema_version", 1, "enum", False, ""),
        ("run_id", 2, "string", False, ""),
        ("project", 3, "string", False, ""),
        ("name", 4, "string", False, ""),
        ("tags", 5, "string", True, ""),
        ("group", 6, "string", False, ""),
        ("job_type", 7, "string", False, ""),
        ("notes", 8, "string", False, ""),
        ("start_time", 9, "double", False, ""),
        ("host", 10, "string", False, ""),
        ("pid", 11, "int64", False, ""),
        ("python_version", 12, "string", False, ""),
        ("platform", 13, "string", False, ""),
        ("command", 14, "string", True, ""),
        ("cwd", 15, "string", False, ""),
        ("tracklet_version", 16, "string", False, ""),
        ("resumed", 17, "bool", False, ""),
        ("reproduces", 21, "string", False, ""),
        ("username", 22, "string", False, ""),
    ),
    "RunExit": (
        ("exit_code", 1, "int32", False, ""),
        ("end_time", 2, "double", False, ""),
        ("runtime", 3, "double", False, ""),
        ("error", 4, "string", False, ""),
        ("traceback", 5, "string", False, ""),
        ("seeds", 6, "message", True, "Seed"),
        ("seeds_dropped", 7, "uint32", False, ""),
    ),
    "SeedsSet": (
        ("seeds", 1, "message", True, "Seed"),
        ("dropped", 2, "uint32", False, ""),
        ("unknown_before", 3, "string", True, ""),
    ),
    "Seed": (("api", 1, "string", False, ""), ("value", 2, "string", False, "")),
    "ConfigUpdate": (("items", 1, "message", True, "MapEntry"), ("removed", 2, "string", True, "")),
    "SummaryUpdate": (("items", 1, "message", True, "MapEntry"), ("removed", 2, "string", True, "")),
    "HistoryBatch": (
        ("new_keys", 1, "message", True, "KeyDefinition"),
        ("steps", 2, "sint64", True, ""),
        ("times", 3, "double", True, ""),
        ("columns", 4, "message", True, "Column"),
    ),
    "KeyDefinition": (("id", 1, "uint32", False, ""), ("name", 2, "string", False, "")),
    "Column": (
        ("key", 1, "uint32", False, ""),
        ("rows", 2, "uint32", True, ""),
        ("floats", 3, "double", True, ""),
        ("ints", 4, "sint64", True, ""),
        ("bools", 5, "bool", True, ""),
        ("strings", 6, "string", True, ""),
        ("histograms", 7, "message", True, "Histogram"),
        ("big_ints", 8, "string", True, ""),
        ("values", 9, "message", True, "Value"),
    ),
    "Environment": (
        ("git_commit", 1, "string", False, ""),
        ("git_branch", 2, "string", False, ""),
        ("git_remote", 3, "string", False, ""),
        ("git_root", 4, "string", False, ""),
        ("git_dirty", 5, "bool", False, ""),
        ("git_diff_sha256", 6, "string", False, ""),
        ("hostname", 7, "string", False, ""),
        ("os", 8, "string", False, ""),
        ("cpu_model", 9, "string", False, ""),
        ("cpu_count", 10, "int32", False, ""),
        ("memory_total_bytes", 11, "double", False, ""),
        ("gpus", 12, "string", True, ""),
        ("packages", 13, "message", True, "Package"),
        ("executable", 14, "string", False, ""),
        ("incomplete", 15, "string", True, ""),
        ("python_implementation", 16, "string", False, ""),
        ("variables", 17, "map", False, ""),
        ("cuda_version", 18, "string", False, ""),
        ("cudnn_version", 19, "string", False, ""),
        ("code_files", 20, "message", True, "CodeFile"),
        ("code_skipped", 21, "string", True, ""),
        ("program", 22, "string", False, ""),
        ("incomplete_reasons", 23, "map", False, ""),
    ),
    "Package": (
        ("name", 1, "string", False, ""),
        ("version", 2, "string", False, ""),
        ("url", 3, "string", False, ""),
        ("editable", 4, "bool", False, ""),
        ("vcs", 5, "string", False, ""),
        ("commit", 6, "string", False, ""),
        ("requested_revision", 7, "string", False, ""),
    ),
    "CodeFile": (("path", 1, "string", False, ""), ("size_bytes", 2, "uint64", False, ""), ("sha256", 3, "string", False, "")),
    "ConsoleOutput": (("stream", 1, "enum", False, ""), ("lines", 2, "message", True, "ConsoleLine")),
    "ConsoleLine": (("time", 1, "double", False, ""), ("text", 2, "string", False, ""), ("partial", 3, "bool", False, "")),
}
# Fields of a oneof (explicit presence: written when set, even to their default), by message.
ONEOFS: dict[str, str] = {"Record": "kind", "Value": "kind"}

# Enum values used by the recording code (tests/test_wire.py checks them against records_pb2).
SCHEMA_VERSION_1 = 1
SUMMARY_MODE_LAST, SUMMARY_MODE_MIN, SUMMARY_MODE_MAX = 1, 2, 3
SUMMARY_MODE_MEAN, SUMMARY_MODE_NONE, SUMMARY_MODE_FIRST = 4, 5, 6


# ---------------------------------------------------------------- primitives

_SMALL = [bytes((n,)) for n in range(128)]


def varint(number: int) -> bytes:
    """``number`` (0 <= number < 2**64) as a base-128 varint."""
    if number < 128:
        return _SMALL[number]
    out = bytearray()
    while number >= 128:
        out.append((number & 127) | 128)
        number >>= 7
    out.append(number)
    return bytes(out)


def _varints_each(values: Iterable[int], zigzag: bool) -> bytes:
    out = bytearray()
    append = out.append
    for number in values:
        if zigzag:
            number = (number << 1) ^ (number >> 63)
        elif number < 0:
            number += 1 << 64
        while number >= 128:
            append((number & 127) | 128)
            number >>= 7
        append(number)
    return bytes(out)


def _varints_numpy(np: Any, values: Any, zigzag: bool) -> bytes:
    """Varints at C level: each byte position of every value in one vectorized pass (at most 10)."""
    signed = np.asarray(values, dtype=np.int64) if zigzag or min(values) < 0 else None
    if signed is not None:
        numbers = ((signed << 1) ^ (signed >> 63)).view(np.uint64) if zigzag else signed.view(np.uint64)
    else:
        numbers = np.asarray(values, dtype=np.uint64)
    lengths = np.ones(len(numbers), dtype=np.int64)
    rest = numbers >> np.uint64(7)
    while rest.any():
        lengths += rest != 0
        rest >>= np.uint64(7)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for position in range(int(lengths.max())):
        where = lengths > position
        part = ((numbers[where] >> np.uint64(7 * position)) & np.uint64(127)).astype(np.uint8)
        part |= (lengths[where] > position + 1).astype(np.uint8) << np.uint8(7)
        out[starts[where] + position] = part
    return bytes(out.tobytes())


# Byte 0 of the varint of 2*s (a non-negative sint64's zigzag) for s = 0..63, continued.
_EVEN_LOW = bytes(((2 * s) & 127) | 128 for s in range(64))
# Byte 1 of the varint of 2*s for s = 0..8191, continued or (a 2-byte varint's) last.
_SECOND = b"".join(bytes((value | 128,)) * 64 for value in range(128))
_SECOND_LAST = b"".join(bytes((value,)) * 64 for value in range(128))


def _varint_length(number: int) -> int:
    return max(1, (number.bit_length() + 6) // 7)


def _consecutive_varints(first: int, count: int) -> bytes:
    """The packed zigzag varints of ``first, first + 1, ...`` (``first >= 0``): each byte position
    is a repeating pattern (the low byte cycles every 64 steps, byte i changes every
    64 * 128**(i-1) steps), laid in with slices; Python work per batch, not per value."""
    parts = []
    while count:
        length = _varint_length(2 * first)
        same = min(count, (128**length + 1) // 2 - first)  # the values of this varint length
        out = bytearray(same * length)
        for position in range(length):
            last = position == length - 1
            if position == 0 and not last:
                offset = first % 64
                out[0::length] = (_EVEN_LOW * ((same + offset) // 64 + 1))[offset : offset + same]
                continue
            if position == 1:  # a pattern too: 128 runs of 64 steps (a slice, not ~30 runs a batch)
                pattern = _SECOND_LAST if last else _SECOND
                offset = first % len(pattern)
                out[1::length] = (pattern * ((same + offset) // len(pattern) + 1))[offset : offset + same]
                continue
            shift = 7 * position
            column = bytearray()
            step = first
            end = first + same
            while step < end:  # runs of one byte value
                value = (2 * step) >> shift
                run_end = min(end, ((value + 1) << shift) // 2 + (((value + 1) << shift) & 1))
                column += bytes(((value & 127) | (0 if last else 128),)) * (run_end - step)
                step = run_end
            out[position::length] = column
        parts.append(bytes(out))
        first += same
        count -= same
    return b"".join(parts)


def packed_varints(values: Any, zigzag: bool = False, consecutive: bool = False) -> bytes:
    """The payload of a packed varint field (sint64 with ``zigzag``; int64 negatives as 10 bytes).
    ``consecutive``: the caller knows ``values`` are consecutive ints."""
    count = len(values)
    if not count:
        return b""
    first = values[0]
    if zigzag and type(first) is int and first >= 0 and values[-1] - first == count - 1:
        expected = range(first, first + count)
        if consecutive or (list(expected) if isinstance(values, list) else tuple(expected)) == values:
            return _consecutive_varints(first, count)
    np = loaded("numpy")  # not one the training thread is still importing (core/modules.py)
    if np is not None and count > 16:
        return _varints_numpy(np, values, zigzag)
    if not zigzag and max(values) < 128 and min(values) >= 0:
        return bytes(values)
    return _varints_each(values, zigzag)


def packed_doubles(values: Any) -> bytes:
    packed = values if isinstance(values, array) else array("d", values)
    if not _LITTLE:
        packed = array("d", packed)
        packed.byteswap()
    return packed.tobytes()


def _tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def _delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + varint(len(payload)) + payload


# ---------------------------------------------------------------- values, as protobuf checks them


def _check_int(kind: str, value: Any) -> int:
    if type(value) is not int:
        if isinstance(value, bool):
            raise TypeError(f"Expected an int, got a boolean ({kind} field)")
        if isinstance(value, float):
            raise TypeError(f"{value!r} has type float, but expected one of: int")
        value = index(value)
    low, high = _RANGES[kind]
    if not low <= value <= high:
        raise ValueError(f"Value out of range: {value}")
    return value


def _check_double(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, (str, bytes)) or not hasattr(type(value), "__float__"):
        raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: int, float")
    return float(value)


def _check_string(value: Any) -> str:
    if type(value) is not str:
        if isinstance(value, bytes):  # protobuf takes UTF-8 bytes for a string field
            return value.decode("utf-8")
        if not isinstance(value, str):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: bytes, unicode")
        value = str(value)
    value.encode("utf-8")  # a lone surrogate raises, as protobuf does
    return value


def _check_scalar(kind: str, value: Any) -> Any:
    if kind == "double":
        return _check_double(value)
    if kind == "string":
        return _check_string(value)
    if kind == "bool":
        if type(value) is bool:
            return value
        return bool(index(value))
    if kind == "bytes":
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: bytes")
        return bytes(value)
    return _check_int(kind, value)


def _consecutive(values: list[int]) -> bool:
    """Whether ``values`` (ints) are ``n, n + 1, n + 2, ...``: a batch's steps, usually."""
    first = values[0]
    return values[-1] - first == len(values) - 1 and list(range(first, first + len(values))) == values


def _plain_consecutive(values: list[Any]) -> bool:
    """Whether ``values`` are consecutive ints (a history batch's steps), found without a pass over
    their types: their sum is an int (a float, a str or an array among them makes it something
    else, or raise), they equal consecutive ints from 0 or more, and neither of the two that could
    be a bool (0 and 1 come first) is one. An int subclass other than bool (an ``IntEnum``) past
    the first two passes as the object it is: the bytes written are those of the int it equals, as
    protobuf's (``Run.log`` hands the encoder plain ints anyway: it converts a step by ``__index__``)."""
    if len(values) < 2 or type(values[0]) is not int or type(values[1]) is not int or values[0] < 0:
        return False
    try:
        if type(sum(values)) is not int:
            return False
    except Exception:  # a value that does not add to an int: the checks by type report it
        return False
    return _consecutive(values)


def _check_ints(kind: str, values: Iterable[Any]) -> tuple[list[int], bool]:
    """The values of an int field, checked as protobuf checks them, and whether they are
    consecutive (then they lie between their ends: no pass for the minimum and the maximum, and
    the serializer lays them in without a second look). A list is read, not copied (the field
    copies what it keeps)."""
    checked = values if type(values) is list else list(values)
    consecutive = _plain_consecutive(checked)
    if not consecutive:
        types = set(map(type, checked))
        if types != {int}:
            if bool in types:  # protobuf refuses a bool in an int field
                raise TypeError(f"Expected an int, got a boolean ({kind} field)")
            checked = list(map(index, checked))  # numpy ints; a float or a str raises
        if not checked:
            return checked, False
        consecutive = _consecutive(checked)
    low, high = _RANGES[kind]
    smallest, largest = (checked[0], checked[-1]) if consecutive else (min(checked), max(checked))
    if smallest < low or largest > high:
        raise ValueError(f"Value out of range: {smallest if smallest < low else largest}")
    return checked, consecutive


def _check_many(kind: str, values: Iterable[Any]) -> list[Any]:
    """Every value checked and converted, or an exception with nothing kept (C-level for numbers)."""
    if kind == "double":
        return array("d", values).tolist() if not isinstance(values, array) else values.tolist()
    if kind in _RANGES:
        return _check_ints(kind, values)[0]
    if kind == "bool":
        checked = list(values)
        if set(map(type, checked)) <= {bool}:
            return checked
        return [value if type(value) is bool else bool(index(value)) for value in checked]
    if kind == "string":
        return [_check_string(value) for value in values]
    return [_check_scalar(kind, value) for value in values]


# ---------------------------------------------------------------- messages


class _Scalars(list):
    """A repeated scalar field: ``extend`` and ``append`` check values as protobuf does.

    ``consecutive``: the length the field had when an ``extend`` into the empty field found its
    ints consecutive (a history batch's steps), so serializing needs no second look; any other
    length means not known."""

    __slots__ = ("_owner", "_kind", "consecutive")

    def __init__(self, owner: Message | None, kind: str) -> None:
        super().__init__()
        self._owner = owner
        self._kind = kind
        self.consecutive = -1

    def extend(self, values: Iterable[Any]) -> None:
        if self._kind in _RANGES:
            checked, consecutive = _check_ints(self._kind, values)
            known = consecutive and not self
        else:
            checked, known = _check_many(self._kind, values), False
        list.extend(self, checked)
        self.consecutive = len(self) if known else -1
        _owner_changed(self)

    def append(self, value: Any) -> None:
        list.append(self, _check_scalar(self._kind, value))
        self.consecutive = -1
        _owner_changed(self)


def doubles_or_none(values: Any) -> bytes | None:
    """``values`` as native doubles in one C-level pass, or None if one of them is refused.

    ``struct`` converts as ``array("d", ...)`` does (``PyFloat_AsDouble``: a float, an int, a
    bool, anything with ``__float__``), without its per-item parsing (~3x faster). Native mode
    (no ``=``): a double is copied as it is, not re-encoded byte by byte; the bytes are the same."""
    try:
        return struct.pack(f"{len(values)}d", *values)
    except Exception:  # a value it refuses, or whose __float__ raised
        return None


class _Doubles(array):
    """A repeated double field, kept as the packed array it is written as."""

    __slots__ = ("_owner",)
    _owner: Message | None

    def __new__(cls, owner: Message | None) -> _Doubles:
        self = cast("_Doubles", array.__new__(cls, "d"))
        self._owner = owner
        return self

    def extend(self, values: Iterable[Any]) -> None:
        if type(values) is array and values.typecode == "d":
            array.extend(self, values)
        elif type(values) is memoryview and values.format == "d":  # packed native doubles, copied once
            self.frombytes(values.cast("B"))
        elif type(values) is list or type(values) is tuple:
            packed = doubles_or_none(values)
            if packed is None:
                array.extend(self, array("d", values))  # raises as it always did
            else:
                self.frombytes(packed)
        else:
            array.extend(self, array("d", values))
        _owner_changed(self)

    def append(self, value: Any) -> None:
        array.append(self, _check_double(value))
        _owner_changed(self)


class _Messages(list):
    """A repeated message field: ``add()`` appends a new message and returns it."""

    __slots__ = ("_owner", "_type")

    def __init__(self, owner: Message | None, type_name: str) -> None:
        super().__init__()
        self._owner = owner
        self._type = type_name

    def add(self, **fields: Any) -> Message:
        message = Message(self._type)
        object.__setattr__(message, "_present", True)  # an item of a list: always written
        for name, value in fields.items():
            setattr(message, name, value)
        list.append(self, message)
        _owner_changed(self)
        return message

    def extend(self, messages: Iterable[Any]) -> None:
        for message in messages:
            if type(message) is Encoded:
                self.append_encoded(message)
                continue
            copy = self.add()
            copy.MergeFrom(message)

    def append_encoded(self, data: bytes) -> None:
        """Append a message of this field's type given as its bytes, encoded apart (a structured
        value or a summary entry: ``core/valuewire.py``); it is written as it is."""
        list.append(self, data if type(data) is Encoded else Encoded(data))
        _owner_changed(self)

    def append_built(self, message: Message) -> None:
        """Append a ``Message`` of this field's type as it is (not copied): one built apart, e.g.
        to check its size before it joins the record. It must not be changed afterwards."""
        if message._type != self._type:
            raise TypeError(f"a {message._type} is not a {self._type}")
        object.__setattr__(message, "_present", True)
        list.append(self, message)
        _owner_changed(self)


class Encoded(bytes):
    """A message's bytes, as an element of a repeated message field (``_Messages.append_encoded``)."""

    __slots__ = ()

    def _delimited_into(self, number: int, parts: list[bytes]) -> int:
        prefix = _tag(number, 2) + varint(len(self))
        parts += (prefix, self)
        return len(prefix) + len(self)


class _StringMap(dict):
    """A ``map<string, string>`` field."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Message | None) -> None:
        super().__init__()
        self._owner = owner

    def __setitem__(self, key: str, value: str) -> None:
        dict.__setitem__(self, _check_string(key), _check_string(value))
        _owner_changed(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def _owner_changed(field: _Scalars | _Doubles | _Messages | _StringMap) -> None:
    """A repeated or map field was changed: mark the message holding it changed, once. A present
    message needs no further word of a change, so the back-reference is dropped (see ``_mark``)."""
    owner = field._owner
    if owner is not None:
        owner._mark()
        field._owner = None


class Message:
    """One message of ``SCHEMA``, built like a protobuf message and serialized by hand."""

    __slots__ = ("_type", "_fields", "_values", "_parent", "_name", "_present")

    def __init__(self, type_name: str, _parent: Message | None = None, _name: str = "") -> None:
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_fields", _FIELDS[type_name])
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_parent", _parent)
        object.__setattr__(self, "_name", _name)
        object.__setattr__(self, "_present", _parent is None)

    def __getattr__(self, name: str) -> Any:
        field = self._fields.get(name)
        if field is None:
            raise AttributeError(f"{self._type} has no field {name!r}")
        values = self._values
        value = values.get(name)
        if value is not None:
            return value
        _, kind, repeated, type_name = field
        owner = None if self._present else self  # a present message needs no word of a change
        if kind == "map":
            value = values[name] = _StringMap(owner)
        elif repeated:
            if kind == "message":
                value = values[name] = _Messages(owner, type_name)
            else:
                value = values[name] = _Doubles(owner) if kind == "double" else _Scalars(owner, kind)
        elif kind == "message":
            value = values[name] = Message(type_name, self, name)
        else:
            return _DEFAULTS[kind]
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        field = self._fields.get(name)
        if field is None:
            raise AttributeError(f"{self._type} has no field {name!r}")
        if field[1] in ("message", "map") or field[2]:
            raise AttributeError(f"assignment to the {field[1]} field {name!r} is not allowed")
        checked = _check_scalar(field[1], value)
        self._clear_oneof(name)
        self._values[name] = checked
        self._mark()

    def _clear_oneof(self, name: str) -> None:
        if self._type in ONEOFS:
            for other in [key for key in self._values if key != name]:
                del self._values[other]

    def _mark(self) -> None:
        """This message was changed: it and its parents are present (serialized).

        A present message never looks at its parent again, so the back-reference is dropped here:
        kept, each nested message would be a reference cycle, freed only by the cyclic collector
        (whose full collections a large heap defers) rather than as the record is dropped."""
        message: Message | None = self
        while message is not None and not message._present:
            object.__setattr__(message, "_present", True)
            parent = message._parent
            object.__setattr__(message, "_parent", None)
            if parent is not None:
                parent._clear_oneof(message._name)
                # Obtained before a oneof sibling was set (which dropped it from the parent), it is
                # set again, as protobuf sets a changed field in its parent.
                parent._values[message._name] = message
            message = parent

    def SetInParent(self) -> None:  # noqa: N802  (protobuf's name)
        self._mark()

    def HasField(self, name: str) -> bool:  # noqa: N802
        value = self._values.get(name)
        return value is not None and (not isinstance(value, Message) or value._present)

    def WhichOneof(self, oneof: str) -> str | None:  # noqa: N802
        for name in self._values:
            if self.HasField(name):
                return name
        return None

    def MergeFrom(self, other: Any) -> None:  # noqa: N802
        """Merge another message of this type (a ``Message`` or a protobuf message) as protobuf does."""
        self._mark()  # present even where ``other`` is empty, as protobuf sets a message merged into
        set_in_other = other._values if type(other) is Message else None
        for name, (_, kind, repeated, _type) in self._fields.items():
            if set_in_other is not None and name not in set_in_other:
                continue  # reading it would add an empty field to ``other``
            value = getattr(other, name)
            if kind == "map":
                if len(value):
                    getattr(self, name).update(value)
            elif repeated:
                if len(value):
                    getattr(self, name).extend(value)
            elif kind == "message":
                if other.HasField(name):
                    child = getattr(self, name)
                    child.MergeFrom(value)
                    child._mark()
            elif name in ONEOF_MEMBERS.get(self._type, ()):
                if other.HasField(name):
                    setattr(self, name, value)
            elif value != _DEFAULTS[kind] or (kind == "double" and math.copysign(1.0, value) < 0):
                setattr(self, name, value)

    def TakeFrom(self, other: Message) -> None:  # noqa: N802  (after protobuf's MergeFrom)
        """``MergeFrom`` for a ``Message`` of this type that is not used afterwards: its repeated
        message fields are moved into this one, not copied message by message (an environment's
        package list: copying it was ~40 % of a capture's CPU). ``other`` is left without them."""
        moved = [name for name, value in other._values.items()
                 if self._fields[name][1] == "message" and self._fields[name][2] and len(value)]
        for name in moved:
            field = getattr(self, name)
            list.extend(field, other._values.pop(name))
            _owner_changed(field)  # marks this message, and drops the field's owner (no cycle)
        self.MergeFrom(other)

    def ByteSize(self) -> int:  # noqa: N802  (protobuf's name)
        """The size of the message's bytes (they are laid out to count them)."""
        return self._serialize_into([])

    def SerializeToString(self) -> bytes:  # noqa: N802
        """The message's bytes, joined once: nested messages and packed fields are laid out as
        a list of parts (each message's length prefix computed from its parts), so a history
        batch's packed columns are copied once here, not once per level of nesting."""
        parts: list[bytes] = []
        self._serialize_into(parts)
        return b"".join(parts)

    def _serialize_into(self, parts: list[bytes]) -> int:
        """Append the message's bytes to ``parts``; returns how many bytes that is."""
        values = self._values
        if not values:
            return 0
        oneof = self._type in ONEOFS
        size = 0
        for name, (number, kind, repeated, _type) in self._order:
            value = values.get(name)
            if value is None:
                continue
            if kind == "message":
                if repeated:
                    for item in value:
                        size += item._delimited_into(number, parts)
                elif value._present:
                    size += value._delimited_into(number, parts)
            elif kind == "map":
                for key in sorted(value):
                    entry = _delimited(1, key.encode("utf-8")) + _delimited(2, value[key].encode("utf-8"))
                    part = _delimited(number, entry)
                    parts.append(part)
                    size += len(part)
            elif repeated:
                if value:
                    size += _repeated_into(parts, number, kind, value)
            elif oneof or not _is_default(kind, value):
                part = _scalar(number, kind, value)
                parts.append(part)
                size += len(part)
        return size

    def _delimited_into(self, number: int, parts: list[bytes]) -> int:
        """Append the message as field ``number`` of its parent (tag, length, bytes) to ``parts``."""
        at = len(parts)
        parts.append(b"")  # the tag and length, once the length is known
        size = self._serialize_into(parts)
        prefix = _tag(number, 2) + varint(size)
        parts[at] = prefix
        return len(prefix) + size

    @property
    def _order(self) -> Any:
        return _ORDER[self._type]

    def __repr__(self) -> str:
        return f"wire.{self._type}({ {k: v for k, v in self._values.items()} })"


_DEFAULTS: dict[str, Any] = {"double": 0.0, "string": "", "bytes": b"", "bool": False, "int32": 0, "int64": 0,
                             "sint64": 0, "uint32": 0, "uint64": 0, "enum": 0}
_FIELDS: dict[str, dict[str, tuple[int, str, bool, str]]] = {
    message: {name: (number, kind, repeated, type_name) for name, number, kind, repeated, type_name in fields}
    for message, fields in SCHEMA.items()
}
_ORDER: dict[str, list[tuple[str, tuple[int, str, bool, str]]]] = {
    message: sorted(fields.items(), key=lambda item: item[1][0]) for message, fields in _FIELDS.items()
}
ONEOF_MEMBERS: dict[str, frozenset[str]] = {message: frozenset(_FIELDS[message]) for message in ONEOFS}


def _is_default(kind: str, value: Any) -> bool:
    if kind == "double":
        return value == 0.0 and math.copysign(1.0, value) > 0
    return not value


def _scalar(number: int, kind: str, value: Any) -> bytes:
    if kind == "double":
        return _tag(number, 1) + packed_doubles((value,))
    if kind == "string":
        return _delimited(number, value.encode("utf-8"))
    if kind == "bytes":
        return _delimited(number, value)
    if kind == "sint64":
        return _tag(number, 0) + varint((value << 1) ^ (value >> 63))
    return _tag(number, 0) + varint(value + (1 << 64) if value < 0 else int(value))


def _repeated_into(parts: list[bytes], number: int, kind: str, values: list[Any]) -> int:
    """Append a repeated scalar field to ``parts`` (packed where protobuf packs it); returns its size."""
    if kind == "double" or kind == "bool" or kind in _VARINT_KINDS:
        payload: Any
        if kind == "double":
            # The array itself where it is the bytes to write (b"".join takes any buffer): no copy.
            payload = values if _LITTLE and type(values) is _Doubles else packed_doubles(values)
            size = 8 * len(values)
        else:
            if kind == "bool":
                payload = bytes(values)
            else:
                consecutive = getattr(values, "consecutive", -1) == len(values)
                payload = packed_varints(values, zigzag=kind == "sint64", consecutive=consecutive)
            size = len(payload)
        prefix = _tag(number, 2) + varint(size)
        parts += (prefix, payload)
        return len(prefix) + size
    if kind == "string":
        items = [_delimited(number, value.encode("utf-8")) for value in values]
    else:
        items = [_delimited(number, value) for value in values]
    parts += items
    return sum(map(len, items))


def Record() -> Message:  # noqa: N802  (named as protobuf's class is)
    return Message("Record")


def HistoryBatch() -> Message:  # noqa: N802
    return Message("HistoryBatch")
