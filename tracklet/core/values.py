"""What a logged value may be, and how it becomes something the wire format can hold.

Scalars are ``bool``, ``int`` (int64), ``float`` (NaN and +-inf kept) and ``str``. numpy scalars,
0-d or one-element numpy arrays and torch/jax tensors are scalars too; larger arrays and tensors,
lists and tuples of numbers, and :class:`Histogram` become histograms. ``None`` means "no value
for this key in this row" and is skipped.

Tensors are converted here, on the sender's worker thread, never on the caller's: ``log()`` keeps
a reference and this module reads it later. That is what keeps ``log()`` from forcing a device
sync, and it implies the lifetime rule: do not modify a tensor or array in place after logging
it until the run has been flushed (log ``t.detach().clone()`` or ``t.item()`` if you must).

Nothing here imports numpy, torch or jax: a value of those types means the user already did.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import PurePath
from typing import Any, Iterable, Mapping

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
DEFAULT_BINS = 64


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


class Unsupported(TypeError):
    """A value tracklet cannot record."""


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
    if value.dtype.kind not in "biufUS":
        raise Unsupported(f"numpy dtype {value.dtype}")
    item = value.item()
    if type(item) is bytes:
        item = item.decode("utf-8", errors="replace")
    if type(item) is int and not INT64_MIN <= item <= INT64_MAX:
        return float(item)
    return item


def _from_array(array: Any) -> Any:
    if array.size == 1:
        return _numpy_scalar(array)
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
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    if isinstance(value, Histogram):
        return value
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
    if isinstance(value, (bool, int, float, str)) and not isinstance(value, enum.Enum):
        return _builtin(value)
    if isinstance(value, (list, tuple)) and value and all(type(v) in (int, float) for v in value):
        return histogram_of(value)
    raise Unsupported(type_name(value))


def _builtin(value: Any) -> Any:
    """Subclasses of builtins (IntEnum aside) are stored as the builtin they extend."""
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
    if isinstance(value, Mapping):
        return all(is_supported_type(v) for v in value.values())
    root = _module_root(value)
    if root == "numpy":
        return getattr(getattr(value, "dtype", None), "kind", "O") in "biufUS"
    if root == "torch":
        return hasattr(value, "detach") and not value.is_complex()
    if root in ("jax", "jaxlib"):
        return hasattr(value, "shape")
    if isinstance(value, (int, float, str)) and not isinstance(value, enum.Enum):
        return True
    if isinstance(value, (list, tuple)):
        return bool(value) and all(type(v) in (int, float) for v in value)
    return False


_mapping_types: dict[type, bool] = {}


def is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, cached per type: the ABC check costs far more than a dict
    lookup, and ``log()`` asks it for every tensor and array it is given."""
    kind = type(value)
    known = _mapping_types.get(kind)
    if known is None:
        known = _mapping_types[kind] = isinstance(value, Mapping)
    return known


def flatten(data: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested mappings become ``a/b`` keys; the result is a new dict (a copy at every level)."""
    if out is None:
        out = {}
    for key, value in data.items():
        name = f"{prefix}{key}" if isinstance(key, str) else f"{prefix}{key!s}"
        if isinstance(value, Mapping):
            flatten(value, name + "/", out)
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------- structured values (config, summary)


def to_plain(value: Any) -> Any:
    """Turn a config value into plain data: dicts, lists, scalars, None, Histogram.

    Mappings, dataclasses and argparse Namespaces become dicts; sequences and sets become lists;
    enums become their value; paths become strings; numpy/torch/jax values become scalars or
    lists. Anything else is stored as ``str(value)``, which keeps a config readable.
    """
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        if kind is int and not INT64_MIN <= value <= INT64_MAX:
            return float(value)
        return value
    if isinstance(value, Histogram):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if kind.__name__ == "Namespace" and hasattr(value, "__dict__"):
        return {str(k): to_plain(v) for k, v in vars(value).items()}
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_plain(v) for v in items]
    if isinstance(value, bytes):
        return value
    if isinstance(value, PurePath):
        return str(value)
    root = _module_root(value)
    if root == "numpy" or (root in ("torch", "jax", "jaxlib") and hasattr(value, "shape")):
        try:
            if root == "torch":
                value = value.detach().cpu().numpy()
            elif root != "numpy":
                import numpy as np

                value = np.asarray(value)
            if getattr(value, "ndim", 0) == 0:
                return _numpy_scalar(value)
            return to_plain(value.tolist())
        except (Unsupported, TypeError, ValueError, RuntimeError):
            return str(value)
    if isinstance(value, (int, float, str)):
        return _builtin(value)
    return str(value)


def to_value_message(value: Any, message: Any) -> None:
    """Fill a ``tracklet.v1.Value`` from plain data (see :func:`to_plain`)."""
    kind = type(value)
    if kind is bool:
        message.bool_value = value
    elif kind is int:
        message.int_value = value
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
        return [from_value_message(item) for item in message.list_value.items]
    if which == "bytes_value":
        return message.bytes_value
    if which == "histogram_value":
        return histogram_from_message(message.histogram_value)
    return None


def fill_entries(entries: Any, items: Mapping[str, Any]) -> None:
    """Append ``MapEntry`` messages for already-plain ``items``."""
    for key, value in items.items():
        entry = entries.add()
        entry.key = key
        to_value_message(value, entry.value)


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
]
