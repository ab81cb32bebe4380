"""``wandb.util``: the helpers frameworks and scripts call."""

from __future__ import annotations

import importlib
import json
import secrets
from typing import Any

from tracklet.core.values import to_plain

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate_id(length: int = 8) -> str:
    """A random run id of lowercase letters and digits."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def get_module(name: str, required: str | bool | None = None, lazy: bool = True) -> Any:
    """Import ``name``, or return None when it is missing (raise with ``required``'s message)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if required:
            raise ImportError(required if isinstance(required, str) else f"{name} is required") from None
        return None


def json_friendly(obj: Any) -> tuple[Any, bool]:
    """W&B's ``(value, converted)`` pair: numpy, torch, jax values and the like as plain data."""
    plain = to_plain(obj)
    return plain, plain is not obj


def json_friendly_val(val: Any) -> Any:
    return to_plain(val)


def make_json_if_not_number(value: Any) -> Any:
    plain = to_plain(value)
    return plain if isinstance(plain, (int, float)) else json.dumps(plain, default=str)


def to_forward_slash_path(path: str) -> str:
    return path.replace("\\", "/")


def is_numpy_array(obj: Any) -> bool:
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


__all__ = ["generate_id", "get_module", "is_numpy_array", "json_friendly", "json_friendly_val",
           "make_json_if_not_number", "to_forward_slash_path"]
