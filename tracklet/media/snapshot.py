"""The caller's side of logging media: take a snapshot of the data, nothing more.

A numpy array is copied (a memcpy); a torch tensor is detached and copied to a host buffer (from
a GPU: ``to("cpu", non_blocking=True)``, which copies into pinned memory on the current stream,
and a CUDA event recorded after it, so the caller never waits for the device: the worker waits
on the event before reading); a jax array is kept as it is (immutable); a PIL image is copied; a
path is kept as a path. Decoding, converting and encoding happen on the worker
(``tracklet.media.worker``).

Copies of numpy arrays and CPU tensors go into reused buffers (``tracklet.media.buffers``): fresh
memory for each copy would cost the caller more in page faults than the copy itself.
"""

from __future__ import annotations

import os
from typing import Any

from tracklet.media import buffers


class TorchCopy:
    """A torch tensor's copy on the host, readable once ``event`` (if any) has completed: a numpy
    array (``array``: a CPU tensor whose dtype numpy has, copied into a pooled buffer) or a torch
    tensor (``tensor``)."""

    __slots__ = ("tensor", "array", "event")

    def __init__(self, tensor: Any, keep: list[Any] | None = None) -> None:
        if tensor.requires_grad:
            tensor = tensor.detach()  # (a call that releases the GIL: only when needed)
        self.event = None
        self.array: Any = None
        self.tensor: Any = None
        device = tensor.device.type
        if device == "cpu":
            if keep is not None:
                self.array = buffers.tensor_as_array(tensor)
            if self.array is not None:
                self.array = buffers.copy_array(self.array, keep if keep is not None else [])
            else:
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
        if self.array is not None:
            return int(self.array.nbytes)
        return int(self.tensor.numel() * self.tensor.element_size())

    def numpy(self) -> Any:
        """The copy as a numpy array (waits for the device copy, on the worker)."""
        if self.array is not None:
            return self.array
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


def snapshot(data: Any, keep: list[Any] | None = None) -> Any:
    """What the worker will read: a copy of ``data`` taken now (see the module docstring). With
    ``keep``, arrays and CPU tensors are copied into pooled buffers, appended to ``keep``: its
    owner gives them back (``buffers.release``) once nothing reads the copy any more."""
    root = _root(data)
    if root == "numpy":
        if keep is not None and type(data).__name__ == "ndarray":
            return buffers.copy_array(data, keep)
        return data.copy() if hasattr(data, "copy") else data
    if root == "torch" and hasattr(data, "detach"):
        return TorchCopy(data, keep)
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

    if isinstance(data, (TorchCopy, buffers.PooledCopy)):
        return data.numpy()
    return np.asarray(data)


def is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))
