"""``run.summary`` as W&B has it: a mapping with attribute access over tracklet's summary."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Iterator

LEFT_OUT = object()  # what :func:`summary_value` gives for a value a summary can't hold


def media_label(value: Any) -> str | None:
    """``"wandb.Image"``, ``"wandb.Table"``, ... for a media object, table or chart (or a list of
    them), which W&B's summary keeps as its file's JSON and tracklet records only through
    ``log()``; None for anything else."""
    from tracklet.compat.wandb.data_types import Histogram, WBValue
    from tracklet.core.logged import LoggedObject

    item = value[0] if type(value) in (list, tuple) and value else value
    if isinstance(item, (WBValue, LoggedObject)) and not isinstance(item, Histogram):
        return f"wandb.{type(item).__name__}" if isinstance(item, WBValue) else type(item).__name__
    return None


def summary_value(key: str, value: Any, warn: bool = True) -> Any:
    """``value`` as a summary records it, as W&B keeps it: a ``wandb.Histogram`` as a histogram
    (nested dicts too). A media object, table or chart is :data:`LEFT_OUT` (with one warning per
    type when ``warn``): W&B stores its file beside the summary; tracklet records media and tables
    through ``log()`` only (a logged key's summary is its last one)."""
    from tracklet.compat.wandb.data_types import Histogram, recordable

    value = recordable(value)  # a figure: an image, a DataFrame: a table (as W&B's val_to_json)
    if isinstance(value, Histogram):
        return value.to_tracklet()
    if isinstance(value, Mapping) and not isinstance(value, Summary):
        found = {}
        for name, item in value.items():
            item = summary_value(f"{key}/{name}", item, warn)
            if item is not LEFT_OUT:
                found[name] = item
        return found
    label = media_label(value)
    if label is None:
        return value
    if warn:
        from tracklet.compat.wandb._messages import warn_once

        warn_once(f"summary-media-{label}", f"run.summary[{key!r}] = {label}(...) is not recorded: tracklet records "
                  f"media, tables and charts only through run.log() (a logged key's summary is its last one); log "
                  f"it with run.log({{{key!r}: ...}}). The rest of the summary is recorded")
    return LEFT_OUT


class Summary(MutableMapping):
    """Item and attribute access (``summary["best"]``, ``summary.best = 0.1``), ``update``,
    ``get``, ``dict(summary)``. Reading reflects every ``log()`` made before it."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getitem__(self, key: str) -> Any:
        return self._target[key]

    def __setitem__(self, key: str, value: Any) -> None:
        value = summary_value(key, value)
        if value is not LEFT_OUT:
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
        found = {key: summary_value(key, value) for key, value in {**dict(d or {}), **kwargs}.items()}
        self._target.update({key: value for key, value in found.items() if value is not LEFT_OUT})

    def _as_dict(self) -> dict[str, Any]:
        return dict(self._target)

    def __repr__(self) -> str:
        return repr(dict(self._target))
