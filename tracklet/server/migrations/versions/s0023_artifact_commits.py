"""Every commit id a server on PostgreSQL answered, in a table of its own (artifact_commits): the
version each commit answered (the one it made, or the latest it reused because that had its
content), looked up by its primary key (project, name, commit_id) when a commit is sent again. It
replaces two lookups: s0022's ``artifact_versions.commit_id`` (no index: a scan of the
collection's versions) and, for an id that made no version, a hidden ``artifact_aliases`` row named
``#commit:<id>`` (which every alias reader had to filter out).

The upgrade copies each version's ``commit_id`` (the collection's lowest version with it; its
run and time) and moves each ``#commit:<id>`` row (its run was not recorded: NULL, answered to any
sender of the id, as the row was) into the table, and deletes those rows from artifact_aliases.
``artifact_versions.commit_id`` stays (a field of the version, ``VersionInfo.commit_id``), no longer
looked up. The downgrade writes the ids that made no version (no version of the collection has
them) back as ``#commit:<id>`` rows and drops the table; the versions' ids are in their column.

The rows go with their version by a foreign key (ON DELETE CASCADE). On SQLite (whose server keeps
its commit ids in files, leaving this table empty) a later batch migration that copies
``artifact_versions`` anew drops the old table, which deletes these rows too while foreign keys are on.

Revision ID: s0023
Revises: s0022
"""

import sqlalchemy as sa
from alembic import op

revision = "s0023"
down_revision = "s0022"
branch_labels = None
depends_on = None

COMMIT_ROW = "#commit:"  # s0022's alias row name prefix

versions = sa.table("artifact_versions", sa.column("project", sa.String), sa.column("name", sa.String),
                    sa.column("version", sa.Integer), sa.column("commit_id", sa.String),
                    sa.column("logged_by", sa.String), sa.column("created_at", sa.Float))
aliases = sa.table("artifact_aliases", sa.column("project", sa.String), sa.column("name", sa.String),
                   sa.column("alias", sa.String), sa.column("version", sa.Integer))
commits = sa.table("artifact_commits", sa.column("project", sa.String), sa.column("name", sa.String),
                   sa.column("commit_id", sa.String), sa.column("version", sa.Integer),
                   sa.column("logged_by", sa.String), sa.column("created_at", sa.Float))


def upgrade() -> None:
    op.create_table(
        "artifact_commits",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("commit_id", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("logged_by", sa.String(300), nullable=True),
        sa.Column("created_at", sa.Float, nullable=True),
        sa.ForeignKeyConstraint(["project", "name", "version"],
                                ["artifact_versions.project", "artifact_versions.name", "artifact_versions.version"],
                                name="fk_artifact_commits_version", ondelete="CASCADE"),
    )
    op.create_index("ix_artifact_commits_version", "artifact_commits", ["project", "name", "version"])
    # The ids of the versions commits made: the lowest version of its collection with the id (two
    # runs sending one id, which random ids never do, made two).
    lower = versions.alias("lower")
    op.execute(commits.insert().from_select(
        ["project", "name", "commit_id", "version", "logged_by", "created_at"],
        sa.select(versions.c.project, versions.c.name, versions.c.commit_id, versions.c.version,
                  versions.c.logged_by, versions.c.created_at).where(
            versions.c.commit_id.is_not(None),
            ~sa.exists().where(lower.c.project == versions.c.project, lower.c.name == versions.c.name,
                               lower.c.commit_id == versions.c.commit_id, lower.c.version < versions.c.version))))
    # The ids of commits that made none (an alias row each, deleted with its version, so its version
    # is there; joined anyway), unless a version made with the id is recorded above.
    commit_id = sa.func.substr(aliases.c.alias, len(COMMIT_ROW) + 1)
    op.execute(commits.insert().from_select(
        ["project", "name", "commit_id", "version", "logged_by", "created_at"],
        sa.select(aliases.c.project, aliases.c.name, commit_id, aliases.c.version,
                  sa.null(), sa.null()).select_from(aliases.join(versions, sa.and_(
                      versions.c.project == aliases.c.project, versions.c.name == aliases.c.name,
                      versions.c.version == aliases.c.version))).where(
            aliases.c.alias.startswith(COMMIT_ROW, autoescape=True),
            ~sa.exists().where(commits.c.project == aliases.c.project, commits.c.name == aliases.c.name,
                               commits.c.commit_id == commit_id))))
    op.execute(aliases.delete().where(aliases.c.alias.startswith(COMMIT_ROW, autoescape=True)))


def downgrade() -> None:
    # s0022 finds a made version's id in its column; an id that made none goes back to its alias row.
    op.execute(aliases.insert().from_select(
        ["project", "name", "alias", "version"],
        sa.select(commits.c.project, commits.c.name, sa.literal(COMMIT_ROW, sa.String) + commits.c.commit_id,
                  commits.c.version).where(
            ~sa.exists().where(versions.c.project == commits.c.project, versions.c.name == commits.c.name,
                               versions.c.commit_id == commits.c.commit_id))))
    op.drop_index("ix_artifact_commits_version", table_name="artifact_commits")
    op.drop_table("artifact_commits")
