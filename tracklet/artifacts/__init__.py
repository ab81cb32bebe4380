"""Artifacts: versioned, content-addressed sets of files (datasets, models) with lineage (issue #15).

    artifact = tracklet.Artifact("mnist", type="dataset")
    artifact.add_dir("data/mnist")
    run.log_artifact(artifact, aliases=["best"])      # returns at once; stored in the background
    dataset = run.use_artifact("mnist:latest")         # recorded as this run's input
    path = dataset.download()

Layers: ``names`` (what may be named), ``manifest`` (W&B's shape, sha256), ``hashing`` (thread
pool + stat cache), ``blobs`` (the CAS through fsspec), ``registry`` (versions and aliases),
``storage`` (commit and download), ``artifact`` (the user's object), ``worker`` (a run's
background committer), ``lookup`` and ``lineage`` (reading). ``chunking`` cuts large files into
content-defined chunks; ``packs`` stores those chunks in packs and rebuilds files from them
(``storage`` stores every file of 64 MiB and more that way). ``gc`` removes what no version
references; ``cache`` is the size-capped LRU cache for blobs fetched from a server; ``sizes``
parses ``64MiB``/``5%``/``1d``. Nothing in ``tracklet.core`` imports this package at module level.
See docs/artifacts.md.
"""

from __future__ import annotations

from tracklet.artifacts.artifact import Artifact
from tracklet.artifacts.manifest import Manifest, ManifestEntry
from tracklet.errors import ArtifactError, ArtifactNameError, ArtifactNotFound, ArtifactVerifyError, UnsupportedReference

__all__ = ["Artifact", "ArtifactError", "ArtifactNameError", "ArtifactNotFound", "ArtifactVerifyError", "Manifest",
           "ManifestEntry", "UnsupportedReference"]
