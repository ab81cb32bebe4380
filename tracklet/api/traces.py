"""What ``tracklet.Api().traces(...)`` returns: ``Trace``s, each with its ``TraceSpan``s.

Both ``LocalApi`` (from the store) and ``RemoteApi`` (from a server's ``/api/v1/projects/<p>/traces``)
build them from the same plain rows (``tracklet.store.spans.SPAN_FIELDS``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Callable

# Reads a payload blob by sha256 (a LocalApi's blob store); None where blobs can't be read.
BlobReader = Callable[[str], bytes]


@dataclasses.dataclass
class TraceSpan:
    """One span: ids (hex), ``parent_span_id`` ("" for a root), name, kind, times (Unix ns),
    ``duration_ms``, ``status`` ("ok", "error", "unset"), the run and step it was recorded at, the
    typed GenAI columns, the raw ``attributes``, ``events`` and ``links``."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    duration_ms: float
    status: str
    status_message: str
    step: int | None
    run_id: str
    source: str
    operation: str
    provider: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    attributes: dict[str, Any]
    events: list[Any]
    links: list[Any]
    input_cost: float | None = None  # USD from the price table; None where the model has no price
    output_cost: float | None = None
    cost: float | None = None
    input_json: str = ""
    input_blob: str = ""
    output_json: str = ""
    output_blob: str = ""
    _blobs: BlobReader | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def unfinished(self) -> bool:
        """True for a span without an end (status ``"open"``): still running when its record was
        written, and, in a run that crashed or was killed, never finished."""
        return self.status == "open"

    @property
    def inputs(self) -> Any:
        """The op's arguments by name (from the blob store when they were over 8 KiB), or None."""
        return self._payload(self.input_json, self.input_blob)

    @property
    def output(self) -> Any:
        """The op's return value (a generator's: the items it yielded), or None."""
        return self._payload(self.output_json, self.output_blob)

    @property
    def media(self) -> list[dict[str, Any]]:
        """The media references in the span's inputs and output, in order: images, audio, video
        and long bytes an op took or returned, stored in the blob store (``{"_type":
        "tracklet.media", "kind", "sha256", "mime", "size", ...}``; read one with :meth:`blob`)."""
        found: list[dict[str, Any]] = []
        _references(self.inputs, found)
        _references(self.output, found)
        return found

    def blob(self, digest: str) -> bytes:
        """The bytes of a blob this span names: a media reference's ``sha256`` or ``thumbnail``, or
        a payload stored as a blob; from the data root's blob store, or over HTTP from a server."""
        named = set(self.attributes.get("tracklet.media") or []) | {self.input_blob, self.output_blob}
        if not digest or digest not in named:
            raise KeyError(f"span {self.span_id} names no blob {digest!r}")
        if self._blobs is None:
            raise LookupError("this span's blobs can't be read here")
        return self._blobs(digest)

    def _payload(self, text: str, blob: str) -> Any:
        if text:
            return json.loads(text)
        if blob and self._blobs is not None:
            return json.loads(self._blobs(blob).decode("utf-8"))
        return None


def _references(value: Any, found: list[dict[str, Any]], depth: int = 0) -> None:
    if depth > 40:
        return
    if isinstance(value, dict):
        if value.get("_type") == "tracklet.media" and isinstance(value.get("sha256"), str):
            found.append(value)
            return
        for item in value.values():
            _references(item, found, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _references(item, found, depth + 1)


@dataclasses.dataclass
class Trace:
    """A trace: its id, first start and last end (Unix ns), the run it was recorded in ("" for
    none) and its ``spans`` by start time; ``root`` is the span without a parent in the trace."""

    trace_id: str
    start_ns: int
    end_ns: int
    run_id: str
    spans: list[TraceSpan]
    input_tokens: int | None = None  # sums over the spans
    output_tokens: int | None = None
    cost: float | None = None  # USD

    @property
    def root(self) -> TraceSpan | None:
        ids = {s.span_id for s in self.spans}
        return next((s for s in self.spans if not s.parent_span_id or s.parent_span_id not in ids), None)

    def children(self, span: TraceSpan) -> list[TraceSpan]:
        return [s for s in self.spans if s.parent_span_id == span.span_id]


def trace_of(row: Mapping[str, Any], blobs: BlobReader | None = None) -> Trace:
    spans = []
    for s in row["spans"]:
        fields = {k: s.get(k) for k in ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns",
                                        "duration_ms", "status", "status_message", "step", "run_id", "source",
                                        "operation", "provider", "model", "input_tokens", "output_tokens",
                                        "input_blob", "output_blob", "input_cost", "output_cost", "cost")}
        spans.append(TraceSpan(**fields, attributes=dict(s.get("attributes") or {}), events=list(s.get("events") or []),
                               links=list(s.get("links") or []), input_json=s.get("input") or "",
                               output_json=s.get("output") or "", _blobs=blobs))
    return Trace(row["trace_id"], row["start_ns"], row["end_ns"], row.get("run_id", ""), spans,
                 row.get("input_tokens"), row.get("output_tokens"), row.get("cost"))


def check_filter(filter: Any) -> dict[str, Any]:
    """``filter`` for ``traces``: None or a mapping of typed column -> value."""
    if filter is None:
        return {}
    if not isinstance(filter, Mapping):
        raise TypeError("traces(filter=...) takes a dict of column -> value, e.g. {'operation': 'chat', "
                        "'status': 'error'}")
    return dict(filter)


def run_id_of(run: Any) -> str | None:
    if run is None:
        return None
    return run if isinstance(run, str) else str(run.id)
