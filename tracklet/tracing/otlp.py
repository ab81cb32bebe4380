"""OTLP/HTTP trace export bodies (protobuf or JSON) decoded into the store's span rows.

What ``/v1/traces`` (``tracklet/server/routes_traces.py``) receives crosses a trust boundary: the
body is already bounded in size (gzip included) by the route; here nesting of attribute values
is bounded (``MAX_VALUE_DEPTH``), and every span is checked (ids of the right length, times that
fit) so a bad span is rejected and counted (OTLP's partial success), never the request's other
spans. The project of each resource's spans is the ``X-Tracklet-Project`` header, else the
resource attribute ``tracklet.project``, else its ``service.name``; the run is ``X-Tracklet-Run``
or ``tracklet.run`` (optional).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from tracklet.core.layout import name_problem
from tracklet.errors import OtlpError
from tracklet.store.spans import (KIND_NAMES, MAX_ATTRIBUTE_CHARS, MAX_ATTRIBUTES, MAX_EVENTS, MAX_LINKS, STATUS_NAMES,
                                  capped_attributes, capped_event,
                                  capped_link, checked_span_row)
from tracklet.store.text import fit, store_text

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_VALUE_DEPTH = 16
MAX_SPANS = 200_000  # per request

__all__ = ["Decoded", "OtlpError", "decode", "parse_request", "response_body"]
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


@dataclasses.dataclass
class Decoded:
    """Span rows by project (each row with its ``run_id``), and what was rejected and why."""

    by_project: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    rejected: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    def reject(self, count: int, why: str) -> None:
        self.rejected += count
        if len(self.errors) < 5 and why not in self.errors:
            self.errors.append(why)


def _hex_ids_to_base64(value: Any, depth: int = 0) -> Any:
    """OTLP/JSON writes ids as hex; protobuf's JSON parser reads bytes as base64."""
    if depth > 64:
        raise OtlpError("the JSON body nests too deeply")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _ID_FIELDS and isinstance(item, str):
                try:
                    item = base64.b64encode(bytes.fromhex(item)).decode("ascii")
                except ValueError:
                    raise OtlpError(f"{key} {item[:40]!r} is not hex") from None
            out[key] = _hex_ids_to_base64(item, depth + 1)
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(item, depth + 1) for item in value]
    return value


def parse_request(body: bytes, content_type: str) -> Any:
    """An ``ExportTraceServiceRequest`` (tracklet's copy of OTLP's schema) from a body."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    from tracklet.proto import otlp_trace_pb2 as otlp

    request = otlp.ExportTraceServiceRequest()
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError) as error:
            raise OtlpError(f"the body is not an OTLP ExportTraceServiceRequest: {error}") from None
        return request
    if media_type == JSON:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise OtlpError(f"the body is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise OtlpError("the JSON body must be an object (an ExportTraceServiceRequest)")
        try:
            json_format.ParseDict(_hex_ids_to_base64(data), request, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError) as error:
            raise OtlpError(f"the JSON body is not an OTLP ExportTraceServiceRequest: {error}") from None
        return request
    raise OtlpError(f"unsupported Content-Type {content_type!r}: send {PROTOBUF} or {JSON}")


def any_value(value: Any, depth: int = 0) -> Any:
    """An OTLP ``AnyValue`` as plain data (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        if depth >= MAX_VALUE_DEPTH:
            return None
        return [any_value(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        if depth >= MAX_VALUE_DEPTH:
            return None
        return {entry.key: any_value(entry.value, depth + 1) for entry in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(entries: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` entries as a dict (scalars read inline: this runs for every attribute)."""
    out: dict[str, Any] = {}
    for entry in entries:
        value = entry.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[entry.key] = value.string_value
        elif kind == "int_value":
            out[entry.key] = value.int_value
        else:
            out[entry.key] = any_value(value)
    return out


def stored_attributes(entries: Any) -> dict[str, Any]:
    """``attributes`` as the store keeps them (``capped_attributes``' result), in the same pass:
    an int64 needs no check, a string only its length and NULs; other kinds, and keys that are
    long or hold a NUL, go through ``capped_attributes``."""
    out: dict[str, Any] = {}
    odd = False
    for entry in entries:
        value = entry.value
        kind = value.WhichOneof("value")
        key = entry.key
        if kind == "string_value":
            text = value.string_value
            if len(text) > MAX_ATTRIBUTE_CHARS or "\x00" in text:
                odd = True
            out[key] = text
        elif kind == "int_value":
            out[key] = value.int_value
        else:
            out[key] = any_value(value)
            odd = True
        if len(key) > 1024 or "\x00" in key:
            odd = True
    return capped_attributes(out) if odd or len(out) > MAX_ATTRIBUTES else out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def decode(body: bytes, content_type: str, *, project: str | None = None, run: str | None = None) -> Decoded:
    """Span rows from an OTLP/HTTP body, grouped by project (``project``/``run``: the headers)."""
    request = parse_request(body, content_type)
    decoded = Decoded()
    total = 0
    for resource_spans in request.resource_spans:
        resource = stored_attributes(resource_spans.resource.attributes)
        count = sum(len(scope.spans) for scope in resource_spans.scope_spans)
        total += count
        if total > MAX_SPANS:
            decoded.reject(count, f"more than {MAX_SPANS} spans in one request")
            continue
        target = project or _text(resource.get("tracklet.project")) or _text(resource.get("service.name")) or "default"
        problem = name_problem(target)
        if problem is not None:
            decoded.reject(count, f"project {target[:100]!r} is not valid: {problem}")
            continue
        run_id = run or _text(resource.get("tracklet.run")) or ""
        resource_attributes = {f"resource.{key}": value for key, value in resource.items()}
        rows = decoded.by_project.setdefault(target, [])
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            shared = ({"otel.scope.name": fit(store_text(scope.name), 1024), **resource_attributes} if scope.name
                      else resource_attributes)
            for span in scope_spans.spans:
                why = _invalid(span)
                if why is not None:
                    decoded.reject(1, why)
                    continue
                own = stored_attributes(span.attributes)
                # The span's own keys first, then the scope's and resource's it lacks (dict merges: C-level).
                span_attributes = {**own, **shared, **own} if own else dict(shared)
                # Validated above: ids of their lengths, times within int64; so no coercion per field.
                row = checked_span_row(
                    span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                    fit(store_text(span.name), 512), KIND_NAMES.get(span.kind, "unspecified"),
                    span.start_time_unix_nano, span.end_time_unix_nano,
                    STATUS_NAMES.get(span.status.code, "unset"), store_text(span.status.message)[:4096], None,
                    span_attributes if len(span_attributes) <= MAX_ATTRIBUTES else capped_attributes(span_attributes),
                    [capped_event({"name": e.name, "time_ns": e.time_unix_nano, "attributes": attributes(e.attributes)})
                     for e in list(span.events)[:MAX_EVENTS]] if span.events else [],
                    [capped_link({"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                            "attributes": attributes(link.attributes)}) for link in list(span.links)[:MAX_LINKS]]
                    if span.links else [])
                row["run_id"] = run_id
                rows.append(row)
        if not rows:
            del decoded.by_project[target]
    return decoded


def _invalid(span: Any) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "a span's trace_id is not 16 bytes (or is all zero)"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "a span's span_id is not 8 bytes (or is all zero)"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "a span's parent_span_id is not 8 bytes"
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        return "a span ends before it starts"
    if span.start_time_unix_nano >= 2**63 or span.end_time_unix_nano >= 2**63:
        return "a span's time is past 2262"
    return None


def response_body(content_type: str, decoded: Decoded) -> tuple[bytes, str]:
    """The ``ExportTraceServiceResponse`` in the request's encoding."""
    from tracklet.proto import otlp_trace_pb2 as otlp

    response = otlp.ExportTraceServiceResponse()
    if decoded.rejected:
        response.partial_success.rejected_spans = decoded.rejected
        response.partial_success.error_message = "; ".join(decoded.errors)
    if content_type.split(";")[0].strip().lower() == JSON:
        body: dict[str, Any] = {}
        if decoded.rejected:
            body["partialSuccess"] = {"rejectedSpans": str(decoded.rejected),
                                      "errorMessage": response.partial_success.error_message}
        return json.dumps(body).encode(), JSON
    return response.SerializeToString(), PROTOBUF
