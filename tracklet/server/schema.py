"""The tracking server's own tables: what no record log holds, so nothing can rebuild it.

``users``, ``api_keys`` and ``project_members`` say who may use a server (``auth.py``);
``log_heads`` and ``log_segments`` are a scaled-out server's record log copies, the logs
themselves (``segments.py``); ``artifact_blobs`` says which artifact blobs each project holds,
``artifact_chunks`` and ``artifact_files`` which chunks and chunked files (``artifact_blobs.py``). They live in the store's database but are not the store's: the
store (``tracklet/store/schema.py``) is derived from record logs and ``tracklet index --rebuild``
re-derives it, while these are the server's data and must be backed up. They have their own
Alembic migrations (``tracklet/server/migrations/``, version table ``tracklet_server_version``),
run by ``migrate()`` after the store's, so each side's schema changes on its own.

``project_members.project_id`` refers to the store's ``projects`` (kept by a rebuild: a
project's id never changes), which is why the store is migrated first.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path

from functools import cache
from typing import Any

import sqlalchemy as sa

from tracklet.core.layout import MAX_NAME_CHARS
from tracklet.registry.tables import REGISTRY_TABLES
from tracklet.reports.tables import REPORT_TABLES

metadata = sa.MetaData()

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "tracklet_server_version"
def hold_xact_lock(connection: sa.Connection, *key: str) -> None:
    """Hold the lock named by ``key`` for the rest of ``connection``'s transaction: a transaction-
    scoped advisory lock on PostgreSQL. SQLite needs none: its one writer at a time, and a read
    snapshot it can't write from once another transaction wrote, serialize such transactions."""
    if connection.dialect.name == "postgresql":
        number = int.from_bytes(hashlib.sha256("\0".join(key).encode()).digest()[:8], "big", signed=True)
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": number})


# The advisory lock a server migration holds on PostgreSQL ("tracklet" + 1; the store's is "tracklet").
MIGRATION_LOCK = 0x747261636B6C6575

# Who may use a tracking server (auth.py).
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),  # a server admin: every project
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),  # the key's public part, for lookup
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),  # SHA-256 hex of the secret part
    sa.Column("label", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_api_keys_user", "user_id"),
)

project_members = sa.Table(
    "project_members",
    metadata,
    # The store's projects.id (a foreign key in the database; named by string, as the store's
    # tables are not in this metadata).
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),  # "read", "write" or "admin"
)

# A scaled-out server's record log copies (segments.py): each run's size, moved under a row lock,
# and its segments, each one immutable object in shared storage. A copy is a run's log, keyed by its
# id, or a shared run's part, keyed ``<run_id>/<label>``: a run id and a label are each at most
# MAX_NAME_CHARS (128, core/layout.py) characters, so a key is at most 257 (migration s0024: a
# longer name needs a migration too, which tests/test_server_schema.py's comparison asks for).
COPY_KEY_CHARS = 2 * MAX_NAME_CHARS + 1

log_heads = sa.Table(
    "log_heads",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(COPY_KEY_CHARS), primary_key=True),  # a run id, or <run_id>/<label> (s0024)
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),  # when the copy last grew: the run's heartbeat
)

# A run's heads in the order ``SegmentCopies.run_logs`` pages them, (project, run id, key), where a
# part's key is <run_id>/<label> (migration s0025): each keyset page reads its rows from here instead
# of sorting every head. PostgreSQL only (split_part; --logs needs PostgreSQL). Its columns never
# change once a head exists, so an append's update of size/updated_at stays a HOT update.
sa.Index("ix_log_heads_run_order", log_heads.c.project, sa.func.split_part(log_heads.c.run_id, "/", 1),
         log_heads.c.run_id).ddl_if(dialect="postgresql")

log_segments = sa.Table(
    "log_segments",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(COPY_KEY_CHARS), primary_key=True),
    sa.Column("offset", sa.BigInteger, primary_key=True),  # the segment's first byte in the log
    sa.Column("length", sa.BigInteger, nullable=False),
)

# Who created each run (run_creators.py, migration s0016): the user behind the API key of the run's
# first upload, as the server authenticated it; a run uploaded without a key (a --dev server) or
# before s0016 has no row. Keyed by names, as log_heads: the store's run rows are derived and rebuilt.
run_creators = sa.Table(
    "run_creators",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # s0020: the user's name, copied from users (a user's name never changes), so that a page of a
    # project's runs sorted by user reads this index in its order (Store.runs, JoinedSort).
    sa.Column("user_name", sa.String(128), nullable=False),
    sa.Index("ix_run_creators_user", "user_id"),
    sa.Index("ix_run_creators_project_user_run", "project", "user_name", "run_id"),
)

# Who holds each shared run's primary (primaries.py, migration s0021): the writer that claimed it
# (its random token, host and pid; the token is never shown). The primary key makes the first claim
# win across server processes and nodes; a takeover is a compare-and-set on the token.
run_primaries = sa.Table(
    "run_primaries",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)

# Which artifact blobs each project holds (artifact_blobs.py): a project sees only blobs someone with
# write access to it sent, whatever the shared blob store holds.
artifact_blobs = sa.Table(
    "artifact_blobs",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(64), primary_key=True),  # sha256 hex
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Migration s0019: every project's grant of a digest, or of a digest prefix (server artifact-gc, the
    # "does any project hold it?" checks before a removal).
    sa.Index("ix_artifact_blobs_digest", "digest"),
)

# Chunks of large files each project holds (artifact_blobs.py): sent in packs (``packs/ab/<id>.pack``
# beside ``blobs/``), every chunk's blake3 checked on arrival; a project sees only its own.
artifact_chunks = sa.Table(
    "artifact_chunks",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("chunk_id", sa.String(64), primary_key=True),  # blake3 hex
    sa.Column("pack_id", sa.String(64), nullable=False),
    sa.Column("pack_offset", sa.BigInteger, nullable=False),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),  # when sent or last referenced (garbage collection)
    sa.Index("ix_artifact_chunks_pack", "pack_id"),
)

# Large files each project holds as chunks: the file's digest (blake3:<hex>, or a sha256 from before
# that rule: tracklet.core.digests) -> its recipe blob, recorded once the server rebuilt the
# file from the project's chunks and it hashed to that digest.
artifact_files = sa.Table(
    "artifact_files",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(71), primary_key=True),  # blake3:<hex> (or an old sha256 hex) of the whole file
    sa.Column("recipe", sa.String(64), nullable=False),  # sha256 of the recipe blob
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Small blobs stored inside packs (artifact_blobs.py, "Packed blobs"): where the bytes of blob ``digest``
# are, whichever projects hold it (``artifact_blobs`` says who may read it). The store is shared, so a
# placement is not per project; a blob with no placement is one object ``blobs/sha256/ab/<digest>``.
artifact_packed_blobs = sa.Table(
    "artifact_packed_blobs",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # sha256 hex of the blob
    sa.Column("pack_id", sa.String(64), nullable=False),
    sa.Column("pack_offset", sa.BigInteger, nullable=False),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("member", sa.String(64), nullable=False),  # blake3 hex: the blob's id in the pack's index
    sa.Column("created_at", sa.Float, nullable=False),  # when stored or last re-sent (garbage collection)
    sa.Index("ix_artifact_packed_blobs_pack", "pack_id"),
)

# Artifact versions and aliases of a server on PostgreSQL (artifact_registry_sql.py; on SQLite the
# server keeps them as files, artifacts/registry.py).
artifact_versions = sa.Table(
    "artifact_versions",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 over the sorted path:digest lines
    sa.Column("manifest", sa.String(64), nullable=False),  # sha256 of the manifest blob
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("file_count", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("logged_by", sa.String(300), nullable=True),  # project/run_id
    # Migration s0017: the logging run's last history step (W&B's history_step; NULL: logged outside
    # a run, or committed before s0017) and the version's tags (a JSON list; NULL: none).
    sa.Column("history_step", sa.BigInteger, nullable=True),
    sa.Column("tags", sa.Text, nullable=True),
    # Migration s0022: the id of the commit that made the version (32 hex digits its client drew
    # once per logged version; NULL: committed before s0022 or by an older client), a field of the
    # version (``VersionInfo.commit_id``). A commit sent again is looked up in ``artifact_commits``
    # (s0023, which copied these ids there), not by this column.
    sa.Column("commit_id", sa.String(32), nullable=True),
)

# Every commit id a server's commit carried (PostgreSQL; migration s0023): the version the commit
# answered, the one it made or the latest it reused (the latest had its content), so the same commit
# sent again (its answer lost, a repeated ``tracklet sync``) is answered the same, whatever landed
# since (``SqlRegistry.commit``). An id is its collection's: the primary key is the lookup, and a
# commit to another collection or project never meets it. ``logged_by``: the run that sent it
# (NULL: sent outside a run, or recorded before s0023 without its run: any sender of the id is
# answered). ``created_at``: when it was recorded (NULL: before s0023, for an id that made no
# version). A row goes with its version (the foreign key's ON DELETE CASCADE), so the id of a
# deleted version's commit, sent again, is a new commit. On SQLite the server keeps them in each
# collection's ``commits/<id>.json`` (artifacts/registry.py).
artifact_commits = sa.Table(
    "artifact_commits",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("commit_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("logged_by", sa.String(300), nullable=True),
    sa.Column("created_at", sa.Float, nullable=True),
    sa.ForeignKeyConstraint(["project", "name", "version"],
                            ["artifact_versions.project", "artifact_versions.name", "artifact_versions.version"],
                            name="fk_artifact_commits_version", ondelete="CASCADE"),
    # The deletion of a version finds its rows by it (PostgreSQL indexes no referencing columns).
    sa.Index("ix_artifact_commits_version", "project", "name", "version"),
)

artifact_aliases = sa.Table(
    "artifact_aliases",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

# A deleted version (PostgreSQL; migration s0015): its number is never given again, as the
# ``vN.deleted`` tombstone file does on SQLite (artifacts/registry.py).
artifact_deleted_versions = sa.Table(
    "artifact_deleted_versions",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("manifest", sa.String(64), nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=False),
)

# An artifact collection's own description and tags (PostgreSQL; migration s0018): W&B's
# ``ArtifactCollection.description``/``.tags``, apart from its versions'; a row only once edited,
# deleted with the collection. On SQLite the server keeps them in collection.json (artifacts/registry.py).
artifact_collections = sa.Table(
    "artifact_collections",
    metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),  # a JSON list
    sa.Column("updated_at", sa.Float, nullable=False),
)

# The model registry's tables (migration s0003, server/routes_registry.py) are defined once, in
# tracklet/registry/tables.py (a data root keeps the same ones in its registry.sqlite), and copied here.
registry_tables = tuple(table.to_metadata(metadata) for table in REGISTRY_TABLES)
# Reports, their append-only versions and view tokens (migration s0008, server/routes_reports.py):
# defined once in tracklet/reports/tables.py (a data root keeps them in reports.sqlite), copied here.
report_tables = tuple(table.to_metadata(metadata) for table in REPORT_TABLES)

# Registry roles (migration s0009, server/registry_roles.py): a user's role in one registry of the
# model registry, ordered viewer < member < admin. A server admin is every registry's admin.
registry_members = sa.Table(
    "registry_members",
    metadata,
    sa.Column("registry", sa.String(128), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),  # "viewer", "member" or "admin"
)

# A protected registry alias's webhook check (server/registry_checks.py): the automation (a webhook
# rule a server admin made) that must answer 2xx before an approved promotion moves the alias.
registry_checks = sa.Table(
    "registry_checks",
    metadata,
    sa.Column("registry", sa.String(128), primary_key=True),
    sa.Column("collection", sa.String(128), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("automation_id", sa.Integer, sa.ForeignKey("automations.id"), nullable=False),
    sa.Column("timeout", sa.Float, nullable=False, server_default="10"),  # seconds (s0010)
)

# 64-bit ids on PostgreSQL; SQLite's rowid alias must be declared INTEGER to autoincrement.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Compared by code point on both backends (SQLite's default; PostgreSQL's "C" collation), so a
# prefix is an index range whatever the database's collation.
CodeTarget = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")

# The audit log (audit.py): one row per mutating API call, append-only (triggers refuse UPDATE and
# DELETE on both backends; migration s0004). Read in (time, id) order: indexed for filters by actor,
# action, project and time, each ending in (time, id), and by target prefix.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("time", sa.Float, nullable=False),  # when the response was decided (Unix seconds)
    sa.Column("actor", sa.String(128), nullable=True),  # user name; None: not authenticated
    sa.Column("key_id", sa.String(32), nullable=True),  # the API key used
    sa.Column("action", sa.String(128), nullable=False),  # the route's name, e.g. create_key
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("target", CodeTarget, nullable=False),  # what it acted on: the path below /api/v1/
    sa.Column("project", sa.String(128), nullable=True),
    sa.Column("client", sa.String(64), nullable=True),  # the client's address
    sa.Column("status", sa.Integer, nullable=False),  # the HTTP status answered
    sa.Column("outcome", sa.String(16), nullable=False),  # ok, denied (401/403), rejected (4xx), error (5xx)
    sa.Column("detail", sa.Text, nullable=True),  # JSON the route added (audit.note)
    sa.Index("ix_audit_events_time", "time", "id"),
    sa.Index("ix_audit_events_actor", "actor", "time", "id"),
    sa.Index("ix_audit_events_action", "action", "time", "id"),
    sa.Index("ix_audit_events_project", "project", "time", "id"),
    sa.Index("ix_audit_events_target", "target", "time", "id"),
)

# Audit intents (audit.py, migration s0012): the event of a mutating request whose change is not a
# row of this database (files), committed before the change and deleted in the transaction that
# writes the request's audit event; one left by a process that died becomes an ``unknown`` event.
audit_intents = sa.Table(
    "audit_intents",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("time", sa.Float, nullable=False),  # when the change was about to be made
    sa.Column("owner", sa.String(256), nullable=False),  # the server process: host:pid:start time
    sa.Column("event", sa.Text, nullable=False),  # JSON: the audit event's columns but id, status, outcome
    sa.Index("ix_audit_intents_owner", "owner"),
)

# The events outbox (events.py): what happened, written with the mutation where it can be, read by
# the automations worker; ``dedupe`` makes an event derived from ingested data (a run finished, an
# alert, a threshold crossed) happen once however often it is derived.
event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),  # e.g. artifact.version, run.finished, run.alert
    sa.Column("subject", sa.String(1024), nullable=False),  # e.g. project/run_id, project/name:v3
    sa.Column("project", sa.String(128), nullable=True),
    sa.Column("actor", sa.String(128), nullable=True),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    sa.Column("dedupe", sa.String(512), nullable=True, unique=True),
    sa.Column("dispatched", sa.Boolean, nullable=False, default=False),  # deliveries made for it
    sa.Index("ix_event_outbox_pending", "dispatched", "id"),
)

# Automations (automations.py): rules, one delivery per (event, rule), and each attempt.
automations = sa.Table(
    "automations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("event", sa.String(64), nullable=False),  # an event kind, or "*"
    sa.Column("filter", sa.Text, nullable=False),  # JSON: project, subject_prefix, metric/op/value, level
    sa.Column("action", sa.String(16), nullable=False),  # webhook or slack
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(128), nullable=False),  # the webhook's HMAC key (needed in clear to sign)
    sa.Column("created_by", sa.String(128), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=True),  # removed rules keep their delivery log
)

automation_deliveries = sa.Table(
    "automation_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("event_id", sa.BigInteger, sa.ForeignKey("event_outbox.id"), nullable=False),
    sa.Column("automation_id", sa.Integer, sa.ForeignKey("automations.id"), nullable=False),
    sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),  # pending, delivered, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Float, nullable=False),  # also the lease of the process sending it
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.UniqueConstraint("event_id", "automation_id", name="uq_automation_deliveries_event"),
    sa.Index("ix_automation_deliveries_due", "state", "next_attempt_at"),
    sa.Index("ix_automation_deliveries_rule", "automation_id", "id"),
)

automation_attempts = sa.Table(
    "automation_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("delivery_id", sa.BigInteger, sa.ForeignKey("automation_deliveries.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),  # the receiver's HTTP status; None: no answer
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Index("ix_automation_attempts_delivery", "delivery_id", "attempt"),
)

# Server-mode sweeps (sweeps_db.py): one row per sweep (its config and state as JSON; each
# controller operation holds the row's lock), its Optuna study as journal entries numbered from 0
# (appended, never changed), and a row per leased trial (renewed by a heartbeat on its own).
sweep_studies = sa.Table(
    "sweep_studies",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("project", sa.String(128), nullable=False),
    sa.Column("info", sa.Text, nullable=False),  # JSON: id, project, config, created, created_by, warm_start
    sa.Column("state", sa.Text, nullable=False),  # JSON: running/paused/stopped, run_cap
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_sweep_studies_project", "project"),
)

sweep_journal = sa.Table(
    "sweep_journal",
    metadata,
    sa.Column("sweep_id", sa.String(128), sa.ForeignKey("sweep_studies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("log", sa.Text, nullable=False),  # one JournalStorage entry (JSON)
)

sweep_leases = sa.Table(
    "sweep_leases",
    metadata,
    sa.Column("sweep_id", sa.String(128), sa.ForeignKey("sweep_studies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("trial", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),  # epoch seconds; a heartbeat moves it on
    sa.Column("record", sa.Text, nullable=False),  # JSON: ttl, the ask's request id, pruned, reported step
)

# A paged ``media prune --url`` on a --logs server between its requests (media_retention.prune_page,
# migration s0025): one row per prune (its cursor's token), and one per digest its retired items name,
# each page adding its own counts (an upsert), so a page's work is bounded by the page. A state not
# touched for PRUNE_STATE_TTL is removed by the next prune (a client that stopped midway); a finished
# prune's row stays until then with its last answer (s0026), replayed to a retry of its last page.
media_prune_states = sa.Table(
    "media_prune_states",
    metadata,
    sa.Column("token", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(128), nullable=False),
    sa.Column("policy", sa.Text, nullable=False),  # JSON: the options every page must repeat
    sa.Column("phase", sa.String(16), nullable=False),  # retire, seen, remove
    sa.Column("step", sa.Integer, nullable=False),  # pages answered: the cursor names the next
    sa.Column("after", sa.Text, nullable=False),  # the last run read in this phase
    sa.Column("done", sa.BigInteger, nullable=False),
    sa.Column("running", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("removed", sa.BigInteger, nullable=False),
    sa.Column("freed", sa.BigInteger, nullable=False),
    sa.Column("kept_shared", sa.BigInteger, nullable=False),
    sa.Column("grants", sa.BigInteger, nullable=False),
    sa.Column("kept_running", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),  # the last page's time: a state left longer expires
    sa.Column("answer", sa.Text, nullable=True),  # s0026: JSON of the page last answered (replayed to a retry)
    sa.Column("started", sa.Float, nullable=True),  # s0026: the prune's start (a grant used since is kept)
    sa.Index("ix_media_prune_states_updated", "updated_at"),
)

media_prune_digests = sa.Table(
    "media_prune_digests",
    metadata,
    sa.Column("token", sa.String(32), sa.ForeignKey("media_prune_states.token", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("wanted", sa.BigInteger, nullable=False),  # times the retired items name it
    sa.Column("named", sa.BigInteger, nullable=False),  # times every run's logs do (seen)
    sa.Column("shared", sa.Boolean, nullable=False),  # a table cell names it
)

SERVER_TABLES = (users, api_keys, project_members, log_heads, log_segments, run_creators, run_primaries, artifact_blobs, artifact_versions,
                 artifact_commits, artifact_aliases, artifact_deleted_versions, artifact_collections, artifact_chunks, artifact_files, artifact_packed_blobs, *registry_tables, registry_members,
                 registry_checks, audit_events, audit_intents, event_outbox, automations, automation_deliveries,
                 automation_attempts, sweep_studies, sweep_journal, sweep_leases, media_prune_states, media_prune_digests,
                 *report_tables)

_migrated: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
_migrating = threading.Lock()


def migrate(engine: sa.Engine) -> None:
    """Bring the server's tables to the newest revision of their own migrations (creating them,
    or adopting the ones a database made before they moved out of the store's schema). Call it
    on a store's engine (``Store(...).engine``: the store's tables exist, as the foreign key to
    ``projects`` needs); done once per engine in a process."""
    with _migrating:
        if engine in _migrated:
            return
        from tracklet.store import check_read_only_schema, is_read_only

        if is_read_only(engine):  # a data root this user can't write: read what is there (tracklet ui)
            if not check_read_only_schema(engine, MIGRATIONS, "the server's tables", "tracklet_server_version"):
                # Never served (only `tracklet index` wrote it): no sweeps, reports or grants there,
                # and queries of the tables find them empty rather than missing.
                sa.event.listen(engine, "connect", _empty_server_tables)
            _migrated.add(engine)
            return
        from alembic import command
        from alembic.config import Config

        from tracklet.store import sqlite_migration_lock

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with sqlite_migration_lock(engine), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Server processes of one deployment may start at once: one migrates, the others wait.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        _migrated.add(engine)


def _empty_server_tables(connection: Any, record: object) -> None:
    """On each connection of a read-only store without the server's tables: each made empty as a
    TEMP table (in memory; nothing is written beside the database), which unqualified names find."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute("PRAGMA query_only=OFF")  # the file itself stays opened read-only (mode=ro)
    for statement in _temp_table_statements():
        cursor.execute(statement)
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


@cache
def _temp_table_statements() -> list[str]:
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateTable

    return [str(CreateTable(table, include_foreign_key_constraints=[]).compile(dialect=sqlite.dialect()))
            .replace("CREATE TABLE", "CREATE TEMP TABLE", 1)
            for table in SERVER_TABLES]


def holds_rows(engine: sa.Engine, table: sa.Table) -> bool:
    """Whether ``table`` exists under ``engine`` and holds a row: one cheap query, for a caller
    that would otherwise import a heavy owner of the table to find it empty (``sweeps_warm``)."""
    if not sa.inspect(engine).has_table(table.name):
        return False
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None
