"""W&B's exception classes (``wandb.errors``), so code that catches them keeps working."""

from __future__ import annotations

from tracklet.errors import ArtifactNotFound


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


class AuthenticationError(CommError):
    pass


class UsageError(Error):
    """A W&B call was used in a way W&B itself refuses."""


class UnsupportedError(UsageError):
    pass


class WandbCoreNotAvailableError(Error):
    pass


__all__ = ["ArtifactNotFoundCommError", "AuthenticationError", "CommError", "Error", "UnsupportedError", "UsageError", "WandbCoreNotAvailableError"]
