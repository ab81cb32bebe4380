"""The caller's side of logging media: take a snapshot of the data, nothing more.

A numpy array is copied (a memcpy); a torch tensor is detached and copied to a host buffer (from
a GPU: ``to("cpu", non_blocking=True)``, which copies into pinned memory on the current stream,
and a CUDA event recorded after it, so the caller never waits for the device: the worker waits
on the event before reading); a jax array is kept as it is (immutable); a PIL image is copied; a
path is kept as a path. Decoding, converting and encoding happen on the worker
(``tracklet.media.worker``).
"""

from __future__ import annotations

import os
from typing import Any


class TorchCopy:
    """A torch tensor's copy on the host, readable once ``event`` (if any) has completed."""

    __slots__ = ("tensor", "event", "channels_first")

    def __init__(self, tensor: Any) -> None:
        tensor = tensor.detach()
        self.event = None
        device = tensor.device.type
        if device == "cpu":
            self.tensor = tensor.clone()
        elif device == "cuda":
            import torch

            self.tensor = tensor.to("cpu", non_blocking=True)  # pinned buffer, queued on the stream
            self.event = torch.cuda.Event()
            self.event.record()
        else:  # other devices have no event to wait on here: a plain copy
            self.tensor = tensor.to("cpu")

    @property
    def nbytes(self) -> int:
        return int(self.tensor.numel() * self.tensor.element_size())

    def numpy(self) -> Any:
        """The copy as a numpy array (waits for the device copy, on the worker)."""
        if self.event is not None:
            self.event.synchronize()
        tensor = self.tensor
        if not tensor.is_floating_point() and tensor.dtype.is_complex:
            raise TypeError(f"a complex tensor ({tensor.dtype}) is not an image or a signal")
        if str(tensor.dtype) in ("torch.bfloat16", "torch.float16"):
            tensor = tensor.float()
        return tensor.numpy()


def _root(value: Any) -> str:
    return type(value).__module__.partition(".")[0]


def snapshot(data: Any) -> Any:
    """What the worker will read: a copy of ``data`` taken now (see the module docstring)."""
    root = _root(data)
    if root == "numpy":
        return data.copy() if hasattr(data, "copy") else data
    if root == "torch" and hasattr(data, "detach"):
        return TorchCopy(data)
    if root == "PIL" and hasattr(data, "copy"):
        return data.copy()
    if isinstance(data, (str, os.PathLike, bytes, int, float)) or root in ("jax", "jaxlib"):
        return data
    if callable(getattr(data, "read", None)):  # a file object: it may be closed once log() returns
        import io

        content = data.read()
        copy = io.BytesIO(content.encode() if isinstance(content, str) else bytes(content))
        copy.name = str(getattr(data, "name", "") or "")
        return copy
    if isinstance(data, (list, tuple)):
        import numpy as np

        return np.asarray(data)
    return data


def nbytes(data: Any) -> int:
    """About how many bytes ``data`` holds in memory."""
    size = getattr(data, "nbytes", None)
    if isinstance(size, int):
        return size
    if _root(data) == "PIL":
        return int(data.width * data.height * max(1, len(data.getbands())))
    if isinstance(data, bytes):
        return len(data)
    return 0


def to_numpy(data: Any) -> Any:
    """A snapshot as a numpy array (on the worker)."""
    import numpy as np

    if isinstance(data, TorchCopy):
        return data.numpy()
    return np.asarray(data)


def is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))
