"""Logged media in the store: ``media``, one row per ``MediaLogged`` record of a run's log (an
image, audio clip, video, ... and where its blob is), numbered in log order like alerts. Derived
from the record logs (``tracklet index --rebuild`` rebuilds it); the files themselves are blobs of
the artifacts' store (docs/media.md). Lets a server or dashboard list a run's media by key and
step without replaying its log."""

from __future__ import annotations

import math
import re
from typing import Any

import sqlalchemy as sa

from tracklet.store.schema import Json, metadata, projects, runs
from tracklet.store.text import fit, store_text

media = sa.Table(
    "media",
    metadata,
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(1024), nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),  # place in a list logged under the key
    sa.Column("kind", sa.String(16), nullable=False),  # "image", "audio", "video", "html", "plotly", "object3d", "molecule"
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("mime", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("caption", sa.Text, nullable=False),
    sa.Column("thumbnail", sa.String(64), nullable=False),  # digest of the thumbnail PNG, "" if none
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("extra", Json, nullable=False, default=dict),  # masks (name, digest), box groups (name, count)
    sa.Index("ix_media_run_key_step", "run_pk", "key", "step"),
)

MEDIA_KINDS = frozenset({"media"})
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MAX_EXTRA = 64  # masks or box groups listed per item
_MAX_BOXES = 1000  # boxes kept per group (the record log keeps them all)
_MAX_LABELS = 1000  # class labels kept per mask or box group


def _labels(labels: Any) -> dict[str, str]:
    return {str(int(k)): fit(store_text(v), 256) for k, v in list(labels.items())[:_MAX_LABELS]}


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _box(box: Any) -> dict[str, Any]:
    return {"min_x": _finite(box.min_x), "max_x": _finite(box.max_x), "min_y": _finite(box.min_y),
            "max_y": _finite(box.max_y), "pixel": box.pixel, "class_id": box.class_id,
            "caption": fit(store_text(box.caption), 256),
            "scores": {fit(store_text(k), 64): _finite(v) for k, v in list(box.scores.items())[:16]}}


def _digest(text: str) -> str:
    """A sha256 in hex, or "" (a record log is read from disk: nothing else becomes a blob path)."""
    return text if _DIGEST.fullmatch(text) else ""


def _int(value: int, limit: int = 2**31 - 1) -> int:
    return max(0, min(int(value), limit))


def media_rows(run_pk: int, messages: list[Any], after: int = 0) -> list[dict[str, Any]]:
    """``media`` rows for a run's ``MediaLogged`` messages, numbered on from its row ``after``."""
    rows = []
    for offset, message in enumerate(messages, start=1):
        extra = {
            "masks": [{"name": fit(store_text(m.name), 256), "digest": _digest(m.digest),
                       "class_labels": _labels(m.class_labels)} for m in list(message.masks)[:_MAX_EXTRA]],
            "boxes": [{"name": fit(store_text(b.name), 256), "count": len(b.boxes),
                       "boxes": [_box(box) for box in list(b.boxes)[:_MAX_BOXES]],
                       "class_labels": _labels(b.class_labels)} for b in list(message.boxes)[:_MAX_EXTRA]],
        }
        rows.append({
            "run_pk": run_pk, "seq": after + offset, "key": fit(store_text(message.key), 1024),
            "step": message.step, "idx": _int(message.index), "kind": fit(store_text(message.kind), 16),
            "digest": _digest(message.digest), "format": fit(store_text(message.format), 16),
            "mime": fit(store_text(message.mime), 64), "size_bytes": _int(message.size_bytes, 2**63 - 1),
            "width": _int(message.width), "height": _int(message.height),
            "duration": message.duration if math.isfinite(message.duration) else 0.0,
            "caption": store_text(message.caption)[:4096], "thumbnail": _digest(message.thumbnail_digest),
            "time": message.time if math.isfinite(message.time) else 0.0, "extra": extra,
        })
    return rows


def write_media(connection: sa.Connection, run_pk: int, messages: list[Any]) -> None:
    """Append a run's new media rows after its last stored one."""
    last = connection.execute(sa.select(sa.func.max(media.c.seq)).where(media.c.run_pk == run_pk)).scalar() or 0
    connection.execute(media.insert(), media_rows(run_pk, messages, last))


def media_of_run(engine: sa.Engine, project: str, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
    """A run's media rows (every key, or ``key``'s), by step, then place in the list, then log order."""
    stmt = (
        sa.select(*(c for c in media.c if c.name != "run_pk"))
        .select_from(media.join(runs, runs.c.id == media.c.run_pk).join(projects, projects.c.id == runs.c.project_id))
        .where(projects.c.name == project, runs.c.run_id == run_id)
        .order_by(media.c.step, media.c.key, media.c.idx, media.c.seq)
    )
    if key is not None:
        stmt = stmt.where(media.c.key == key)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(stmt).mappings()]
