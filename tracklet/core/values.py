"""What a logged value may be, and how it becomes something the wire format can hold.

Scalars are ``bool``, ``int`` (any size: ints outside int64 are kept exact, as decimal text on
the wire), ``float`` (NaN and +-inf kept) and ``str``. What W&B records as text or a number is
recorded the same way: an enum member as its value, a ``datetime``/``date``/``time`` as its ISO
8601 text, a path as its string; a logged ``Decimal`` or ``Fraction`` as a float (config and
summary keep its exact text). numpy scalars,
0-d or one-element numpy arrays and torch/jax tensors are scalars too; larger arrays and tensors,
lists and tuples of numbers, and :class:`Histogram` become histograms. Other lists, tuples and sets
(strings, nested lists, dicts inside, ``None`` inside, an empty list) and numpy arrays of strings
are *structured values*, recorded as the list W&B keeps as JSON (:func:`structured`); ``bytes``,
a ``timedelta``, a complex number and a ``numpy.datetime64`` as the text W&B records. ``None``
means "no value for this key in this row" and is skipped.

Tensors are converted here, on the sender's worker thread, never on the caller's: ``log()`` keeps
a reference and this module reads it later. That is what keeps ``log()`` from forcing a device
sync, and it implies the lifetime rule: do not modify a tensor or array in place after logging
it until the run has been flushed (log ``t.detach().clone()`` or ``t.item()`` if you must).

Nested values are cut where they contain themselves or nest deeper than :data:`MAX_NESTING`
levels (a record parser refuses deeper messages); the cut part is reported, never raised.

Nothing here imports numpy, torch or jax: a value of those types means the user already did.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import PurePath
from typing import Any, Callable, Iterable, Mapping

from tracklet.core import valueread
from tracklet.core.logged import logged_items
from tracklet.errors import Unrecordable, Unsupported  # noqa: F401  (defined there; imported from here too)
from tracklet.core.modules import loaded

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
DEFAULT_BINS = 64
# The deepest nesting a logged dict or a config/summary value keeps. Protobuf parsers refuse
# messages nested more than 100 deep, and each level of a ``Value`` tree takes three (Value,
# ValueMap, MapEntry) under the four of Record > ConfigUpdate > MapEntry > Value.
MAX_NESTING = 30

# The most one structured history value (a logged list that is not all numbers) takes as a
# serialized ``Value``; a larger one is dropped with a warning naming its key (W&B warns past
# 100,000 bytes and keeps it). Readers drop larger ones from a record log too (core/decode.py).
MAX_STRUCTURED_BYTES = 256 << 10
# The most items a walk of one structured value visits (a sub-list shared by several parents once
# per visit, as its encoding repeats it): every item takes four bytes or more encoded (its tag and
# length in the list, and a field of its own), so a value with more can't fit in MAX_STRUCTURED_BYTES. Both the caller's copy (``snapshot_containers``)
# and the worker's conversion (``structured``) stop there, so a huge nested list (an embedding
# matrix's ``tolist()``) or a DAG of shared lists costs a bounded walk before it is dropped.
MAX_STRUCTURED_ITEMS = MAX_STRUCTURED_BYTES // 4
# The fewest bytes an item of a structured value takes encoded, by its type (default 4): a float
# is a fixed 64-bit field; a string's length is added.
_MIN_ITEM_BYTES = {float: 11}
_SEQUENCE_TYPES = (list, tuple, set, frozenset)

# ``report(where, why)``: where a nested value was cut (``a/b/c``) and why.
CutReport = Callable[[str, str], None]


class Oversized:
    """What ``log()`` queues in place of a list, tuple or set found, while copying it on the
    caller, to hold more than :data:`MAX_STRUCTURED_ITEMS` items: the worker drops it at once
    (:func:`to_scalar` raises :class:`Unrecordable` with ``why``) with the warning naming its
    key. It keeps no reference to the value, so the value's memory is not held for the worker."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"Oversized({self.why!r})"


class _Budget:
    """The encoded bytes a structured value may still take, as the worker's conversion
    (:func:`structured`) counts them: a lower bound per item (``_MIN_ITEM_BYTES``, a string's
    length, two more per dict entry), so it never drops a value that would fit, and stops the walk
    as soon as one can't. The top-level value is charged as an item, though it has no tag and
    length in a list: the budget starts two bytes over the limit."""

    __slots__ = ("left",)

    def __init__(self, limit: int) -> None:
        self.left = limit + 2

    def spend(self, size: int, where: str) -> None:
        self.left -= size
        if self.left < 0:
            self.over(where)

    def need(self, items: int, where: str) -> None:
        """Check (without spending) that ``items`` more items could still fit."""
        if 4 * items > self.left:
            self.over(where)

    @staticmethod
    def over(where: str) -> None:
        raise Unrecordable(f"a value larger than the {MAX_STRUCTURED_BYTES // 1024} KiB a history value may take "
                           f"(passed at {where or 'its top level'!r})")


class Histogram:
    """A histogram to log: from raw values (binned here) or from precomputed counts and edges.

    ``Histogram(values, bins=64)`` or ``Histogram(np_histogram=(counts, edges))``.
    """

    __slots__ = ("edges", "counts", "nan_count", "inf_count")

    def __init__(
        self,
        values: Any = None,
        *,
        bins: int = DEFAULT_BINS,
        np_histogram: tuple[Iterable[float], Iterable[float]] | None = None,
    ) -> None:
        if np_histogram is not None:
            counts, edges = np_histogram
            self.counts = [int(c) for c in counts]
            self.edges = [float(e) for e in edges]
            if len(self.edges) != len(self.counts) + 1:
                raise ValueError(
                    f"a histogram needs one more edge than counts; got {len(self.edges)} edges "
                    f"and {len(self.counts)} counts"
                )
            self.nan_count = 0
            self.inf_count = 0
        elif values is not None:
            built = histogram_of(values, bins)
            self.edges, self.counts = built.edges, built.counts
            self.nan_count, self.inf_count = built.nan_count, built.inf_count
        else:
            raise ValueError("Histogram needs values or np_histogram=(counts, edges)")

    @classmethod
    def _raw(cls, edges: list[float], counts: list[int], nan_count: int = 0, inf_count: int = 0) -> "Histogram":
        self = cls.__new__(cls)
        self.edges, self.counts, self.nan_count, self.inf_count = edges, counts, nan_count, inf_count
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self.edges == other.edges
            and self.counts == other.counts
            and self.nan_count == other.nan_count
            and self.inf_count == other.inf_count
        )

    def __repr__(self) -> str:
        total = sum(self.counts)
        span = f"[{self.edges[0]:g}, {self.edges[-1]:g}]" if self.edges else "[]"
        return f"Histogram({len(self.counts)} bins over {span}, {total} values)"

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges, "counts": self.counts, "nan_count": self.nan_count, "inf_count": self.inf_count}


def histogram_of(values: Any, bins: int = DEFAULT_BINS) -> Histogram:
    """Bin an array-like of numbers; NaN and +-inf are counted apart from the bins."""
    import numpy as np

    array = np.asarray(values, dtype=np.float64).ravel()
    finite_mask = np.isfinite(array)
    finite = array[finite_mask]
    nan_count = int(np.isnan(array).sum())
    inf_count = int(array.size - finite.size - nan_count)
    if finite.size == 0:
        return Histogram._raw([], [], nan_count, inf_count)
    counts, edges = np.histogram(finite, bins=bins)
    return Histogram._raw(edges.tolist(), counts.tolist(), nan_count, inf_count)


_FRAMEWORKS = ("numpy", "torch", "jax", "jaxlib")
_framework_of_type: dict[type, str] = {}


def _module_root(value: Any) -> str:
    """``numpy``, ``torch``, ``jax`` or ``jaxlib`` when the value's class or a base class comes from
    there (so tensor subclasses count), else the top-level module of its class."""
    kind = type(value)
    root = _framework_of_type.get(kind)
    if root is None:
        roots = [c.__module__.partition(".")[0] for c in kind.__mro__]
        root = next((r for r in roots if r in _FRAMEWORKS), roots[0])
        _framework_of_type[kind] = root
    return root


def _numpy_scalar(value: Any) -> Any:
    """A numpy scalar or one-element array as a builtin (``item()`` is exact for every real dtype:
    float16/32 widen to float64 exactly)."""
    kind = value.dtype.kind
    if kind not in "biufUSMc":
        raise Unsupported(f"numpy dtype {value.dtype}")
    item = value.item()
    if type(item) is bytes:
        item = item.decode("utf-8", errors="replace")
    elif kind == "M":  # as W&B: a datetime or date as its ISO text; an int (ns, ps...); None for NaT
        item = item.isoformat() if _is_timestamp(item) else item
    elif kind == "c":
        item = _complex_text(item)
    return item


def _from_array(array: Any) -> Any:
    if array.size == 1:
        return _numpy_scalar(array)
    if array.dtype.kind in "US":  # strings: the list W&B records (numbers: a histogram)
        if array.size > MAX_STRUCTURED_ITEMS:  # dropped before ``tolist()`` builds it
            raise Unrecordable(f"an array of {array.size} strings is larger than the "
                               f"{MAX_STRUCTURED_BYTES // 1024} KiB a history value may take")
        return structured(array.tolist())
    if array.dtype.kind not in "biuf":
        raise Unsupported(f"array of dtype {array.dtype}")
    return histogram_of(array)


def _from_torch(tensor: Any) -> Any:
    tensor = tensor.detach()
    if tensor.numel() == 1:
        return to_scalar(tensor.item())
    if tensor.is_complex():
        raise Unsupported(f"complex tensor of dtype {tensor.dtype}")
    return histogram_of(tensor.to("cpu", copy=False).float().numpy())


def to_scalar(value: Any) -> Any:
    """Convert one logged value to bool/int/float/str/Histogram, or raise :class:`Unsupported`."""
    kind = type(value)
    if kind is float or kind is bool or kind is str:
        return value
    if kind is int:
        return value
    if isinstance(value, Histogram):
        return value
    if kind is Oversized:
        raise Unrecordable(value.why)
    root = _module_root(value)
    if root == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            return _from_array(value)
        if isinstance(value, np.generic):
            return _numpy_scalar(value)
    elif root == "torch" and hasattr(value, "detach"):
        return _from_torch(value)
    elif root in ("jax", "jaxlib") and hasattr(value, "shape"):
        import numpy as np

        return _from_array(np.asarray(value))
    if isinstance(value, enum.Enum):
        return _enum_value(value)
    if isinstance(value, (bool, int, float, str)):
        return _builtin(value)
    if isinstance(value, (list, tuple)) and value and all(type(v) in (int, float) for v in value):
        return histogram_of(value)
    if isinstance(value, _SEQUENCE_TYPES):
        return structured(value)
    as_text = _text_or_number(value)
    if as_text is not None:
        return as_text
    raise Unsupported(type_name(value))


def structured(value: Any) -> list[Any]:
    """A logged list, tuple or set that is not all numbers, as the list W&B records for it (its
    JSON): items converted as :func:`to_plain` converts config values (dicts stay dicts, tuples
    and sets become lists, sets sorted by ``repr``, ``None`` and NaN kept, numpy and tensors their
    values), and as W&B's JSON encoder does for ``bytes`` (their UTF-8 text), a ``timedelta`` (its
    ISO 8601 duration) and a complex number. Raises :class:`Unrecordable` for one that contains
    itself or nests deeper than :data:`MAX_NESTING` levels, and as soon as the walk finds it would
    take more than :data:`MAX_STRUCTURED_BYTES` (a lower bound counted per item visited, a shared
    sub-list per visit: the value is never built whole only to be dropped; its exact encoded size
    is checked where it is encoded)."""
    if len(value) > MAX_STRUCTURED_ITEMS:  # every item takes two bytes or more
        raise Unrecordable(f"a {type_name(value)} of {len(value)} items is larger than the "
                           f"{MAX_STRUCTURED_BYTES // 1024} KiB a history value may take")
    cuts: list[tuple[str, str]] = []
    plain = _plain(value, lambda where, why: cuts.append((where, why)), "", set(), 0, _Budget(MAX_STRUCTURED_BYTES))
    if cuts:
        where, why = cuts[0]
        raise Unrecordable(f"{why.partition(';')[0]} (at {where!r})")
    return list(plain)


def structured_message(plain: list[Any], message: Any) -> int:
    """Fill ``message`` (a ``Value``) with a :func:`structured` list and return its size in bytes;
    raises :class:`Unrecordable` when it takes more than :data:`MAX_STRUCTURED_BYTES`."""
    to_value_message(plain, message)
    size: int = message.ByteSize()
    if size > MAX_STRUCTURED_BYTES:
        raise _too_large(size)
    return size


def structured_bytes(plain: list[Any]) -> tuple[bytes, int]:
    """A :func:`structured` list as the bytes of a ``Value`` and what parsing them costs a reader
    (``core/valuewire.py``: parsecost's estimate); :class:`Unrecordable` when it takes more than
    :data:`MAX_STRUCTURED_BYTES`. What the worker records: no message object per item."""
    from tracklet.core import valuewire

    data, cost = valuewire.encode(plain)
    if len(data) > MAX_STRUCTURED_BYTES:
        raise _too_large(len(data))
    return data, cost


def _too_large(size: int) -> Unrecordable:
    return Unrecordable(f"a list of {size} bytes is larger than the {MAX_STRUCTURED_BYTES // 1024} KiB "
                        "a history value may take")


def structured_problem(value: Any) -> str | None:
    """Why a list, tuple or set would not be recorded (strict mode asks on the caller), or None."""
    if type(value) is Oversized:
        return value.why
    if isinstance(value, (list, tuple)) and value and all(type(v) in (int, float) for v in value):
        return None  # a histogram
    try:
        structured_bytes(structured(value))
    except Exception as error:  # Unrecordable, or a string protobuf refuses (a lone surrogate)
        return str(error)
    return None


def _bytes_text(value: bytes) -> str:
    """Bytes as W&B records them, their UTF-8 text; bytes that are not UTF-8 (which W&B refuses)
    with each undecodable byte as ``\\xNN``."""
    return value.decode("utf-8", errors="backslashreplace")


def iso_duration(value: Any) -> str:
    """A ``timedelta`` as the ISO 8601 duration W&B records for it (pydantic-core's text:
    ``PT1M30S``, ``P1DT5S``, ``-PT1.5S``, ``P1Y36DT1H0.000001S``: a year is 365 days)."""
    sign = "-" if value.days < 0 else ""
    value = abs(value)
    years, days = divmod(value.days, 365)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    micros = value.microseconds
    second_text = f"{seconds}.{micros:06d}".rstrip("0") if micros else str(seconds)
    date = (f"{years}Y" if years else "") + (f"{days}D" if days else "")
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (
        f"{second_text}S" if seconds or micros else "")
    if not date and not time:
        return "PT0S"
    return f"{sign}P{date}" + (f"T{time}" if time else "")


def _complex_text(value: complex) -> str:
    """``1+2j``, ``2j``: Python's text without its parentheses (W&B's is the same but for exponents
    and NaN, which it writes as ``100000000000000000000`` and ``NaN``)."""
    return str(value).removeprefix("(").removesuffix(")")


def _is_timedelta(value: Any) -> bool:
    module = loaded("datetime")
    return module is not None and isinstance(value, module.timedelta)


def _text_or_number(value: Any) -> str | float | None:
    """Values W&B records as text: a timestamp as its ISO 8601 text, a path as its string, bytes as
    their UTF-8 text; plain numbers of another class (``Decimal``, ``Fraction``) as floats, so they
    chart (as exact text where no float holds them: a signaling NaN, a fraction past a float's
    range); a ``timedelta`` as its ISO 8601 duration and a complex number as ``"1+2j"``, the texts
    W&B's JSON encoder (pydantic-core) writes. None for other values."""
    if _is_timestamp(value):
        return str(value.isoformat())
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return _bytes_text(value)
    if _is_timedelta(value):
        return iso_duration(value)
    if isinstance(value, complex):
        return _complex_text(value)
    if _is_exact_number(value):
        try:
            return float(value)
        except (ValueError, OverflowError):
            return str(value)
    return None


def _is_timestamp(value: Any) -> bool:
    """A ``datetime``, ``date`` or ``time``, subclasses included (pandas' ``Timestamp``). Looked up
    where loaded: a value of those classes means their module is."""
    module = loaded("datetime")
    return module is not None and isinstance(value, (module.date, module.time))


def _is_exact_number(value: Any) -> bool:
    """A ``decimal.Decimal`` or ``fractions.Fraction`` (subclasses included)."""
    decimal, fractions = loaded("decimal"), loaded("fractions")
    return ((decimal is not None and isinstance(value, decimal.Decimal))
            or (fractions is not None and isinstance(value, fractions.Fraction)))


def _enum_value(member: enum.Enum) -> Any:
    """An enum member is recorded as its value when that is a scalar (``IntEnum.TRAIN`` as 1, a
    ``(str, Enum)`` member as its string: what W&B records, and what config keeps), never as
    ``str(member)`` (``"Phase.TRAIN"`` for a str-mixin member on Python 3.11)."""
    inner = member.value
    if isinstance(inner, (bool, int, float, str)) and not isinstance(inner, enum.Enum):
        return _builtin(inner)
    raise Unsupported(f"{type_name(member)} (an enum whose value is a {type_name(inner)})")


def _builtin(value: Any) -> Any:
    """Subclasses of builtins are stored as the builtin they extend (enums: ``_enum_value``)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return to_scalar(int(value))
    if isinstance(value, float):
        return float(value)
    return str(value)


def type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def is_supported_type(value: Any) -> bool:
    """A check that never converts (so never syncs a device): used by strict mode on the caller."""
    kind = type(value)
    if kind in (float, int, bool, str) or value is None or isinstance(value, Histogram):
        return True
    if logged_items(value) is not None:  # media, tables: recorded by the logged-object worker
        return True
    if isinstance(value, Mapping):
        return all(is_supported_type(v) for v in value.values())
    root = _module_root(value)
    if root == "numpy" or (root in ("jax", "jaxlib") and hasattr(value, "shape")):
        return _array_recorded(value)
    if root == "torch":
        return hasattr(value, "detach") and (value.numel() == 1 or not value.is_complex())
    if isinstance(value, enum.Enum):
        return isinstance(value.value, (int, float, str)) and not isinstance(value.value, enum.Enum)
    if isinstance(value, (int, float, str)):
        return True
    if _is_timestamp(value) or isinstance(value, PurePath) or _is_exact_number(value):
        return True
    if isinstance(value, (bytes, complex)) or _is_timedelta(value):
        return True
    if isinstance(value, _SEQUENCE_TYPES):
        return structured_problem(value) is None
    return False


def _array_recorded(value: Any) -> bool:
    """Whether a numpy or jax value is one :func:`to_scalar` records: a scalar or one-element array
    of a real, bool, string, datetime64 or complex dtype; a larger array of numbers (a histogram)
    or of strings (a structured value, within its limits). Complex and datetime64 arrays of more
    than one element are not recorded, so strict mode refuses them too."""
    kind = getattr(getattr(value, "dtype", None), "kind", "O")
    if getattr(value, "size", 1) == 1:
        return kind in "biufUSMc"
    if kind in "US":
        if value.size > MAX_STRUCTURED_ITEMS:
            return False
        import numpy as np

        return structured_problem(np.asarray(value).tolist()) is None
    return kind in "biuf"


_CONTAINER_TYPES = frozenset((list, tuple, set, frozenset, dict))


def holds_container(values: Iterable[Any]) -> bool:
    """Whether any of ``values`` is a list, tuple, set or dict (one C-level pass over their types)."""
    return not _CONTAINER_TYPES.isdisjoint(map(type, values))


def snapshot_containers(row: dict[str, Any]) -> None:
    """Replace each list, tuple, set or dict among ``row``'s values (a dict ``log()`` built) by a
    copy taken now, on the caller, so that changing it after ``log()`` (``generated.append(...)``)
    doesn't change what the worker records later. Containers are copied at C level
    (``list.copy()``), and only those holding containers are walked (one C-level pass over their
    items' types): a list of numbers or strings costs one copy and one pass. Past
    :data:`MAX_NESTING` levels, and where a value contains itself, the rest is kept by reference,
    for the worker to cut and report. A walk that passes :data:`MAX_STRUCTURED_ITEMS` items (a
    shared sub-list counted per visit) stops there: the value could never be recorded, and is
    replaced by an :class:`Oversized` marker the worker drops with a warning naming its key."""
    for key, value in row.items():
        kind = type(value)
        if (kind is set or kind is frozenset) and len(value) > MAX_STRUCTURED_ITEMS:
            # never a histogram (a list or tuple of numbers may be): not copied item by item
            row[key] = Oversized(f"a {type_name(value)} of {len(value)} items is larger than the "
                                 f"{MAX_STRUCTURED_BYTES // 1024} KiB a history value may take")
        elif kind in _CONTAINER_TYPES:
            try:
                row[key] = _snapshot(value, 0, None, [MAX_STRUCTURED_ITEMS])
            except Unrecordable:  # the item budget is spent
                row[key] = Oversized(f"a {type_name(value)} holding more than {MAX_STRUCTURED_ITEMS} items "
                                     f"(nested ones included) is larger than the {MAX_STRUCTURED_BYTES // 1024} KiB "
                                     "a history value may take")


def _snapshot(value: Any, depth: int, active: set[int] | None, budget: list[int]) -> Any:
    """A copy of ``value`` (list, tuple, set or dict) and of the containers inside it. ``budget``:
    the items the walk may still visit; raises :class:`Unrecordable` past them. A top-level
    container holding no containers is copied without counting (a list of numbers is a histogram,
    of any length)."""
    kind = type(value)
    if depth:
        budget[0] -= len(value)
        if budget[0] < 0:
            raise Unrecordable("over the item budget")
    items: Any = value.copy() if kind is list or kind is dict else list(value)
    if depth >= MAX_NESTING or _CONTAINER_TYPES.isdisjoint(map(type, items.values() if kind is dict else items)):
        return items if kind is list or kind is dict else kind(items)
    if not depth:
        budget[0] -= len(items)
        if budget[0] < 0:
            raise Unrecordable("over the item budget")
    active = active or set()
    if id(value) in active:
        return value
    active.add(id(value))
    if kind is dict:
        for key, item in items.items():
            if type(item) in _CONTAINER_TYPES:
                items[key] = _snapshot(item, depth + 1, active, budget)
    elif set(map(type, items)) == {list} and not any(items):  # W&B's [[], [], ...]: no call per item
        items = [()] * len(items)  # recorded as empty lists; no object (nor garbage collection) per item
    else:
        items = [_snapshot(item, depth + 1, active, budget) if type(item) in _CONTAINER_TYPES else item
                 for item in items]
    active.discard(id(value))
    return items if kind is list or kind is dict else kind(items)


_mapping_types: dict[type, bool] = {}


def is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, cached per type: the ABC check costs far more than a dict
    lookup, and ``log()`` asks it for every tensor and array it is given."""
    kind = type(value)
    known = _mapping_types.get(kind)
    if known is None:
        known = _mapping_types[kind] = isinstance(value, Mapping)
    return known


def flatten(
    data: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None, report: CutReport | None = None
) -> dict[str, Any]:
    """Nested mappings become ``a/b`` keys; the result is a new dict (a copy at every level).

    A mapping that contains itself, one nested deeper than :data:`MAX_NESTING` levels, or one that
    fails to be read (a key whose ``str()`` raises, a broken ``items()``) is cut there: nothing
    under it is kept and ``report(where, why)`` is called. Never raises for its input's content.
    """
    if out is None:
        out = {}
    _flatten(data, prefix, out, report, {id(data)}, 1)
    return out


def _flatten(
    data: Mapping[str, Any], prefix: str, out: dict[str, Any], report: CutReport | None, active: set[int], depth: int
) -> None:
    try:
        items = list(data.items())
    except Exception as error:
        _cut(report, prefix.rstrip("/") or "?", f"reading it failed ({error!r})")
        return
    for key, value in items:
        try:
            name = f"{prefix}{key}" if isinstance(key, str) else f"{prefix}{key!s}"
        except Exception as error:
            _cut(report, prefix + "?", f"a key of type {type_name(key)} has no str() ({error!r})")
            continue
        if not isinstance(value, Mapping):
            out[name] = value
        elif id(value) in active:
            _cut(report, name, "the value contains itself")
        elif depth >= MAX_NESTING:
            _cut(report, name, f"nested deeper than {MAX_NESTING} levels")
        else:
            active.add(id(value))
            _flatten(value, name + "/", out, report, active, depth + 1)
            active.discard(id(value))


def _cut(report: CutReport | None, where: str, why: str) -> None:
    if report is not None:
        report(where, why)


# ---------------------------------------------------------------- structured values (config, summary)


def to_plain(value: Any, report: CutReport | None = None) -> Any:
    """Turn a config value into plain data: dicts, lists, scalars, None, Histogram.

    Mappings, dataclasses and argparse Namespaces become dicts; sequences and sets become lists;
    enums become their value; paths become strings; numpy/torch/jax values become scalars or
    lists; ints keep their exact value whatever their size. Anything else is stored as
    ``str(value)``, which keeps a config readable.

    Never raises for a value's content: a part that contains itself, nests deeper than
    :data:`MAX_NESTING` levels or fails to convert becomes ``None`` and is reported with
    ``report(where, why)`` (``where`` is the path to it, like ``model/layers/0``).
    """
    return _plain(value, report, "", set(), 0)


def _plain(value: Any, report: CutReport | None, path: str, active: set[int], depth: int,
           budget: _Budget | None = None) -> Any:
    """With a ``budget``: an item of a :func:`structured` history value (bytes, a timedelta and a
    complex number as the text W&B's history keeps; :class:`Unrecordable` raised as soon as the
    budget is spent), else of a config or summary value."""
    kind = type(value)
    if budget is not None:
        budget.spend(_MIN_ITEM_BYTES.get(kind, 4) + (len(value) if kind is str else 0), path)
    if value is None or kind in (bool, int, float, str):
        return value
    if (kind is list or kind is tuple) and not value and depth < MAX_NESTING:
        return []  # nothing to look at: it can't contain itself
    if budget is not None and (kind is bytes or kind is complex or _is_timedelta(value)):
        text = _text_or_number(value)
        budget.spend(len(text) if type(text) is str else 0, path)
        return text
    if isinstance(value, (Histogram, bytes)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if id(value) in active:
        _cut(report, path or "(the value)", "the value contains itself; recorded as null")
        return None
    if depth >= MAX_NESTING:
        _cut(report, path or "(the value)", f"nested deeper than {MAX_NESTING} levels; recorded as null")
        return None
    active.add(id(value))
    try:
        return _plain_container(value, report, path, active, depth, budget)
    except Unrecordable:  # over the budget: the whole value is dropped, not cut here
        raise
    except Exception as error:  # a broken __iter__, __str__, dataclass field, tensor...
        _cut(report, path or "(the value)", f"converting a {type_name(value)} failed ({error!r}); recorded as null")
        return None
    finally:
        active.discard(id(value))


# Types whose values ``_plain`` keeps as they are (a list of only these is copied at C level).
_PLAIN_LEAVES = frozenset((type(None), bool, int, float, str))
_EMPTY_CONTAINERS = frozenset((list, tuple))


def _plain_items(items: list[Any] | tuple[Any, ...], depth: int, budget: _Budget | None) -> list[Any] | None:
    """The plain list of a list or tuple's items when they need no walk of their own: all scalars
    (``None`` included), or all empty lists and tuples (the shape of W&B's ``[[], [], ...]``);
    charged to ``budget`` in one sum, as ``_plain`` would item by item. None otherwise, or when the
    budget would pass (the walk then finds where). At C level but for a sum over mixed types."""
    types = set(map(type, items))
    if types <= _PLAIN_LEAVES:
        if budget is None:
            return list(items)
        if types == {str}:
            cost = 4 * len(items) + sum(map(len, items))
        elif str in types or float in types:
            cost = sum(11 if type(item) is float else 4 + len(item) if type(item) is str else 4 for item in items)
        else:
            cost = 4 * len(items)
    elif types <= _EMPTY_CONTAINERS and depth + 1 < MAX_NESTING and not any(items):
        if budget is None:
            return [[] for _ in items]
        cost = 4 * len(items)
    else:
        return None
    if cost > budget.left:
        return None
    budget.left -= cost
    # A history value's empty lists are one list: it is only encoded and read (a list each was
    # an allocation, and garbage collections over them, per item: ~5x the rest of the walk).
    return list(items) if types <= _PLAIN_LEAVES else [[]] * len(items)


def _plain_container(value: Any, report: CutReport | None, path: str, active: set[int], depth: int,
                     budget: _Budget | None = None) -> Any:
    def child(item: Any, name: Any) -> Any:
        return _plain(item, report, f"{path}/{name}" if path else str(name), active, depth + 1, budget)

    kind = type(value)
    if kind is list or kind is tuple:  # builtins: their items, without the checks another type needs
        if budget is not None:
            budget.need(len(value), path)
        copied = _plain_items(value, depth, budget)
        return copied if copied is not None else [child(v, i) for i, v in enumerate(value)]
    if is_mapping(value):
        if budget is not None:
            budget.spend(2 * len(value), path)  # each entry's tag and length
        return {str(k): child(v, k) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: child(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if type(value).__name__ == "Namespace" and hasattr(value, "__dict__"):
        return {str(k): child(v, k) for k, v in vars(value).items()}
    if isinstance(value, enum.Enum):
        if budget is not None:
            budget.left += 4  # the same item, charged again as its value
        return _plain(value.value, report, path, active, depth, budget)
    if isinstance(value, (list, tuple, set, frozenset)):
        if budget is not None:
            budget.need(len(value), path)  # before a set is sorted
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [child(v, i) for i, v in enumerate(items)]
    root = _module_root(value)
    if root == "numpy" or (root in ("torch", "jax", "jaxlib") and hasattr(value, "shape")):
        try:
            if budget is not None:  # before the array is copied or turned into a list
                budget.need(value.numel() if root == "torch" else getattr(value, "size", 1), path)
            if root == "torch":
                value = value.detach().cpu().numpy()
            elif root != "numpy":
                import numpy as np

                value = np.asarray(value)
            if getattr(value, "ndim", 0) == 0:
                return _numpy_scalar(value)
            if budget is not None:
                budget.left += 4  # the same item, charged again as its list
            return _plain(value.tolist(), report, path, active, depth, budget)
        except Unrecordable:
            raise
        except (Unsupported, TypeError, ValueError, RuntimeError):
            return str(value)
    if isinstance(value, (int, float, str)):
        return _builtin(value)
    if _is_timestamp(value):  # as W&B records it; anything else (a Decimal: exact) as its text
        return str(value.isoformat())
    return str(value)


def to_value_message(value: Any, message: Any) -> None:
    """Fill a ``tracklet.v1.Value`` from plain data (see :func:`to_plain`)."""
    kind = type(value)
    if kind is bool:
        message.bool_value = value
    elif kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            message.int_value = value
        else:
            message.big_int_value = str(value)  # ValueError past sys.get_int_max_str_digits() digits
    elif kind is float:
        message.float_value = value
    elif kind is str:
        message.string_value = value
    elif value is None:
        message.null_value = 0
    elif kind is dict:
        entries = message.map_value.entries
        message.map_value.SetInParent()
        for key, item in value.items():
            entry = entries.add()
            entry.key = key
            to_value_message(item, entry.value)
    elif kind is list:
        message.list_value.SetInParent()
        items = message.list_value.items
        for item in value:
            to_value_message(item, items.add())
    elif kind is bytes:
        message.bytes_value = value
    elif isinstance(value, Histogram):
        fill_histogram(message.histogram_value, value)
    else:
        raise Unsupported(type_name(value))


def fill_histogram(message: Any, histogram: Histogram) -> None:
    message.edges.extend(histogram.edges)
    message.counts.extend(histogram.counts)
    message.nan_count = histogram.nan_count
    message.inf_count = histogram.inf_count


def histogram_from_message(message: Any) -> Histogram:
    return Histogram._raw(list(message.edges), list(message.counts), message.nan_count, message.inf_count)


def from_value_message(message: Any) -> Any:
    """Plain data from a ``tracklet.v1.Value``; lists of one simple kind are built from their bytes
    (``core/valueread.py``), everything else item by item."""
    which = message.WhichOneof("kind")
    if which == "float_value":
        return message.float_value
    if which == "int_value":
        return message.int_value
    if which == "bool_value":
        return message.bool_value
    if which == "string_value":
        return message.string_value
    if which == "map_value":
        return {entry.key: from_value_message(entry.value) for entry in message.map_value.entries}
    if which == "list_value":
        value_list = message.list_value
        if len(value_list.items) >= valueread.FEW:
            items = valueread.uniform_items(value_list)
            if items is not None:
                return items
        return [from_value_message(item) for item in value_list.items]
    if which == "bytes_value":
        return message.bytes_value
    if which == "histogram_value":
        return histogram_from_message(message.histogram_value)
    if which == "big_int_value":
        return parse_big_int(message.big_int_value)
    return None


def parse_big_int(text: str) -> int | None:
    """A ``big_int_value`` or ``Column.big_ints`` entry as an int; None if it isn't one (a record
    log from disk is untrusted input: bounded by ``int()``'s digit limit, never raises)."""
    try:
        return int(text)
    except ValueError:
        return None


def fill_entries(
    entries: Any, items: Mapping[str, Any], report: Callable[[str, Exception], None] | None = None
) -> None:
    """Append ``MapEntry`` messages for already-plain ``items``.

    With ``report``, an item that can't be encoded (a lone surrogate in a string, an int too long
    to write in decimal) is left out and ``report(key, error)`` called; without, the error is raised.
    Into a ``wire`` message (the worker's summary and config records) each entry is written as its
    bytes at once (``core/valuewire.py``): no message object per item of a large value.
    """
    append_encoded = getattr(entries, "append_encoded", None)
    if append_encoded is not None:
        from tracklet.core.valuewire import map_entry

    for key, value in items.items():
        if append_encoded is not None:
            try:
                append_encoded(map_entry(key, value))
            except Exception as error:
                if report is None:
                    raise
                report(key, error)
            continue
        entry = entries.add()
        try:
            entry.key = key
            to_value_message(value, entry.value)
        except Exception as error:
            del entries[-1]
            if report is None:
                raise
            report(key, error)


__all__ = [
    "Histogram",
    "Unsupported",
    "flatten",
    "from_value_message",
    "histogram_of",
    "is_supported_type",
    "to_plain",
    "to_scalar",
    "to_value_message",
    "MAX_NESTING",
    "MAX_STRUCTURED_BYTES",
    "Unrecordable",
    "parse_big_int",
    "structured",
    "structured_bytes",
    "structured_message",
]
