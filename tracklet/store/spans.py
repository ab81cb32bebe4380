"""Trace spans in the store: ``spans``, one row per span, with typed columns for what a traces
page filters and sums on (operation, provider, model, input/output tokens, status, duration) and
the raw attributes as JSON.

Two sources (``source``):

- ``"log"``: ``Span`` records of a run's record log (``@tracklet.op``), derived like every other
  table here (``tracklet index --rebuild`` rebuilds them; ``run_pk`` names the run);
- ``"otlp"``: spans a server or ``tracklet ui`` received at ``/v1/traces``. No record log holds
  these, so a rebuild keeps them (back them up with the store).

Attribute keys of the GenAI semantic conventions, OpenInference and MLflow are normalised into the
typed columns (:func:`typed_columns`; first key found wins, in the order listed). Every text passes
``store/text.py``; attributes are capped (``MAX_ATTRIBUTES`` per span, ``MAX_ATTRIBUTE_CHARS`` per
value), since OTLP bodies cross a trust boundary.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import operator
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from tracklet.store.schema import Json, metadata, project_id_of, projects, runs
from tracklet.store.text import fit, store_text

spans = sa.Table(
    "spans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # The run whose log holds the span (source "log"); None for spans received over OTLP.
    sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
    sa.Column("run_id", sa.String(128), nullable=False, default=""),  # the run named (either source)
    sa.Column("source", sa.String(8), nullable=False),  # "log" or "otlp"
    sa.Column("trace_id", sa.String(32), nullable=False),  # hex
    sa.Column("span_id", sa.String(16), nullable=False),
    sa.Column("parent_span_id", sa.String(16), nullable=False, default=""),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "internal", "server", "client", ...
    sa.Column("start_ns", sa.BigInteger, nullable=False),  # Unix epoch nanoseconds
    sa.Column("end_ns", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # "unset", "ok", "error"
    sa.Column("status_message", sa.Text, nullable=False, default=""),
    sa.Column("step", sa.BigInteger, nullable=True),
    sa.Column("operation", sa.String(64), nullable=False, default=""),
    sa.Column("provider", sa.String(64), nullable=False, default=""),
    sa.Column("model", sa.String(256), nullable=False, default=""),
    sa.Column("input_tokens", sa.BigInteger, nullable=True),
    sa.Column("output_tokens", sa.BigInteger, nullable=True),
    sa.Column("input", sa.Text, nullable=False, default=""),  # JSON text, "" if none or a blob
    sa.Column("input_blob", sa.String(64), nullable=False, default=""),  # sha256 of the JSON text
    sa.Column("output", sa.Text, nullable=False, default=""),
    sa.Column("output_blob", sa.String(64), nullable=False, default=""),
    sa.Column("attributes", Json, nullable=False, default=dict),
    sa.Column("events", Json, nullable=False, default=list),
    sa.Column("links", Json, nullable=False, default=list),
    # A span received over OTLP: its resource's and scope's attributes (``span_resources``), stored
    # once per resource, not in each span's ``attributes``; a read merges them (``with_resource``).
    # No foreign key: checking one per span cost the insert; a project's deletion removes both.
    sa.Column("resource_id", sa.Integer, nullable=True),
    sa.Index("ix_spans_project_start", "project_id", "start_ns"),
    # No index on trace_id alone: every query names the project, and the unique index below
    # serves (project, trace) (migration 0009 dropped ``ix_spans_trace``: one index less per insert).
    sa.Index("ix_spans_run_step", "run_pk", "step"),
    # A span is stored once per project: an OTLP exporter's retry of a batch the server took, or a
    # span record repeated in a log, is not a second span.
    sa.Index("uq_spans_project_trace_span", "project_id", "trace_id", "span_id", unique=True),
)

# The attributes spans received over OTLP share: ``otel.scope.name`` and the resource's, as
# ``resource.<key>`` (``tracklet/tracing/otlp.py``), one row per distinct set in a project.
span_resources = sa.Table(
    "span_resources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 of the attributes' JSON text as received
    sa.Column("attributes", Json, nullable=False),
    sa.Index("uq_span_resources_project_digest", "project_id", "digest", unique=True),
)

SPAN_KINDS = frozenset({"span"})
KIND_NAMES = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
# The status of a span without an end: still running when its record was written (its finished
# record replaces the row), or never finished (the process was killed): shown as unfinished.
OPEN = "open"
MAX_ATTRIBUTES = 1024
MAX_ATTRIBUTE_CHARS = 256 * 1024
MAX_EVENTS = 128
MAX_LINKS = 128
_INT64_MAX = 2**63 - 1

# Typed column -> attribute keys, in priority order (GenAI semconv, then OpenInference, MLflow, Traceloop).
OPERATION_KEYS = ("gen_ai.operation.name", "openinference.span.kind", "mlflow.spanType", "traceloop.span.kind")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name", "embedding.model_name")
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
                    "llm.usage.prompt_tokens")
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion",
                     "llm.usage.completion_tokens")
INPUT_KEYS = ("input.value", "mlflow.spanInputs", "gen_ai.input.messages", "gen_ai.prompt", "traceloop.entity.input")
OUTPUT_KEYS = ("output.value", "mlflow.spanOutputs", "gen_ai.output.messages", "gen_ai.completion",
               "traceloop.entity.output")
_MLFLOW_USAGE = "mlflow.chat.tokenUsage"


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _tokens(value: Any) -> int | None:
    if type(value) is int:
        return value if 0 <= value <= _INT64_MAX else None
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number <= _INT64_MAX else None


# Each typed column's attribute keys with their priority (0 first): one pass over the keys a span
# has in common with these (a C-level set intersection), not a lookup per key per column.
_TYPED_KEYS = {key: (column, rank) for column, keys in (
    ("operation", OPERATION_KEYS), ("provider", PROVIDER_KEYS), ("model", MODEL_KEYS),
    ("input_tokens", INPUT_TOKEN_KEYS), ("output_tokens", OUTPUT_TOKEN_KEYS), ("input", INPUT_KEYS),
    ("output", OUTPUT_KEYS)) for rank, key in enumerate(keys)}


_TYPED_RANK = {key: rank for rank, key in enumerate(_TYPED_KEYS)}
# Every attribute key the typed columns and payloads are read from (``received_typed``).
TYPED_SOURCE_KEYS = frozenset(_TYPED_KEYS) | {_MLFLOW_USAGE}


def _typed_values(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Each typed column's value from the first of its keys (in priority order) present with a value."""
    found: dict[str, Any] = {}
    for key in sorted(attributes.keys() & _TYPED_KEYS.keys(), key=_TYPED_RANK.__getitem__):
        value = attributes[key]
        if value is not None and value != "":
            found.setdefault(_TYPED_KEYS[key][0], value)
    return found


def typed_columns(attributes: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """operation, provider, model, input_tokens, output_tokens from a span's attributes
    (``values``: their ``_typed_values``, when the caller has them)."""
    return dict(zip(_TYPED_COLUMNS, _typed_tuple(attributes, _typed_values(attributes) if values is None else values)))


_TYPED_COLUMNS = ("operation", "provider", "model", "input_tokens", "output_tokens")
_NO_TYPED = ("", "", "", None, None)


def _typed_tuple(attributes: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[Any, ...]:
    """``typed_columns``' values, in ``_TYPED_COLUMNS`` order."""
    usage = attributes.get(_MLFLOW_USAGE)
    if not values and usage is None:
        return _NO_TYPED
    operation = values.get("operation")
    provider = values.get("provider")
    model = values.get("model")
    input_tokens = _tokens(values.get("input_tokens"))
    output_tokens = _tokens(values.get("output_tokens"))
    if isinstance(usage, str):
        try:
            usage = json.loads(usage)
        except ValueError:
            usage = None
    if isinstance(usage, dict):
        input_tokens = input_tokens if input_tokens is not None else _tokens(usage.get("input_tokens"))
        output_tokens = output_tokens if output_tokens is not None else _tokens(usage.get("output_tokens"))
    return (fit(store_text(str(operation)).lower(), 64) if operation is not None else "",
            fit(store_text(str(provider)).lower(), 64) if provider is not None else "",
            fit(store_text(str(model)), 256) if model is not None else "",
            input_tokens, output_tokens)


def payload_text(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """An OTLP span's input or output as JSON text, from the first of ``keys`` present."""
    return _payload(_first(attributes, keys))


def _payload(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            json.loads(value)
            return store_text(value)
        except ValueError:
            pass
    return store_text(json.dumps(value, ensure_ascii=False, default=str))


def capped_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """At most ``MAX_ATTRIBUTES`` entries, strings cut to ``MAX_ATTRIBUTE_CHARS``, non-finite
    floats as null (JSONB refuses them), NUL replaced."""
    out: dict[str, Any] = {}
    for key, value in itertools.islice(attributes.items(), MAX_ATTRIBUTES):
        if type(key) is not str or len(key) > 1024 or "\x00" in key:
            key = fit(store_text(str(key)), 1024)
        kind = type(value)  # the common kinds inline: this runs for every attribute received
        if kind is str:
            out[key] = value if len(value) <= MAX_ATTRIBUTE_CHARS and "\x00" not in value else _capped(value)
        elif kind is bool or value is None or (kind is int and -_INT64_MAX - 1 <= value <= _INT64_MAX):
            out[key] = value
        else:
            out[key] = _capped(value)
    return out


def capped_value(value: Any) -> Any:
    """One attribute value as stored (``capped_attributes``' rule for a value of any kind)."""
    return _capped(value)


def _capped(value: Any, depth: int = 0) -> Any:
    kind = type(value)
    if kind is str:
        if len(value) > MAX_ATTRIBUTE_CHARS:
            value = value[:MAX_ATTRIBUTE_CHARS]
        return store_text(value)
    if kind is int:
        return value if -_INT64_MAX - 1 <= value <= _INT64_MAX else str(value)
    if value is None or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value[:MAX_ATTRIBUTE_CHARS].hex()
    if isinstance(value, (list, tuple)):
        return [_capped(v, depth + 1) for v in list(value)[:MAX_ATTRIBUTES]] if depth < 8 else None
    if isinstance(value, dict):
        return {store_text(str(k)): _capped(v, depth + 1) for k, v in list(value.items())[:MAX_ATTRIBUTES]} \
            if depth < 8 else None
    return store_text(str(value)[:MAX_ATTRIBUTE_CHARS])


def _clamp_ns(value: int) -> int:
    return max(0, min(int(value), _INT64_MAX))


def span_row(span: Mapping[str, Any]) -> dict[str, Any]:
    """A ``spans`` row (without project/run keys) from a span as plain data: trace_id, span_id,
    parent_span_id (hex), name, kind, start_ns, end_ns, status, status_message, step, attributes,
    events, links, and optionally input/output JSON text and blob digests."""
    events = [capped_event(event) for event in list(span.get("events") or [])[:MAX_EVENTS]]
    links = [capped_link(link) for link in list(span.get("links") or [])[:MAX_LINKS]]
    return checked_span_row(
        fit(str(span.get("trace_id", "")), 32), fit(str(span.get("span_id", "")), 16),
        fit(str(span.get("parent_span_id", "")), 16), fit(store_text(str(span.get("name", ""))), 512),
        fit(str(span.get("kind", "unspecified")), 16), _clamp_ns(span.get("start_ns") or 0),
        _clamp_ns(span.get("end_ns") or 0), fit(str(span.get("status", "unset")), 8),
        store_text(str(span.get("status_message", "")))[:4096], span.get("step"),
        capped_attributes(span.get("attributes") or {}), events, links, span.get("input") or "",
        fit(str(span.get("input_blob", "")), 64), span.get("output") or "", fit(str(span.get("output_blob", "")), 64))


def checked_span_row(trace_id: str, span_id: str, parent_span_id: str, name: str, kind: str, start: int, end: int,
                     status: str, status_message: str, step: Any, attributes: dict[str, Any], events: list[Any],
                     links: list[Any], input: str = "", input_blob: str = "", output: str = "",
                     output_blob: str = "") -> dict[str, Any]:
    """``span_row`` for values already as the store keeps them (ids hex that fit their columns,
    texts through ``store_text`` and cut, times within int64, attributes ``capped_attributes``'
    output, events and links capped): the OTLP decoder's path, no coercion per field."""
    values = _typed_values(attributes)
    row = {
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent_span_id, "name": name, "kind": kind,
        "start_ns": start, "end_ns": end, "duration_ms": max(0, end - start) / 1e6,
        "status": status if end else OPEN, "status_message": status_message,
        "step": step if type(step) is int and -_INT64_MAX <= step <= _INT64_MAX else None,
        "attributes": attributes, "events": events, "links": links,
        "input": input or _payload(values.get("input")), "input_blob": input_blob,
        "output": output or _payload(values.get("output")), "output_blob": output_blob,
    }
    row.update(typed_columns(attributes, values))
    return row


# A span received over OTLP as the insert's tuple (``RECEIVED_COLUMNS`` order; the project, run_pk
# and source are constants of the statement, ``received_sql``): the decoder builds it straight
# from the decoded values with the attributes already JSON text, no row dict per span.
# The last, ``resource_id``, is the resource's attributes as JSON text in the tuple ("" for none):
# the span writer puts the id of their ``span_resources`` row in its place (``resource_ids``).
RECEIVED_COLUMNS = ("run_id", "trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns",
                    "duration_ms", "status", "status_message", "step", *_TYPED_COLUMNS, "input", "input_blob",
                    "output", "output_blob", "attributes", "events", "links", "resource_id")


def received_row(run_id: str, trace_id: str, span_id: str, parent_span_id: str, name: str, kind: str, start: int,
                 end: int, status: str, status_message: str, attributes: Mapping[str, Any], attributes_json: str,
                 events_json: str = "[]", links_json: str = "[]", resource_json: str = "") -> tuple[Any, ...]:
    """``checked_span_row``'s values as the insert's tuple (same preconditions: values already as
    the store keeps them; ``attributes_json``: the stored attributes as JSON text, ``attributes``
    the span's own ones, which hold every key the typed columns read; ``resource_json``: the
    attributes it shares with its resource, ``RECEIVED_COLUMNS``' last)."""
    typed = received_typed(attributes)
    return (run_id, trace_id, span_id, parent_span_id, name, kind, start, end, max(0, end - start) / 1e6,
            status if end else OPEN, status_message, None, *typed[:5], typed[5], "", typed[6], "", attributes_json,
            events_json, links_json, resource_json)


def received_typed(attributes: Mapping[str, Any]) -> tuple[Any, ...]:
    """A span's operation, provider, model, input and output tokens, input and output payload
    text, from its attributes (all it reads are ``TYPED_SOURCE_KEYS``)."""
    values = _typed_values(attributes)
    return (*_typed_tuple(attributes, values), _payload(values.get("input")), _payload(values.get("output")))


NO_TYPED = ("", "", "", None, None, "", "")  # ``received_typed`` of attributes without those keys


_RECEIVED_PLAIN = operator.itemgetter(*RECEIVED_COLUMNS[:-4])


def received_tuple(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A ``span_row`` row with its ``run_id`` as the insert's tuple (``RECEIVED_COLUMNS``)."""
    events, links = row["events"], row["links"]
    return _RECEIVED_PLAIN(row) + (_dumps(row["attributes"]), _dumps(events) if events else "[]",
                                   _dumps(links) if links else "[]", "")


def received_sql(dialect: str, project_id: int) -> str:
    """The insert of ``RECEIVED_COLUMNS`` tuples into a project (source "otlp"), with the same
    conflict rule as ``write_spans``."""
    return _received_sql(dialect, int(project_id))


def received_statements(dialect: str, project_id: int) -> tuple[str, str | None]:
    """The statements ``SpanWriter`` inserts ``RECEIVED_COLUMNS`` tuples with: the first for every
    chunk of rows, the second (None: not needed) again for a chunk where the first stored fewer
    rows than it was given. On SQLite the first is ``INSERT OR IGNORE``, which skips the upsert's
    work per row (an exporter's retry or an open span's end is the rare case), and the second
    ``received_sql``'s upsert: rows the first inserted are left as they are by it (a row stored
    open is replaced only by a row with an end, a finished one never), so the result is the
    upsert's alone."""
    upsert = _received_sql(dialect, int(project_id))
    if dialect != "sqlite":
        return upsert, None
    return "INSERT OR IGNORE" + upsert[len("INSERT"):upsert.index(" ON CONFLICT")], upsert


@functools.lru_cache(maxsize=256)
def _received_sql(dialect: str, project_id: int) -> str:
    if dialect == "postgresql":
        marks = ", ".join("CAST(%s AS JSONB)" if name in _JSON_COLUMNS else "%s" for name in RECEIVED_COLUMNS)
    else:
        marks = ", ".join("?" for _ in RECEIVED_COLUMNS)
    return (f"INSERT INTO spans (project_id, run_pk, source, {', '.join(RECEIVED_COLUMNS)}) "
            f"VALUES ({project_id}, NULL, 'otlp', {marks}) {_ON_CONFLICT}")


def resource_id(connection: sa.Connection, project_id: int, text: str) -> int:
    """The id of the ``span_resources`` row of ``text`` (a JSON object's text: a resource's and
    scope's attributes as the decoder serialized them) in a project, made in ``connection``'s
    transaction if the project has none yet (a concurrent writer's row is found, not doubled)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("INSERT INTO span_resources (project_id, digest, attributes) VALUES "
                                   "(%s, %s, CAST(%s AS JSONB)) ON CONFLICT (project_id, digest) DO NOTHING",
                                   (project_id, digest, text))
        found = connection.exec_driver_sql("SELECT id FROM span_resources WHERE project_id = %s AND digest = %s",
                                           (project_id, digest)).scalar_one()
    else:
        connection.exec_driver_sql("INSERT OR IGNORE INTO span_resources (project_id, digest, attributes) "
                                   "VALUES (?, ?, ?)", (project_id, digest, text))
        found = connection.exec_driver_sql("SELECT id FROM span_resources WHERE project_id = ? AND digest = ?",
                                           (project_id, digest)).scalar_one()
    return int(found)


def with_resource(attributes: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    """A span's attributes as received: its own, then those of its resource and scope (``shared``)
    it lacks, at most ``MAX_ATTRIBUTES`` (as the decoder stored them inline before migration 0009)."""
    merged = dict(attributes)
    for key, value in shared.items():
        merged.setdefault(key, value)
    return merged if len(merged) <= MAX_ATTRIBUTES else dict(itertools.islice(merged.items(), MAX_ATTRIBUTES))


def capped_event(event: Any) -> Any:
    """An event as stored: its attributes capped like a span's (a NaN, which PostgreSQL's JSONB
    refuses, or a NUL in one event must not fail the batch the span came in)."""
    if not isinstance(event, Mapping):
        return _capped(event)
    return {"name": fit(store_text(str(event.get("name", ""))), 512), "time_ns": _clamp_ns(event.get("time_ns") or 0),
            "attributes": capped_attributes(event.get("attributes") or {})}


def capped_link(link: Any) -> Any:
    if not isinstance(link, Mapping):
        return _capped(link)
    return {"trace_id": fit(str(link.get("trace_id", "")), 32), "span_id": fit(str(link.get("span_id", "")), 16),
            "attributes": capped_attributes(link.get("attributes") or {})}


def _entries(entries: Any) -> dict[str, Any]:
    from tracklet.core.values import from_value_message

    out: dict[str, Any] = {}
    for entry in entries:
        try:
            out[entry.key] = from_value_message(entry.value)
        except Exception:
            out[entry.key] = None
    return out


def span_of_message(message: Any) -> dict[str, Any]:
    """A ``tracklet.v1.Span`` message as the plain data :func:`span_row` takes."""
    return {
        "trace_id": message.trace_id.hex(), "span_id": message.span_id.hex(),
        "parent_span_id": message.parent_span_id.hex(), "name": message.name,
        "kind": KIND_NAMES.get(message.kind, "unspecified"),
        "start_ns": message.start_time_unix_nano, "end_ns": message.end_time_unix_nano,
        "status": STATUS_NAMES.get(message.status_code, "unset"), "status_message": message.status_message,
        "step": message.step if message.HasField("step") else None,
        "attributes": _entries(message.attributes),
        "events": [{"name": e.name, "time_ns": e.time_unix_nano, "attributes": _entries(e.attributes)}
                   for e in list(message.events)[:MAX_EVENTS]],
        "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                   "attributes": _entries(link.attributes)} for link in list(message.links)[:MAX_LINKS]],
        "input": store_text(message.input.json), "input_blob": message.input.blob_digest,
        "output": store_text(message.output.json), "output_blob": message.output.blob_digest,
        "run_id": message.run_id,
    }


def log_span_rows(project_id: int, run_pk: int, run_id: str, messages: list[Any]) -> list[dict[str, Any]]:
    """``spans`` rows for a run's ``Span`` records; a span's start record (no end) followed by its
    finished record in the same batch gives the finished row only."""
    rows = []
    finished = {m.trace_id + m.span_id for m in messages if m.end_time_unix_nano}
    for message in messages:
        if not message.end_time_unix_nano and message.trace_id + message.span_id in finished:
            continue
        row = span_row(span_of_message(message))
        row.update(project_id=project_id, run_pk=run_pk, run_id=fit(run_id, 128), source="log")
        if row["input_blob"] and not _is_digest(row["input_blob"]):
            row["input_blob"] = ""
        if row["output_blob"] and not _is_digest(row["output_blob"]):
            row["output_blob"] = ""
        rows.append(row)
    return rows


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


# The insert, as the driver's own statement: ``executemany`` of plain tuples, JSON columns
# serialized here in one C call each. SQLAlchemy's per-row parameter processing cost more than
# the database's work (OTLP ingest, docs/tracing.md). On a conflict (same project, trace and span
# id), a stored span stays as it was, unless it is open (no end): then the new row replaces it.
_JSON_COLUMNS = ("attributes", "events", "links")
_COLUMNS = tuple(column.name for column in spans.columns
                 if column.name not in ("id", "resource_id", *_JSON_COLUMNS)) + _JSON_COLUMNS
_PLAIN = operator.itemgetter(*_COLUMNS[: -len(_JSON_COLUMNS)])
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
json_text = _dumps  # how the JSON columns are serialized (compact, UTF-8 kept)
_SQL: dict[str, str] = {}
_ON_CONFLICT = ("ON CONFLICT (project_id, trace_id, span_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in (*_COLUMNS, "resource_id")
    if name not in ("project_id", "trace_id", "span_id"))
    + " WHERE spans.end_ns = 0 AND excluded.end_ns != 0")


def _insert_sql(dialect: str) -> str:
    sql = _SQL.get(dialect)
    if sql is None:
        if dialect == "postgresql":
            marks = ", ".join("CAST(%s AS JSONB)" if name in _JSON_COLUMNS else "%s" for name in _COLUMNS)
        else:
            marks = ", ".join("?" for _ in _COLUMNS)
        sql = _SQL[dialect] = f"INSERT INTO spans ({', '.join(_COLUMNS)}) VALUES ({marks}) {_ON_CONFLICT}"
    return sql


def _driver_row(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row (every column's key, as ``span_row`` and its callers make it) as the statement's tuple."""
    events, links = row["events"], row["links"]
    return _PLAIN(row) + (_dumps(row["attributes"]), _dumps(events) if events else "[]",
                          _dumps(links) if links else "[]")


def write_spans(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``spans`` rows (``span_row``'s, with project and run keys), 1,000 a statement."""
    if not rows:
        return
    sql = _insert_sql(connection.dialect.name)
    for start in range(0, len(rows), 1000):
        connection.exec_driver_sql(sql, [_driver_row(row) for row in rows[start : start + 1000]])


# ---------------------------------------------------------------- queries

SPAN_FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns", "duration_ms", "status",
               "status_message", "step", "operation", "provider", "model", "input_tokens", "output_tokens", "input",
               "input_blob", "output", "output_blob", "attributes", "events", "links", "run_id", "source")
_FILTERABLE = {"name", "status", "operation", "provider", "model", "trace_id", "kind", "source"}


def traces(engine: sa.Engine, project: str, *, run_id: str | None = None, filters: Mapping[str, Any] | None = None,
           limit: int = 100, max_spans: int = 100_000, prices: Any = None) -> list[dict[str, Any]]:
    """The project's most recent traces (by their first span's start), newest first: each a dict
    with ``trace_id``, ``start_ns``, ``end_ns``, ``run_id`` and ``spans`` (every span of the trace,
    by start). ``run_id``: traces with a span of that run. ``filters``: column -> value for the
    typed columns (``name``, ``status``, ``operation``, ``provider``, ``model``, ``kind``,
    ``source``, ``trace_id``); a trace matches when one of its spans does. ``prices``: a
    ``tracklet.store.prices.PriceTable``; each span then has ``input_cost``, ``output_cost`` and
    ``cost`` (USD, None where unknown) and each trace the sums ``cost``, ``input_tokens``,
    ``output_tokens`` (None when no span has one)."""
    unknown = set(filters or {}) - _FILTERABLE
    if unknown:
        from tracklet.errors import FilterSyntaxError

        name = sorted(unknown)[0]
        raise FilterSyntaxError(f"cannot filter traces on {name}", name, 0,
                                f"filterable: {', '.join(sorted(_FILTERABLE))}")
    limit = max(1, min(int(limit), 10_000))
    where = [spans.c.project_id == project_id_of(project)]  # not a join: its plan holds with statistics
    if run_id is not None:
        where.append(spans.c.run_id == run_id)
    for column, value in (filters or {}).items():
        where.append(spans.c[column] == value)
    first = (sa.select(spans.c.trace_id, sa.func.min(spans.c.start_ns).label("first"))
             .where(*where).group_by(spans.c.trace_id)
             .order_by(sa.desc("first")).limit(limit))
    with engine.connect() as connection:
        trace_ids = [row.trace_id for row in connection.execute(first)]
        if not trace_ids:
            return []
        project_id = connection.execute(sa.select(projects.c.id).where(projects.c.name == project)).scalar()
        stmt = (sa.select(*(spans.c[name] for name in SPAN_FIELDS), spans.c.resource_id)
                .where(spans.c.project_id == project_id, spans.c.trace_id.in_(trace_ids))
                .order_by(spans.c.trace_id, spans.c.start_ns, spans.c.id).limit(max_spans))
        by_trace: dict[str, list[dict[str, Any]]] = {}
        sharing: list[dict[str, Any]] = []
        for row in connection.execute(stmt).mappings():
            span = dict(row)
            if span["resource_id"] is not None:
                sharing.append(span)
            by_trace.setdefault(row["trace_id"], []).append(span)
        shared = dict(connection.execute(sa.select(span_resources.c.id, span_resources.c.attributes).where(
            span_resources.c.id.in_({span["resource_id"] for span in sharing}))).all()) if sharing else {}
        for span in sharing:
            span["attributes"] = with_resource(span["attributes"] or {}, shared.get(span["resource_id"]) or {})
        for members in by_trace.values():
            for span in members:
                del span["resource_id"]
    result = []
    for trace_id in trace_ids:
        members = by_trace.get(trace_id, [])
        if not members:
            continue
        run_ids = sorted({s["run_id"] for s in members if s["run_id"]})
        if prices is not None:
            for span in members:
                span.update(prices.cost(span, project))
        result.append({
            "trace_id": trace_id,
            "start_ns": min(s["start_ns"] for s in members),
            "end_ns": max(max(s["end_ns"], s["start_ns"]) for s in members),  # an open span: its start
            "run_id": run_ids[0] if run_ids else "",
            "input_tokens": _total(members, "input_tokens"),
            "output_tokens": _total(members, "output_tokens"),
            "cost": _total(members, "cost"),
            "spans": members,
        })
    return result


def _total(spans: list[dict[str, Any]], column: str) -> Any:
    values = [s[column] for s in spans if s.get(column) is not None]
    return sum(values) if values else None


def run_pk_query(project: str, run_id: str) -> Any:
    return (sa.select(runs.c.id).join(projects, projects.c.id == runs.c.project_id)
            .where(projects.c.name == project, runs.c.run_id == run_id))
