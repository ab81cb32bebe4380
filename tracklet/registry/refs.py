"""How a registry collection is named: ``registry/collection[:alias|:vN]``, W&B's registry paths
and MLflow-style ``models:/`` URIs.

- ``models:/my-model@production``, ``models:/my-model/3``, ``models:/my-model`` (latest): the
  ``model`` registry (MLflow's names);
- ``[entity/]wandb-registry-<registry>/<collection>[:selector]``: W&B's registry path (the entity
  is ignored: a tracklet server has no entities);
- ``[entity/]model-registry/<collection>[:selector]``: W&B's legacy model registry, the ``model``
  registry;
- ``<registry>/<collection>[:selector]``: tracklet's own form. It reads like an artifact's
  ``project/name``: it names a registry collection only when no project of that name has that
  artifact collection (``explicit`` is False, the caller decides).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from tracklet.artifacts.names import LATEST, check_alias, check_artifact_name, version_number
from tracklet.errors import ArtifactNameError

MODEL_REGISTRY = "model"  # where link_model and models:/ URIs go
WANDB_PREFIX = "wandb-registry-"
WANDB_LEGACY_MODEL_REGISTRY = "model-registry"
_MODELS_URI = re.compile(r"models:/([^/@:]+)(?:@([^/@:]+)|/([0-9]+))?")


class RegistryRef(NamedTuple):
    """A parsed reference to a version of a registry collection; ``selector`` defaults to ``latest``."""

    registry: str
    collection: str
    selector: str
    explicit: bool = True  # False: ``a/b`` that may also be an artifact's ``project/name``

    @property
    def path(self) -> str:
        return f"{self.registry}/{self.collection}"

    def __str__(self) -> str:
        return f"{self.registry}/{self.collection}:{self.selector}"


def check_registry_name(name: object) -> str:
    """A registry's name: the artifact name character set (it becomes part of a path)."""
    if isinstance(name, str) and name.startswith(WANDB_PREFIX):
        name = name[len(WANDB_PREFIX):]
    try:
        return check_artifact_name(name)
    except ArtifactNameError as error:
        raise ArtifactNameError(str(error).replace("artifact name", "registry name")) from None


def registry_of(part: str) -> tuple[str, bool]:
    """The registry a path's first part names, and whether it says so unmistakably (W&B's
    ``wandb-registry-`` prefix, its ``model-registry`` project)."""
    if part.startswith(WANDB_PREFIX):
        return check_registry_name(part[len(WANDB_PREFIX):]), True
    if part == WANDB_LEGACY_MODEL_REGISTRY:
        return MODEL_REGISTRY, True
    return check_registry_name(part), False


def check_selector(selector: str) -> str:
    if selector != LATEST and version_number(selector) is None:
        check_alias(selector)
    return selector


def parse_registry_ref(text: object) -> RegistryRef | None:
    """``text`` as a registry reference, or None if it can't be one (``name``, ``name:alias``: no
    registry part). Bad names in what is a registry reference raise ``ArtifactNameError``."""
    if not isinstance(text, str) or not text:
        return None
    if text.startswith("models:"):
        match = _MODELS_URI.fullmatch(text)
        if match is None:
            raise ArtifactNameError(f"model URI {text!r} is not valid: use 'models:/<name>@<alias>', "
                                    "'models:/<name>/<version>' or 'models:/<name>'")
        name, alias, number = match.groups()
        selector = alias if alias is not None else f"v{number}" if number is not None else LATEST
        return RegistryRef(MODEL_REGISTRY, check_artifact_name(name), check_selector(selector))
    head, _, selector = text.partition(":")
    parts = head.split("/")
    if len(parts) not in (2, 3):
        return None
    registry, explicit = registry_of(parts[-2])
    return RegistryRef(registry, check_artifact_name(parts[-1]), check_selector(selector or LATEST), explicit)


def parse_target(text: object) -> tuple[str, str]:
    """A link's target, ``registry/collection`` (or a W&B registry path), as (registry, collection).
    A selector is refused: a link adds the next version."""
    if not isinstance(text, str) or ":" in text or text.count("/") not in (1, 2):
        raise ArtifactNameError(f"a registry target must be 'registry/collection' (e.g. 'model/mnist-cnn' or "
                                f"'wandb-registry-model/mnist-cnn'); got {text!r}")
    parts = text.split("/")
    return registry_of(parts[-2])[0], check_artifact_name(parts[-1])
