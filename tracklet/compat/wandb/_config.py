"""``run.config`` as W&B has it: attribute and item access, ``update(..., allow_val_change=)``,
``setdefaults``, ``as_dict``, and config taken from dicts, argparse Namespaces, absl FLAGS,
dataclasses or YAML files. Every change is recorded by the tracklet run's own ``Config``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
from collections.abc import Mapping
from typing import Any, Iterable, Iterator

from tracklet.compat.wandb._messages import warn_once
from tracklet.compat.wandb.errors import Error
from tracklet.core.values import to_plain


class ConfigError(Error):
    """Changing a config value without ``allow_val_change=True`` (``wandb.sdk.lib.config_util.ConfigError``)."""


def _from_yaml(path: str) -> dict[str, Any]:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        warn_once("config-yaml", f"config={path!r} needs PyYAML to read the file; install it (this config is ignored)")
        return {}
    with open(path, encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle) or {}
    # W&B's config-defaults.yaml style: {key: {"value": v, "desc": ...}}
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in dict(loaded).items()
            if k != "wandb_version"}


#: The file W&B reads, from the working directory, as every run's config defaults.
DEFAULTS_FILE = "config-defaults.yaml"


def config_defaults() -> dict[str, Any]:
    """W&B's ``config-defaults.yaml`` in the working directory (``{key: {value: v, desc: ...}}``),
    which W&B loads as each run's config before ``init(config=)`` (and a sweep's values) override
    it; ``{}`` when there is none. A file that can't be read or parsed is reported once and left
    out (W&B raises ``ConfigError``): the run still starts."""
    if not os.path.isfile(DEFAULTS_FILE):
        return {}
    try:
        return _from_yaml(DEFAULTS_FILE)
    except Exception as error:
        warn_once("config-defaults", f"{os.path.abspath(DEFAULTS_FILE)} could not be read and is left out of the "
                                     f"config: {error}")
        return {}


def config_paths(value: str | None = None) -> dict[str, Any]:
    """The YAML files ``WANDB_CONFIG_PATHS`` names (comma-separated; W&B's ``config_paths``
    setting), read as ``config-defaults.yaml`` is and merged in order, a later file's keys over an
    earlier one's. As W&B does with its ``config_paths``, they go over ``config-defaults.yaml`` and
    over ``init(config=)`` too. A file that doesn't exist is skipped, as in W&B; one that can't be
    read or parsed is reported once and left out (W&B raises ``ConfigError``): the run still starts."""
    paths = value if value is not None else os.environ.get("WANDB_CONFIG_PATHS", "")
    merged: dict[str, Any] = {}
    for path in (part.strip() for part in paths.split(",")):
        if not path or not os.path.isfile(path):
            continue
        try:
            merged.update(_from_yaml(path))
        except Exception as error:
            warn_once(f"config-paths-{path}", f"WANDB_CONFIG_PATHS: {os.path.abspath(path)} could not be read and "
                                              f"is left out of the config: {error}")
    return merged


def parse_config(params: Any, exclude: Iterable[str] | None = None,
                 include: Iterable[str] | None = None) -> dict[str, Any]:
    """Turn what W&B accepts as a config into a dict: a mapping, a YAML file path, absl FLAGS (or
    the ``absl.flags`` module), an argparse Namespace, a dataclass or any object with ``__dict__``.
    Anything else is reported once and ignored."""
    if params is None:
        return {}
    if isinstance(params, Config):
        params = params.as_dict()
    elif isinstance(params, str):
        params = _from_yaml(params)
    elif not isinstance(params, Mapping):
        module = inspect.getmodule(params)
        if isinstance(params, types.ModuleType) and module is not None and module.__name__ == "absl.flags":
            params = params.FLAGS
        if hasattr(params, "flag_values_dict"):  # absl.flags.FlagValues
            params = params.flag_values_dict()
        elif dataclasses.is_dataclass(params) and not isinstance(params, type):
            params = to_plain(params)
        elif hasattr(params, "__dict__"):  # argparse.Namespace and plain objects
            params = {k: v for k, v in vars(params).items() if not k.startswith("__")}
        else:
            warn_once(f"config-type-{type(params).__name__}",
                      f"a config of type {type(params).__name__} is ignored: pass a dict, an argparse Namespace, "
                      "absl FLAGS, a dataclass or a YAML path")
            return {}
    items = {str(k).strip("-"): v for k, v in dict(params).items()}
    if include is not None:
        wanted = set(include)
        items = {k: v for k, v in items.items() if k in wanted}
    if exclude is not None:
        unwanted = set(exclude)
        items = {k: v for k, v in items.items() if k not in unwanted}
    return items


class Config:
    """A run's config with W&B's rules on top of a tracklet ``Config`` (which records changes).

    Changing the value of a key already set raises :class:`ConfigError`, as in W&B, unless
    ``allow_val_change=True`` is passed to ``update`` (or to ``wandb.init``).
    """

    def __init__(self, target: Any, allow_val_change: bool = False) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_allow_val_change", allow_val_change)

    # ---------------------------------------------------------------- writing

    def _set(self, items: dict[str, Any], allow_val_change: bool | None) -> dict[str, Any]:
        plain = {k: to_plain(v) for k, v in items.items()}
        allowed = self._allow_val_change if allow_val_change is None else allow_val_change
        if not allowed:
            data = self._target
            for key, value in plain.items():
                if key in data and data[key] != value:
                    raise ConfigError(
                        f'Attempted to change value of key "{key}" from {data[key]!r} to {value!r}\n'
                        "If you really want to do this, pass allow_val_change=True to config.update()"
                    )
        if plain:
            self._target.update(plain)
        return plain

    def update(self, d: Any = None, allow_val_change: bool | None = None) -> None:
        """Set the keys of ``d`` (a dict, Namespace, absl FLAGS, dataclass or YAML path)."""
        self._set(parse_config(d), allow_val_change)

    def update_locked(self, d: Any, user: Any = None, _allow_val_change: bool | None = None) -> None:
        """What W&B sweeps use; tracklet has no locks, so this is :meth:`update` allowing changes."""
        self._set(parse_config(d), True)

    merge_locked = update_locked

    def setdefaults(self, d: Any) -> None:
        """Set only the keys of ``d`` that are not set yet."""
        self._set({k: v for k, v in parse_config(d).items() if k not in self._target}, True)

    def __setitem__(self, key: str, value: Any) -> None:
        self._set({str(key).strip("-"): value}, None)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delitem__(self, key: str) -> None:
        del self._target[key]

    def persist(self) -> None:
        """Nothing to do: every change is recorded when it is made."""

    # ---------------------------------------------------------------- reading

    def __getitem__(self, key: str) -> Any:
        return self._target[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._target[name]
        except KeyError:
            raise AttributeError(f"{type(self)!r} object has no attribute {name!r}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._target

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._target))

    def __len__(self) -> int:
        return len(self._target)

    def keys(self) -> list[str]:
        return [k for k in self._target if not k.startswith("_")]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self._target.items() if not k.startswith("_")]

    def values(self) -> list[Any]:
        return [v for _, v in self.items()]

    def get(self, *args: Any) -> Any:
        return self._target.get(*args)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._target)

    _as_dict = as_dict

    def __repr__(self) -> str:
        return repr(self.as_dict())


class PreInitConfig(Config):
    """``wandb.config`` before ``wandb.init()``: W&B refuses to use it, and so does this."""

    def __init__(self) -> None:
        super().__init__({}, True)

    def _set(self, items: dict[str, Any], allow_val_change: bool | None) -> dict[str, Any]:
        raise Error("You must call wandb.init() before wandb.config is changed")
