"""``ReportStore``: reports, their append-only versions and view tokens in SQL (``tables.py``): a
data root's ``reports.sqlite`` or a server's database.

Rules:

- every save is a new version (1, 2, ...) with its author, time and parent; nothing updates or
  deletes a version. A save names the version it was edited from (``parent``): if that is no
  longer the latest, the save is refused (``ReportConflict``), so no one overwrites an edit they
  didn't see;
- revert makes a new version equal to an old one; freeze a new version whose panels pin the runs
  their run sets match now (and the highest step those runs reached);
- publishing version N makes the report immutable: N is what it shows from then on, and saves,
  reverts, freezes and further publishing are refused (``ReportConflict``);
- view tokens (``trv_<id>_<secret>``) are kept as the SHA-256 of the secret; a revoked token stays
  listed and never works again. A token reads its own report only;
- deleting a report removes its row and its view tokens: it is gone from every listing and route
  (and its tokens stop working). Its versions stay in the append-only ``report_versions``,
  unreachable (a tombstone: what was published once is never erased from the database). A new
  report never takes a deleted one's id.

Every change starts by writing the report's row: on PostgreSQL that row lock serializes the
writers of one report, on SQLite the database's write lock does (and a process-wide lock keeps
one process's threads from contending for it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from tracklet.core import forksafe
from tracklet.errors import ReportConflict, ReportError, ReportNotFound
from tracklet.reports.document import MAX_MARKDOWN_CHARS, check_markdown, parse, serialize
from tracklet.reports.tables import report_tokens, report_versions, reports
from tracklet.reports.textdiff import unified_diff

TOKEN_PREFIX = "trv_"
MAX_TITLE_CHARS = 300
MAX_TOKENS_PER_REPORT = 1000
MAX_LISTED = 10_000
DEFAULT_TITLE = "Untitled report"

# What a freeze needs: (run set, the report's project) -> (run ids, max step); raises on a query error.
Resolver = Callable[[dict[str, Any], str], tuple[list[str], int | None]]


def _actor(actor: str | None) -> str:
    return (str(actor or "unknown")[:300]).replace("\0", "\ufffd")


def check_title(title: Any) -> str:
    """``title`` stripped, or the default for an empty one; ``ReportError`` if not text or too long."""
    if title is None:
        return DEFAULT_TITLE
    if not isinstance(title, str):
        raise ReportError(f"a report's title must be text; got {type(title).__name__}")
    title = title.strip()
    if len(title) > MAX_TITLE_CHARS:
        raise ReportError(f"a report's title may have at most {MAX_TITLE_CHARS} characters; got {len(title)}")
    if "\0" in title or "\n" in title:
        raise ReportError("a report's title is one line of text (no newline or NUL)")
    return title or DEFAULT_TITLE


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed view token; None otherwise."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or not token_id or not secret or len(token_id) > 32:
        return None
    return token_id, secret


def _engine_in_this_process(parents: sa.Engine) -> sa.Engine:
    """The engine, with a pool of this process's own (a forked child's: the parent's connections
    are left alone, never closed here, as SQLAlchemy advises)."""
    parents.dispose(close=False)
    return parents


class ReportStore:
    """Reports in the database at ``engine`` (its tables must exist: ``service.open_local``
    creates them for a data root, the server's migration for a server)."""

    # A forked child holding the store (a report built in a Pool worker) opens its own
    # connections, and its lock is free there (core/forksafe.own).
    engine = forksafe.own(lambda reports, parents: _engine_in_this_process(parents))
    _lock = forksafe.own(lambda reports, parents: threading.Lock())

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        from tracklet.store.engine import is_read_only

        if is_read_only(self.engine):  # a data root this user can't write (core/readonly.py)
            from pathlib import Path

            from tracklet.core.readonly import read_only_error

            directory = Path(self.engine.url.database or "").parent
            raise read_only_error(directory, "saving a report writes its reports.sqlite",
                                  "its reports can be read; save where you can write (--dir)")
        if self._lock is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._lock, self.engine.begin() as connection:
            yield connection

    # ------------------------------------------------------------ reading

    @staticmethod
    def _row(connection: sa.Connection, project: str, report_id: int) -> Any:
        row = connection.execute(sa.select(reports).where(reports.c.id == report_id,
                                                          reports.c.project == project)).first()
        if row is None:
            raise ReportNotFound(f"no report {report_id} in project {project!r}")
        return row

    def project_of(self, report_id: int) -> str | None:
        """The project report ``report_id`` belongs to, or None if there is no such report."""
        with self.engine.connect() as connection:
            return connection.execute(sa.select(reports.c.project).where(reports.c.id == report_id)).scalar()

    def list_reports(self, project: str | None = None, *, limit: int = MAX_LISTED) -> list[dict[str, Any]]:
        """Reports (of ``project``), most recently changed first: id, project, title, version,
        author, updated_at, published_version."""
        stmt = sa.select(reports.c.id, reports.c.project, reports.c.title, reports.c.version, reports.c.author,
                         reports.c.created_at, reports.c.updated_at, reports.c.published_version)
        if project is not None:
            stmt = stmt.where(reports.c.project == project)
        stmt = stmt.order_by(reports.c.updated_at.desc(), reports.c.id.desc()).limit(min(limit, MAX_LISTED))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def get(self, project: str, report_id: int, version: int | None = None) -> dict[str, Any]:
        """The report at ``version`` (default: the published version if there is one, else the
        latest): id, project, title, version, latest_version, parent, author, created_at,
        updated_at (when that version was saved), published_version, markdown, blocks."""
        with self.engine.connect() as connection:
            row = self._row(connection, project, report_id)
            wanted = version if version is not None else (row.published_version or row.version)
            saved = connection.execute(sa.select(report_versions).where(
                report_versions.c.report_id == report_id, report_versions.c.version == wanted)).first()
        if saved is None:
            raise ReportNotFound(f"report {report_id} has no version {wanted} (versions 1 to {row.version})")
        return {"id": row.id, "project": row.project, "title": saved.title, "version": saved.version,
                "latest_version": row.version, "parent": saved.parent, "author": saved.author,
                "created_at": row.created_at, "updated_at": saved.created_at,
                "published_version": row.published_version, "note": saved.note, "markdown": saved.markdown,
                "blocks": parse(saved.markdown).to_json()}

    def version_markdown(self, project: str, report_id: int, version: int | None = None) -> tuple[int, str]:
        """(version, markdown) of the version ``get`` would answer, without parsing it (the panel
        data routes parse through ``cache.document_of``)."""
        with self.engine.connect() as connection:
            row = self._row(connection, project, report_id)
            wanted = version if version is not None else (row.published_version or row.version)
            markdown = connection.execute(sa.select(report_versions.c.markdown).where(
                report_versions.c.report_id == report_id, report_versions.c.version == wanted)).scalar()
        if markdown is None:
            raise ReportNotFound(f"report {report_id} has no version {wanted} (versions 1 to {row.version})")
        return wanted, markdown

    def versions(self, project: str, report_id: int) -> list[dict[str, Any]]:
        """Every version, oldest first: version, parent, title, author, created_at, note."""
        with self.engine.connect() as connection:
            self._row(connection, project, report_id)
            rows = connection.execute(sa.select(
                report_versions.c.version, report_versions.c.parent, report_versions.c.title,
                report_versions.c.author, report_versions.c.created_at, report_versions.c.note,
            ).where(report_versions.c.report_id == report_id).order_by(report_versions.c.version).limit(MAX_LISTED))
            return [dict(row._mapping) for row in rows]

    def diff(self, project: str, report_id: int, a: int, b: int) -> str:
        """A unified diff of version ``a``'s markdown to version ``b``'s (the title as a first line),
        in bounded time (``textdiff.py``)."""
        old, new = self.get(project, report_id, a), self.get(project, report_id, b)

        def lines(report: dict[str, Any]) -> list[str]:
            return [f"# title: {report['title']}\n", *report["markdown"].splitlines(keepends=True)]

        return unified_diff(lines(old), lines(new), f"report {report_id} v{a}", f"report {report_id} v{b}")

    # ------------------------------------------------------------ writing

    def create(self, project: str, title: str | None, markdown: str, *, author: str | None = None) -> dict[str, Any]:
        """A new report whose version 1 is ``markdown``."""
        title, markdown = check_title(title), check_markdown(markdown)
        parse(markdown)  # too many panels: refused before anything is written
        now, author = time.time(), _actor(author)
        with self._write() as connection:
            values: dict[str, Any] = {}
            if connection.dialect.name == "sqlite":
                # SQLite reuses the highest rowid once it is deleted: never a deleted report's id,
                # whose versions are still there. (PostgreSQL's sequence never goes back.)
                values["id"] = 1 + max(
                    connection.execute(sa.select(sa.func.max(reports.c.id))).scalar() or 0,
                    connection.execute(sa.select(sa.func.max(report_versions.c.report_id))).scalar() or 0)
            key = connection.execute(reports.insert().values(
                project=project, title=title, version=1, published_version=None, author=author,
                created_at=now, updated_at=now, **values)).inserted_primary_key
            assert key is not None
            report_id = int(key[0])
            connection.execute(report_versions.insert().values(
                report_id=report_id, version=1, parent=None, title=title, markdown=markdown, author=author,
                created_at=now, note="created"))
        return self.get(project, report_id)

    def _append(self, project: str, report_id: int, *, parent: int | None, markdown: str, title: str | None,
                author: str | None, note: str) -> dict[str, Any]:
        """Version latest+1 of ``markdown``, if ``parent`` (None: whatever is latest) is the
        latest and the report isn't published."""
        markdown = check_markdown(markdown)
        parse(markdown)
        now, author = time.time(), _actor(author)
        with self._write() as connection:
            # The row lock first: concurrent saves of one report are applied one after the other.
            updated = connection.execute(reports.update().where(
                reports.c.id == report_id, reports.c.project == project).values(updated_at=now)).rowcount
            if not updated:
                raise ReportNotFound(f"no report {report_id} in project {project!r}")
            row = self._row(connection, project, report_id)
            if row.published_version is not None:
                raise ReportConflict(f"report {report_id} was published at v{row.published_version}: a published "
                                     "report is immutable (create a new report from its markdown to change it)")
            if parent is not None and parent != row.version:
                raise ReportConflict(f"report {report_id} is at v{row.version}, not v{parent}: someone saved it "
                                     "meanwhile; reload it, reapply the change, and save with parent "
                                     f"{row.version}")
            title = check_title(title) if title is not None else row.title
            version = row.version + 1
            connection.execute(report_versions.insert().values(
                report_id=report_id, version=version, parent=row.version, title=title, markdown=markdown,
                author=author, created_at=now, note=note[:300]))
            connection.execute(reports.update().where(reports.c.id == report_id).values(
                version=version, title=title, author=author))
        return self.get(project, report_id, version)

    def save(self, project: str, report_id: int, markdown: str, *, parent: int | None, title: str | None = None,
             author: str | None = None) -> dict[str, Any]:
        """A new version edited from ``parent`` (``ReportConflict`` if that isn't the latest)."""
        return self._append(project, report_id, parent=parent, markdown=markdown, title=title, author=author,
                            note="edited")

    def revert(self, project: str, report_id: int, version: int, *, author: str | None = None) -> dict[str, Any]:
        """A new version equal to ``version`` (its markdown and title)."""
        old = self.get(project, report_id, version)
        return self._append(project, report_id, parent=old["latest_version"], markdown=old["markdown"],
                            title=old["title"], author=author, note=f"reverted to v{version}")

    def publish(self, project: str, report_id: int, version: int, *, author: str | None = None,
                on_published: Callable[[sa.Connection, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Make ``version`` the report's published version; the report is immutable from then on.
        ``on_published(connection, {id, project, title, version, actor})`` runs in the publishing
        transaction (the server's ``report.published`` event commits with it, or not at all)."""
        with self._write() as connection:
            updated = connection.execute(reports.update().where(
                reports.c.id == report_id, reports.c.project == project).values(updated_at=time.time())).rowcount
            if not updated:
                raise ReportNotFound(f"no report {report_id} in project {project!r}")
            row = self._row(connection, project, report_id)
            if row.published_version is not None:
                raise ReportConflict(f"report {report_id} is already published at v{row.published_version}")
            if not 1 <= version <= row.version:
                raise ReportNotFound(f"report {report_id} has no version {version} (versions 1 to {row.version})")
            connection.execute(reports.update().where(reports.c.id == report_id).values(published_version=version))
            if on_published is not None:
                title = connection.execute(sa.select(report_versions.c.title).where(
                    report_versions.c.report_id == report_id, report_versions.c.version == version)).scalar()
                on_published(connection, {"id": report_id, "project": project, "title": title, "version": version,
                                          "actor": _actor(author)})
        return self.get(project, report_id, version)

    def freeze(self, project: str, report_id: int, resolve: Resolver, *, author: str | None = None
               ) -> dict[str, Any]:
        """A new version in which every live panel's run set is pinned (``runs.frozen``: the run
        ids it matches now and the highest step they reached); panels already frozen or with an
        error stay as they are. The current report if there was nothing to freeze."""
        current = self.get(project, report_id, None)
        if current["published_version"] is not None:
            raise ReportConflict(f"report {report_id} was published at v{current['published_version']}: a "
                                 "published report is immutable")
        current = self.get(project, report_id, current["latest_version"])
        document = parse(current["markdown"])
        changed = False
        for position, block in enumerate(document.blocks):
            if block.kind != "panel" or block.error is not None or block.runs.get("frozen"):  # type: ignore[union-attr]
                continue
            runs = dict(block.runs)  # type: ignore[union-attr]
            run_ids, max_step = resolve(runs, project)
            runs["frozen"] = {"run_ids": run_ids, "max_step": max_step}
            document.blocks[position] = block.with_spec(block.spec, runs)  # type: ignore[union-attr]
            changed = True
        if not changed:
            return current
        markdown = serialize(document.blocks)
        if len(markdown) > MAX_MARKDOWN_CHARS:
            raise ReportError(f"report {report_id} frozen would exceed {MAX_MARKDOWN_CHARS} characters")
        return self._append(project, report_id, parent=current["version"], markdown=markdown, title=None,
                            author=author, note="froze run sets")

    def delete(self, project: str, report_id: int, *,
               allow_published: Callable[[int], bool] | None = None) -> dict[str, Any]:
        """Delete the report (its row and view tokens; its versions stay, unreachable): what it
        was (``{id, project, title, version, published_version}``). A published report only if
        ``allow_published(published_version)`` says so (``ReportConflict`` otherwise); None
        allows it."""
        with self._write() as connection:
            row = self._row(connection, project, report_id)
            if row.published_version is not None and allow_published is not None \
                    and not allow_published(row.published_version):
                raise ReportConflict(f"report {report_id} was published at v{row.published_version}: only a project "
                                     "admin may delete a published report")
            connection.execute(report_tokens.delete().where(report_tokens.c.report_id == report_id))
            connection.execute(reports.delete().where(reports.c.id == report_id, reports.c.project == project))
        return {"id": row.id, "project": row.project, "title": row.title, "version": row.version,
                "published_version": row.published_version}

    # ------------------------------------------------------------ view tokens

    def create_token(self, project: str, report_id: int, *, author: str | None = None, label: str = ""
                     ) -> dict[str, Any]:
        """A new view token of the report: ``{token_id, token}`` (the only time the secret is seen)."""
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        label = str(label or "")[:300].replace("\0", "\ufffd")
        with self._write() as connection:
            self._row(connection, project, report_id)
            count = connection.execute(sa.select(sa.func.count()).select_from(report_tokens).where(
                report_tokens.c.report_id == report_id)).scalar()
            if (count or 0) >= MAX_TOKENS_PER_REPORT:
                raise ReportError(f"report {report_id} has {count} view tokens: the most it may have")
            connection.execute(report_tokens.insert().values(
                token_id=token_id, report_id=report_id, secret_sha256=_hash(secret), label=label,
                created_by=_actor(author), created_at=time.time(), revoked_at=None))
        return {"token_id": token_id, "token": f"{TOKEN_PREFIX}{token_id}_{secret}"}

    def tokens(self, project: str, report_id: int) -> list[dict[str, Any]]:
        """The report's tokens, revoked ones too (never their secrets)."""
        with self.engine.connect() as connection:
            self._row(connection, project, report_id)
            rows = connection.execute(sa.select(
                report_tokens.c.token_id, report_tokens.c.label, report_tokens.c.created_by,
                report_tokens.c.created_at, report_tokens.c.revoked_at,
            ).where(report_tokens.c.report_id == report_id).order_by(report_tokens.c.created_at))
            return [dict(row._mapping) for row in rows]

    def revoke_token(self, project: str, report_id: int, token_id: str) -> None:
        with self._write() as connection:
            self._row(connection, project, report_id)
            updated = connection.execute(report_tokens.update().where(
                report_tokens.c.token_id == token_id, report_tokens.c.report_id == report_id,
                report_tokens.c.revoked_at.is_(None)).values(revoked_at=time.time())).rowcount
            if not updated:
                exists = connection.execute(sa.select(report_tokens.c.token_id).where(
                    report_tokens.c.token_id == token_id, report_tokens.c.report_id == report_id)).first()
                if exists is None:
                    raise ReportNotFound(f"report {report_id} has no view token {token_id!r}")

    def token_allows(self, project: str, report_id: int, token: str) -> bool:
        """Whether ``token`` is a live view token of report ``report_id`` of ``project``."""
        parts = split_token(token)
        if parts is None or not isinstance(report_id, int) or not 1 <= report_id <= 2**63 - 1:
            return False  # nothing to look up (and no id past a 64-bit column reaches the database)
        token_id, secret = parts
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(report_tokens.c.secret_sha256, report_tokens.c.revoked_at)
                                     .select_from(report_tokens.join(reports, reports.c.id == report_tokens.c.report_id))
                                     .where(report_tokens.c.token_id == token_id,
                                            report_tokens.c.report_id == report_id,
                                            reports.c.project == project)).first()
        return row is not None and row.revoked_at is None and hmac.compare_digest(row.secret_sha256, _hash(secret))
