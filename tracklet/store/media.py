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

from tracklet.store.schema import Json, metadata, project_id_of, projects, runs
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


def stored_key(key: str) -> str:
    """A media key as ``media_rows`` stores it (NUL as U+FFFD, at most 1,024 characters): what a
    query for ``key`` compares (PostgreSQL's driver refuses a NUL in a text parameter: a 500)."""
    return fit(store_text(key), 1024)


PAST_EVERY_STEP = 2**63  # a first kept step past every step (int64): the key retired whole


def _stored_cutoffs(retired: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """A retention's keys (``media.retention``: as logged) as the store keeps them, each first
    kept step at most ``PAST_EVERY_STEP``: a prune of a key last logged at step 2**63 - 1 retires
    it from 2**63, and a retention file may hold any int; none of those may reach a query as a
    bound parameter (both stores' integers are int64), so the queries below test for it first."""
    return {run_id: {stored_key(key): min(int(step), PAST_EVERY_STEP) for key, step in cutoffs.items()}
            for run_id, cutoffs in retired.items()}


def media_of_run(engine: sa.Engine, project: str, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
    """A run's media rows (every key, or ``key``'s), by step, then place in the list, then log order."""
    stmt = (
        sa.select(*(c for c in media.c if c.name != "run_pk"))
        .select_from(media.join(runs, runs.c.id == media.c.run_pk).join(projects, projects.c.id == runs.c.project_id))
        .where(projects.c.name == project, runs.c.run_id == run_id)
        .order_by(media.c.step, media.c.key, media.c.idx, media.c.seq)
    )
    if key is not None:
        stmt = stmt.where(media.c.key == stored_key(key))
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(stmt).mappings()]


# --- Across runs (the dashboard's Compare tab: docs/dashboard.md) ------------------------------------------------
# Every query below seeks the (run_pk, key, step) index: a step slider over runs of thousands of
# logged steps reads the items of one step per run, never a run's whole list.

Retired = dict[str, dict[str, int]]  # run id -> media key -> first kept step (``media.retention``)


def run_pks(connection: sa.Connection, project: str, run_ids: list[str]) -> dict[str, int]:
    """The store's keys of the project's (not deleted) runs among ``run_ids``; unknown ones are absent."""
    stmt = sa.select(runs.c.run_id, runs.c.id).where(
        runs.c.project_id == project_id_of(project), runs.c.run_id.in_(run_ids), runs.c.deleted.is_(False))
    return {run_id: pk for run_id, pk in connection.execute(stmt)}


def _key_summaries(connection: sa.Connection, run_pk: int, first_kept: sa.ColumnElement[int] | None,
                   keys: list[str] | None, limit: int, after: str | None = None) -> list[dict[str, Any]]:
    """Per key of one run: items, distinct steps, first and last step (from the (run_pk, key, step)
    index alone) and ``kind``, its last item's (one seek); at most ``limit`` rows, by key. Only
    ``keys`` when given; only keys after ``after`` when given; only steps at or after
    ``first_kept`` (an expression of the key) when given."""
    where = [media.c.run_pk == run_pk]
    if after is not None:
        where.append(media.c.key > after)
    if keys is not None:
        where.append(media.c.key.in_(keys))
    if first_kept is not None:
        where.append(media.c.step >= first_kept)
    grouped = (sa.select(media.c.run_pk, media.c.key, sa.func.count().label("items"),
                         sa.func.count(sa.distinct(media.c.step)).label("steps"),
                         sa.func.min(media.c.step).label("first_step"), sa.func.max(media.c.step).label("last_step"))
               .where(*where).group_by(media.c.run_pk, media.c.key).order_by(media.c.key).limit(limit)).subquery()
    last = media.alias("last_item")
    kind = (sa.select(last.c.kind).where(last.c.run_pk == grouped.c.run_pk, last.c.key == grouped.c.key,
                                         last.c.step == grouped.c.last_step).limit(1).scalar_subquery())
    stmt = sa.select(grouped, kind.label("kind")).order_by(grouped.c.key)
    return [dict(row) for row in connection.execute(stmt).mappings()]


def media_keys_of_runs(engine: sa.Engine, project: str, run_ids: list[str], retired: Retired,
                       limit: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The runs' store keys, and per (run, key): items, distinct steps, first and last step and
    ``kind`` (``_key_summaries``), less what a retention policy retired; at most ``limit`` rows, by
    key then run. A run is read by key first; only its keys (at most ``limit``) that a policy cut
    are read again, from their first kept step (one query for them all: a condition per retired
    key for every run at once made SQLite refuse the query past ~1,000 keys, "Expression tree is
    too large", and ran into the bound parameters' limit on both stores). A run's keys are read a
    page of ``limit`` at a time until ``limit`` of them survive retention or none are left, so
    ``limit`` rows back still means "there may be more" when retention retired keys whole."""
    retired = _stored_cutoffs(retired)
    with engine.connect() as connection:
        pk_of = run_pks(connection, project, run_ids)
        rows: list[dict[str, Any]] = []
        for run_id, pk in pk_of.items():
            cutoffs = retired.get(run_id, {})
            kept: list[dict[str, Any]] = []
            after: str | None = None
            # Page by key until ``limit`` keys survive retention or the run has no more: a key
            # retired whole drops out of its page, and a page cut short by that said "not
            # truncated" of a run listing more than ``limit`` keys, its later keys never read.
            while len(kept) < limit:
                page = listed = _key_summaries(connection, pk, None, None, limit, after)
                cut = {row["key"]: cutoffs[row["key"]] for row in listed
                       if cutoffs.get(row["key"], 0) > row["first_step"]}
                whole = {key for key, first_kept in cut.items() if first_kept >= PAST_EVERY_STEP}
                if whole:  # retired whole past every step: gone without a query (see _stored_cutoffs)
                    listed = [row for row in listed if row["key"] not in whole]
                    cut = {key: first_kept for key, first_kept in cut.items() if key not in whole}
                if cut:
                    first_kept = sa.case(cut, value=media.c.key, else_=0)
                    again = {row["key"]: row for row in _key_summaries(connection, pk, first_kept, list(cut), limit)}
                    kept.extend(again[row["key"]] if row["key"] in cut else row for row in listed
                                if row["key"] not in cut or row["key"] in again)  # a key retired whole: gone
                else:
                    kept.extend(listed)
                if len(page) < limit:
                    break
                after = page[-1]["key"]
            rows.extend(kept[:limit])
        rows.sort(key=lambda row: (row["key"], row["run_pk"]))
        return pk_of, rows[:limit]


def media_steps(connection: sa.Connection, run_pk: int, key: str, first_kept: int) -> list[int]:
    """The distinct steps ``key`` holds items at in a run, ascending (an index-only read)."""
    stmt = (sa.select(media.c.step).where(media.c.run_pk == run_pk, media.c.key == key, media.c.step >= first_kept)
            .group_by(media.c.step).order_by(media.c.step))
    return [step for (step,) in connection.execute(stmt)]


def media_at_step(connection: sa.Connection, run_pk: int, key: str, step: int | None, first_kept: int,
                  offset: int, limit: int) -> dict[str, Any]:
    """A run's items of ``key`` at the latest step at or before ``step`` (its last step when None):
    ``step`` (None when it has none there), ``count`` (items at that step), ``first_step``,
    ``last_step``, and ``items`` (``offset``.. ``offset + limit`` of them, by place in the list)."""
    where = (media.c.run_pk == run_pk, media.c.key == key, media.c.step >= first_kept)

    def edge(*also: sa.ColumnElement[bool], last: bool) -> int | None:
        # ORDER BY ... LIMIT 1, not min()/max(): SQLite seeks the index for a lone min or max
        # only, and scans the range for both at once or for a max under a range condition.
        order = media.c.step.desc() if last else media.c.step
        return connection.execute(sa.select(media.c.step).where(*where, *also).order_by(order).limit(1)).scalar()

    first, last = edge(last=False), edge(last=True)
    shown = edge(media.c.step <= step, last=True) if step is not None else last
    answer: dict[str, Any] = {"first_step": first, "last_step": last, "step": shown, "count": 0, "items": []}
    if shown is None:
        return answer
    at = (*where, media.c.step == shown)
    answer["count"] = connection.execute(sa.select(sa.func.count()).where(*at)).scalar() or 0
    stmt = (sa.select(*(c for c in media.c if c.name != "run_pk")).where(*at)
            .order_by(media.c.idx, media.c.seq).offset(offset).limit(limit))
    answer["items"] = [dict(row) for row in connection.execute(stmt).mappings()]
    return answer


def media_grid(engine: sa.Engine, project: str, run_ids: list[str], key: str, step: int | None, retired: Retired,
               offset: int, limit: int, with_steps: bool) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The runs' store keys, and for each known run (in ``run_ids``' order) ``media_at_step``'s
    answer with its ``run_id`` and, ``with_steps``, its ``steps`` (``media_steps``)."""
    key, retired = stored_key(key), _stored_cutoffs(retired)
    with engine.connect() as connection:
        pk_of = run_pks(connection, project, run_ids)
        answers: list[dict[str, Any]] = []
        for run_id in run_ids:
            if run_id not in pk_of:
                continue
            first_kept = retired.get(run_id, {}).get(key, 0)
            if first_kept >= PAST_EVERY_STEP:  # retired whole (see _stored_cutoffs)
                answers.append({"run_id": run_id, "first_step": None, "last_step": None, "step": None, "count": 0,
                                "items": [], "steps": [] if with_steps else None})
                continue
            answer = media_at_step(connection, pk_of[run_id], key, step, first_kept, offset, limit)
            answer["run_id"] = run_id
            answer["steps"] = media_steps(connection, pk_of[run_id], key, first_kept) if with_steps else None
            answers.append(answer)
        return pk_of, answers


def media_naming(engine: sa.Engine, project: str, run_id: str, digest: str) -> list[dict[str, Any]]:
    """A run's media rows that may name ``digest`` (as file, thumbnail or mask): the candidates
    ``GET .../media/{digest}`` checks, found in the database rather than by reading every row of
    the run (a run of thousands of images was read whole for each file the dashboard showed)."""
    stmt = (
        sa.select(*(c for c in media.c if c.name != "run_pk"))
        .select_from(media.join(runs, runs.c.id == media.c.run_pk))
        .where(runs.c.project_id == project_id_of(project), runs.c.run_id == run_id,
               sa.or_(media.c.digest == digest, media.c.thumbnail == digest,
                      sa.cast(media.c.extra, sa.Text).contains(digest, autoescape=True)))
        .order_by(media.c.step, media.c.key, media.c.idx, media.c.seq)
    )
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(stmt).mappings()]
