"""``wandb.Api().registries()`` and ``wandb.Api().registry(name)`` (W&B 0.19+'s registry API) over
tracklet's model registry (docs/registry.md), read-only: ``Registry`` (``name``, ``full_name``
``wandb-registry-<name>``, ``artifact_types``, ``collections()``, ``versions()``) and
``Registries`` (a list of them, with ``collections()`` and ``versions()`` across all).

A registry exists once something was linked into it. ``filter`` is W&B's MongoDB-style filter on
the few fields these listings have: ``name`` (registries, collections), ``type`` and ``tag``
(collections), ``alias`` and ``tag`` (versions), with ``$eq``, ``$ne``, ``$in``, ``$nin``,
``$regex`` (RE2 syntax, read as the run filters read it: tracklet/store/regex.py) and ``$contains``, a bare value meaning ``$eq``; anything else
raises ``UsageError`` naming it rather than listing everything.
"""

from __future__ import annotations

from typing import Any, Callable

from tracklet.compat.wandb.apis import _artifact_lists
from tracklet.compat.wandb.errors import CommError, UsageError
from tracklet.registry.refs import WANDB_PREFIX


def _regex(values: list[str], pattern: Any) -> bool:
    """Whether ``pattern`` (RE2 syntax, W&B's; bounded in size and time) matches any of ``values``,
    as a run filter's ``$regex`` would (tracklet/store/regex.py)."""
    from tracklet.store.regex import MAX_PATTERN_CHARS, PatternError, portable, sqlite_regexp

    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_CHARS:
        raise UsageError(f"$regex takes a pattern of at most {MAX_PATTERN_CHARS} characters; got {pattern!r:.80}")
    try:
        compiled = portable(pattern)
    except PatternError as error:
        raise UsageError(f"$regex {pattern!r}: {error.problem} (at character {error.offset + 1})") from None
    return any(sqlite_regexp(compiled, value) for value in values)


_OPS: dict[str, Callable[[list[str], Any], bool]] = {
    "$eq": lambda values, operand: operand in values,
    "$ne": lambda values, operand: operand not in values,
    "$in": lambda values, operand: any(value in operand for value in values),
    "$nin": lambda values, operand: not any(value in operand for value in values),
    "$regex": _regex,
    "$contains": lambda values, operand: any(str(operand) in value for value in values),
}


def _matches(fields: dict[str, list[str]], filter: dict[str, Any] | None, what: str) -> bool:
    """Whether an object whose ``fields`` (each a list of values: a name, tags, aliases) passes
    ``filter``; an unknown key or operator raises ``UsageError``."""
    if not filter:
        return True
    if not isinstance(filter, dict):
        raise UsageError(f"{what}: filter must be a dict such as {{'name': {{'$regex': 'model'}}}}; got {filter!r}")
    for key, condition in filter.items():
        if key == "$and":
            if not all(_matches(fields, part, what) for part in condition):
                return False
            continue
        if key == "$or":
            if not any(_matches(fields, part, what) for part in condition):
                return False
            continue
        if key not in fields:
            raise UsageError(f"{what}: can't filter on {key!r} (known: {', '.join(sorted(fields))})")
        conditions = condition if isinstance(condition, dict) else {"$eq": condition}
        for operator, operand in conditions.items():
            test = _OPS.get(operator)
            if test is None:
                raise UsageError(f"{what}: filter operator {operator!r} on {key!r} is not supported "
                                 f"(supported: {', '.join(_OPS)})")
            if operator in ("$in", "$nin") and not isinstance(operand, (list, tuple, set)):
                raise UsageError(f"{what}: {operator} on {key!r} takes a list; got {operand!r}")
            if not test(fields[key], operand):
                return False
    return True


def _collections(api: Any, registries: list[str], entity: str | None, filter: Any) -> list[Any]:
    found = []
    for name in registries:
        for collection in _artifact_lists.collections(api, WANDB_PREFIX + name, None, entity):
            if _matches({"name": [collection.name], "type": [collection.type], "tag": list(collection.tags)},
                        filter, "collections()"):
                found.append(collection)
    return found


def _versions(api: Any, registries: list[str], entity: str | None, filter: Any) -> list[Any]:
    found = []
    for collection in _collections(api, registries, entity, None):
        for version in collection.artifacts():
            if _matches({"alias": [*version.aliases, version.version], "tag": list(version.tags)}, filter,
                        "versions()"):
                found.append(version)
    return found


class Registry:
    """W&B's ``Registry``: one registry of tracklet's model registry, read-only."""

    def __init__(self, api: Any, name: str, entity: str | None = None) -> None:
        self._api = api
        self.name = name
        self.entity = entity
        self.organization = entity
        self.description = ""
        self.visibility = "organization"

    @property
    def full_name(self) -> str:
        """W&B's name of the registry's project: ``wandb-registry-<name>``."""
        return WANDB_PREFIX + self.name

    @property
    def artifact_types(self) -> list[str]:
        """The types of the registry's collections."""
        return sorted({row["type"] for row in self._api.registry_collections(self.name)})

    def collections(self, filter: dict[str, Any] | None = None, per_page: int = 100) -> list[Any]:
        """The registry's collections (W&B's ``ArtifactCollection``), by name."""
        return _collections(self._api, [self.name], self.entity, filter)

    def versions(self, filter: dict[str, Any] | None = None, per_page: int = 100) -> list[Any]:
        """Every version of the registry's collections, each as read through its collection
        (newest first within a collection)."""
        return _versions(self._api, [self.name], self.entity, filter)

    def __repr__(self) -> str:
        return f"<Registry {self.name}>"


class Registries(list):
    """``wandb.Api().registries()``: the registries, by name, and their collections and versions."""

    def __init__(self, api: Any, registries: list[Registry]) -> None:
        super().__init__(registries)
        self._api = api

    def collections(self, filter: dict[str, Any] | None = None, per_page: int = 100) -> list[Any]:
        entity = self[0].entity if self else None
        return _collections(self._api, [registry.name for registry in self], entity, filter)

    def versions(self, filter: dict[str, Any] | None = None, per_page: int = 100) -> list[Any]:
        entity = self[0].entity if self else None
        return _versions(self._api, [registry.name for registry in self], entity, filter)


def registries(api: Any, entity: str | None, filter: dict[str, Any] | None) -> Registries:
    names = sorted({row["registry"] for row in api.registry_collections()})
    return Registries(api, [Registry(api, name, entity) for name in names
                            if _matches({"name": [name]}, filter, "registries()")])


def registry(api: Any, name: str, entity: str | None) -> Registry:
    short = name[len(WANDB_PREFIX):] if name.startswith(WANDB_PREFIX) else name
    if not api.registry_collections(short):
        known = sorted({row["registry"] for row in api.registry_collections()})
        raise CommError(f"no registry {short!r} (nothing has been linked into it; registries: "
                        f"{', '.join(known) or 'none'})")
    return Registry(api, short, entity)


__all__ = ["Registries", "Registry", "registries", "registry"]
