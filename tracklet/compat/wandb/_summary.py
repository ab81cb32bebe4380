"""``run.summary`` as W&B has it: a mapping with attribute access over tracklet's summary."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Iterator


class Summary(MutableMapping):
    """Item and attribute access (``summary["best"]``, ``summary.best = 0.1``), ``update``,
    ``get``, ``dict(summary)``. Reading reflects every ``log()`` made before it."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getitem__(self, key: str) -> Any:
        return self._target[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._target[key] = value

    def __delitem__(self, key: str) -> None:
        del self._target[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._target)

    def __len__(self) -> int:
        return len(self._target)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._target[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def update(self, d: Any = None, /, **kwargs: Any) -> None:
        self._target.update({**dict(d or {}), **kwargs})

    def _as_dict(self) -> dict[str, Any]:
        return dict(self._target)

    def __repr__(self) -> str:
        return repr(dict(self._target))
