"""W&B's exception classes (``wandb.errors``), so code that catches them keeps working."""

from __future__ import annotations

from tracklet.errors import ArtifactNotFound, ArtifactTypeMismatch


class Error(Exception):
    """Base class of W&B errors (``wandb.Error``)."""

    def __init__(self, message: str = "", context: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class CommError(Error):
    """Raised by ``wandb.Api`` calls tracklet cannot answer."""

    def __init__(self, msg: str = "", exc: BaseException | None = None) -> None:
        super().__init__(msg)
        self.exc = exc


class ArtifactNotFoundCommError(CommError, ArtifactNotFound):
    """No artifact version matches (``run.use_artifact``, ``use_model``, ``wandb.Api().artifact``):
    a ``CommError``, as W&B raises, and tracklet's ``ArtifactNotFound``, so either ``except`` works."""


def type_mismatch(error: ArtifactTypeMismatch) -> ArtifactTypeMismatch:
    """``error`` with W&B's message: ``type 'model' specified but this artifact is of type
    'dataset'`` (W&B's ``Api._artifact``), then the version's name. It stays tracklet's
    ``ArtifactTypeMismatch``: a ``ValueError``, as W&B's ``run.use_artifact`` raises, and an
    ``ArtifactNotFound``. ``wandb.Api().artifact`` raises W&B's ``CommError`` with this as its ``exc``."""
    return ArtifactTypeMismatch(f"type {error.asked!r} specified but this artifact is of type {error.found!r} "
                                f"({error.name})", asked=error.asked, found=error.found, name=error.name)


class AuthenticationError(CommError):
    pass


class UsageError(Error):
    """A W&B call was used in a way W&B itself refuses."""


class UnsupportedError(UsageError):
    pass


class WandbCoreNotAvailableError(Error):
    pass


__all__ = ["ArtifactNotFoundCommError", "AuthenticationError", "CommError", "Error", "UnsupportedError", "UsageError", "WandbCoreNotAvailableError"]
