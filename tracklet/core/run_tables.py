"""How a run's logged tables are named as artifact versions, as W&B names them: a table logged
under ``key`` by run ``<id>`` is version ``v<n>`` (the n-th log of that key by the run, from 0)
of artifact ``run-<id>-<key>``, type ``run_table`` (docs/tables.md#lineage). tracklet keeps the
tables in the run's record log; the store indexes each log as a ``logged`` lineage edge under
that name (``store/lineage.py``), and a run that uses one records an ``ArtifactUsed`` naming it."""

from __future__ import annotations

import re

RUN_TABLE_TYPE = "run_table"


def table_artifact_name(run_id: str, key: str) -> str:
    """The name W&B gives the artifact of a table logged under ``key``: ``run-<run id>-<key>``,
    or, when that has characters an artifact name can't (``/`` in ``val/preds``, a space), those
    left out and a 6-character suffix (the CRC-32 of the full name, url-safe base64) added, as
    W&B's ``sanitize_artifact_name`` (``wandb/sdk/artifacts/_internal_artifact.py``) does:
    ``run-<id>-valpreds-<crc>``."""
    import base64
    import zlib

    name = f"run-{run_id}-{key}"
    sanitized = re.sub(r"[^a-zA-Z0-9_\-.]+", "", name)
    if sanitized == name:
        return name
    crc = zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF
    return f"{sanitized}-{base64.urlsafe_b64encode(crc.to_bytes(4, 'big')).rstrip(b'=').decode('ascii')}"


__all__ = ["RUN_TABLE_TYPE", "table_artifact_name"]
