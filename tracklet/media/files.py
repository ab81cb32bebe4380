"""Media stored as files: ``tracklet.Html``, ``tracklet.Object3D`` (point clouds, meshes, scenes)
and ``tracklet.Molecule``."""

from __future__ import annotations

import io
import json
import os
from typing import Any, Mapping

from tracklet.core.logged import Placement
from tracklet.media.base import Media, MediaError, extension, read_source
from tracklet.media.snapshot import TorchCopy, is_path, nbytes, snapshot, to_numpy

OBJECT3D_FORMATS = ("obj", "gltf", "glb", "babylon", "stl", "pts.json")
MOLECULE_FORMATS = ("pdb", "pqr", "mmcif", "mcif", "cif", "sdf", "sd", "mol", "gro", "mol2", "mmtf")


class Html(Media):
    """An HTML document: its text, a path to an ``.html`` file, or a file object. Shown in a
    sandboxed frame (scripts run, but without access to the dashboard's origin)."""

    _kind = "html"

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False, caption: Any = None) -> None:
        super().__init__(caption)
        if isinstance(data, str) and not data_is_not_path and data.lower().endswith((".html", ".htm")) \
                and os.path.isfile(data):
            self._data: Any = data  # a path: read on the worker
        elif isinstance(data, str):
            self._data = data.encode("utf-8", "surrogatepass")
        else:
            self._data = snapshot(data)

    def _pending_bytes(self) -> int:
        return nbytes(self._data)

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        if isinstance(self._data, bytes):
            raw = self._data
        else:
            raw, media.source_name = read_source(self._data, "html")
        self._store(context, media, raw, "html")


class Object3D(Media):
    """A 3-D object: a point cloud (an N×3 array of x, y, z; N×4 with a category; N×6 with r, g,
    b), stored as ``.npy``; W&B's scene dict (``{"type": "lidar/beta", "points": ..., "boxes":
    ...}``), stored as ``.pts.json``; or a file (obj, gltf, glb, babylon, stl, pts.json: a path,
    or a file object with ``file_type=``), stored as it is."""

    _kind = "object3d"

    def __init__(self, data_or_path: Any, caption: Any = None, file_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(caption)
        if isinstance(data_or_path, Mapping):
            self._data: Any = json.loads(json.dumps(data_or_path, default=_plain))  # a copy, plain
        else:
            self._data = snapshot(data_or_path, self._buffers)
        self._file_type = file_type

    @classmethod
    def from_numpy(cls, data: Any, caption: Any = None) -> "Object3D":
        return cls(data, caption=caption)

    @classmethod
    def from_file(cls, data_or_path: Any, file_type: str | None = None, caption: Any = None) -> "Object3D":
        return cls(data_or_path, caption=caption, file_type=file_type)

    @classmethod
    def from_point_cloud(cls, points: Any, boxes: Any = (), vectors: Any = None,
                         point_cloud_type: str = "lidar/beta", caption: Any = None) -> "Object3D":
        scene: dict[str, Any] = {"type": point_cloud_type, "points": points, "boxes": list(boxes)}
        if vectors is not None:
            scene["vectors"] = vectors
        return cls(scene, caption=caption)

    def _pending_bytes(self) -> int:
        return nbytes(self._data)

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        import numpy as np

        data = self._data
        if isinstance(data, dict):
            self._store(context, media, json.dumps(data, separators=(",", ":")).encode(), "pts.json")
            return
        if is_path(data) or hasattr(data, "read"):
            raw, name = read_source(data, "3-D object")
            media.source_name = name
            file_format = (self._file_type or extension(name)).lower().lstrip(".")
            if file_format not in OBJECT3D_FORMATS:
                raise MediaError(f"{name or 'the file'!r} is not a 3-D file tracklet knows "
                                 f"({', '.join(OBJECT3D_FORMATS)}); pass file_type=")
            self._store(context, media, raw, file_format)
            return
        points = to_numpy(data) if isinstance(data, TorchCopy) or hasattr(data, "shape") else np.asarray(data)
        if points.ndim != 2 or points.shape[1] not in (3, 4, 6) or points.dtype.kind not in "iuf":
            raise MediaError(f"a point cloud must be an N×3, N×4 or N×6 array of numbers; got shape "
                             f"{tuple(points.shape)} of {points.dtype}")
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(points), allow_pickle=False)
        self._store(context, media, buffer.getvalue(), "npy")
        media.width = int(points.shape[0])  # points
        media.channels = int(points.shape[1])


class Molecule(Media):
    """A molecule file (pdb, pqr, mmcif, cif, sdf, mol, gro, mol2, mmtf: a path, or a file object with
    ``file_type=``), stored as it is."""

    _kind = "molecule"

    def __init__(self, data_or_path: Any, caption: Any = None, file_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(caption)
        self._data = snapshot(data_or_path, self._buffers)
        self._file_type = file_type

    @classmethod
    def from_smiles(cls, data: str, caption: Any = None, **kwargs: Any) -> "Molecule":
        raise ImportError("Molecule.from_smiles needs RDKit, which tracklet does not use; log a .pdb/.sdf file")

    @classmethod
    def from_rdkit(cls, data_or_path: Any, caption: Any = None, **kwargs: Any) -> "Molecule":
        raise ImportError("Molecule.from_rdkit needs RDKit, which tracklet does not use; log a .pdb/.sdf file")

    def _pending_bytes(self) -> int:
        return nbytes(self._data)

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        raw, name = read_source(self._data, "molecule")
        media.source_name = name
        file_format = (self._file_type or extension(name)).lower().lstrip(".")
        if file_format not in MOLECULE_FORMATS:
            raise MediaError(f"{name or 'the file'!r} is not a molecule file tracklet knows "
                             f"({', '.join(MOLECULE_FORMATS)}); pass file_type=")
        self._store(context, media, raw, file_format)


def _plain(value: Any) -> Any:
    """JSON for numpy arrays and scalars inside a scene dict."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "detach"):
        return value.detach().cpu().tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
