"""Arrays to 8-bit (or 16-bit gray) pixels, on the worker: W&B's rules for shapes and ranges, with
every conversion that changes values said in a note (the worker warns once per key).

Shapes: H×W (gray), H×W×1/3/4, and channels first (C×H×W with C in 1, 3, 4: torch tensors always,
numpy arrays when the last axis can't be channels). Ranges: uint8 as is; bool as 0/255; uint16
gray kept as 16-bit; other integers in [0, 255] as is, else clipped; floats in [0, 1] scaled by
255, in [-1, 1] mapped from (x + 1) * 127.5, anything else clipped to [0, 255]; NaN becomes 0.
"""

from __future__ import annotations

from typing import Any

from tracklet.media.base import MediaError


def channels_last(array: Any, channels_first: bool) -> Any:
    """An image array as H×W or H×W×C (C in 3, 4); ``MediaError`` for any other shape."""
    import numpy as np

    shape = tuple(array.shape)
    if array.ndim == 3 and (channels_first or (shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4))):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or array.size == 0:
        raise MediaError(f"an image must be H×W, H×W×1/3/4 or C×H×W (C: 1, 3 or 4) and not empty; got shape "
                         f"{shape}")
    return array


def to_pixels(array: Any, notes: list[str], *, normalize: bool = True, keep_16_bit: bool = True) -> Any:
    """``array``'s values as uint8 (or uint16 for a 16-bit gray image), converted by W&B's rules."""
    import numpy as np

    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "b":
        return array.astype(np.uint8) * 255
    if keep_16_bit and array.dtype == np.uint16 and array.ndim == 2:
        return array
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            notes.append(f"{array.dtype} values in [{low}, {high}] were clipped to [0, 255]")
            array = np.clip(array, 0, 255)
        return array.astype(np.uint8)
    if kind == "f":
        array = array.astype(np.float64)
        finite = np.isfinite(array)
        if not finite.all():
            notes.append(f"{array.size - int(finite.sum())} NaN or infinite value(s) became 0")
            array = np.where(finite, array, 0.0)
        flow, fhigh = float(array.min()), float(array.max())
        if normalize and flow >= 0.0 and fhigh <= 1.0:
            return np.rint(array * 255.0).astype(np.uint8)
        if normalize and flow >= -1.0 and fhigh <= 1.0:
            return np.rint((array + 1.0) * 127.5).astype(np.uint8)
        if flow < 0.0 or fhigh > 255.0:
            notes.append(f"float values in [{flow:g}, {fhigh:g}] (outside [0, 1] and [-1, 1]) were read as 0-255 "
                         "and clipped to [0, 255]")
        return np.clip(np.rint(array), 0, 255).astype(np.uint8)
    raise MediaError(f"an image's values must be numbers; got dtype {array.dtype}")


def pil_image(array: Any) -> Any:
    """A Pillow image of an H×W / H×W×3 / H×W×4 uint8 (or H×W uint16: mode I;16) array."""
    import numpy as np
    from PIL import Image as PILImage

    return PILImage.fromarray(np.ascontiguousarray(array))
