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

import dataclasses
import functools
import itertools
import json
import math
import operator
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import DecodeError
from json.encoder import encode_basestring as _quoted

from tracklet.core.layout import name_problem
from tracklet.errors import OtlpError
from tracklet.store.spans import (KIND_NAMES, MAX_ATTRIBUTE_CHARS, MAX_ATTRIBUTES, MAX_EVENTS, MAX_LINKS, NO_TYPED,
                                  OPEN, STATUS_NAMES, TYPED_SOURCE_KEYS, capped_event, capped_link,
                                  capped_value, received_typed)
from tracklet.store.spans import json_text as _dumps
from tracklet.store.text import fit, store_text

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_VALUE_DEPTH = 16
MAX_SPANS = 200_000  # per request

__all__ = ["Decoded", "OtlpError", "decode", "parse_request", "response_body"]


@dataclasses.dataclass
class Decoded:
    """Span rows by project (``received_row`` tuples, each with its ``run_id``), and what was rejected and why."""

    by_project: dict[str, list[tuple[Any, ...]]] = dataclasses.field(default_factory=dict)
    rejected: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    def reject(self, count: int, why: str) -> None:
        self.rejected += count
        if len(self.errors) < 5 and why not in self.errors:
            self.errors.append(why)


def parse_request(body: bytes, content_type: str, *, raw_attributes: bool = False) -> Any:
    """An ``ExportTraceServiceRequest`` (tracklet's copy of OTLP's schema) from a body; with
    ``raw_attributes``, spans' attributes left encoded (``_raw_request``)."""
    from tracklet.proto import otlp_trace_pb2 as otlp

    request = _raw_request()() if raw_attributes else otlp.ExportTraceServiceRequest()
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == PROTOBUF:
        from tracklet.core.parsecost import record_parse_problem

        # dense repeated fields (empty spans, attributes) cost ~50x their bytes once parsed
        problem = record_parse_problem(body, message=otlp.ExportTraceServiceRequest.DESCRIPTOR, what="OTLP request")
        if problem is not None:
            raise OtlpError(f"the body is refused unparsed: {problem}")
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError) as error:
            raise OtlpError(f"the body is not an OTLP ExportTraceServiceRequest: {error}") from None
        return request
    if media_type == JSON:
        from tracklet.tracing.otlp_json import resources

        for resource, scopes in resources(body, _raw_scope_spans() if raw_attributes else otlp.ScopeSpans):
            resource_spans = request.resource_spans.add()
            resource_spans.resource.MergeFromString(resource.SerializeToString())  # another pool's message
            for name, spans in scopes:
                scope_spans = resource_spans.scope_spans.add()
                scope_spans.scope.name = name
                scope_spans.spans.extend(spans)
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
    """``attributes`` as the store keeps them (``capped_attributes``' result), in the same pass and
    value by value (``_stored_pair``)."""
    out = dict(_stored_pair(entry) for entry in entries)
    return out if len(out) <= MAX_ATTRIBUTES else dict(itertools.islice(out.items(), MAX_ATTRIBUTES))


def _stored_pair(entry: Any) -> tuple[str, Any]:
    """A ``KeyValue`` as stored: a string needs only its length and NULs checked, an int64 or a
    bool nothing, a double its finiteness; other kinds (and long keys, keys with a NUL) are capped."""
    value = entry.value
    kind = value.WhichOneof("value")
    key = entry.key
    if len(key) > 1024 or "\x00" in key:
        key = fit(store_text(key), 1024)
    if kind == "string_value":
        text = value.string_value
        return key, text if len(text) <= MAX_ATTRIBUTE_CHARS and "\x00" not in text else capped_value(text)
    if kind == "int_value":
        return key, value.int_value
    if kind == "double_value":
        number = value.double_value
        return key, number if math.isfinite(number) else None
    if kind == "bool_value":
        return key, value.bool_value
    return key, capped_value(any_value(value))


class _Entries(dict[bytes, tuple[str, Any]]):
    """This request's attribute entries, encoded ``KeyValue`` bytes (``_raw_request``) -> (key,
    value) as stored: an entry already seen in this request (the same key and value: most of them,
    in telemetry) is a dict lookup, not a decode. A miss decodes it (``DecodeError`` if it isn't a
    ``KeyValue``) and files its JSON member text (``"key":value``) in ``members`` too, so a span's
    attributes are joined from those, not serialized again span by span."""

    __slots__ = ("members", "_parse")

    def __init__(self) -> None:
        super().__init__()
        from tracklet.proto.otlp_trace_pb2 import KeyValue

        self.members: dict[bytes, str] = {}
        self._parse = KeyValue.FromString

    def __missing__(self, raw: bytes) -> tuple[str, Any]:
        pair = _short_string_pair(raw) or _stored_pair(self._parse(raw))
        self[raw] = pair
        self.members[raw] = _member(*pair)
        return pair


def _short_string_pair(raw: bytes) -> tuple[str, Any] | None:
    """``_stored_pair`` of an encoded ``KeyValue`` read from its bytes, for the usual encoding of
    a key under 128 bytes with a string value under 126 (tag, length, bytes: ids, names, short
    texts, what most entries new to a request are), without a message object; None for any
    other encoding or kind (then ``KeyValue`` parses it, and refuses what is not one)."""
    size = len(raw)
    if size < 6 or raw[0] != 0x0A or raw[1] > 127:
        return None
    at = raw[1] + 2  # the value: field 2, an AnyValue whose only field is string_value (1)
    if (size < at + 4 or raw[at] != 0x12 or raw[at + 1] > 127 or raw[at + 1] != size - at - 2 or raw[at + 2] != 0x0A
            or raw[at + 3] != size - at - 4):
        return None
    try:
        key, text = raw[2:at].decode(), raw[at + 4:].decode()
    except UnicodeDecodeError:
        return None
    if "\x00" in key:
        key = fit(store_text(key), 1024)
    return key, text if "\x00" not in text else capped_value(text)


def _member(key: str, value: Any) -> str:
    """``"key":value`` as ``_dumps`` writes it in an object (the common kinds without the
    encoder's per-call setup: this runs for every attribute entry new to a request)."""
    kind = type(value)
    if kind is str:
        text = _quoted(value)
    elif kind is int:
        text = int.__repr__(value)
    elif kind is bool:
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        return _dumps({key: value})[1:-1]
    return _quoted(key) + ":" + text


class _Typed(dict[tuple[str, ...], Any]):
    """A span's typed columns and payloads (``received_typed``) by its attribute keys, in order ->
    a getter of the values those columns read (``TYPED_SOURCE_KEYS``; None: it has none) and the
    columns already computed for such values (with their types: ``1`` and ``True`` hash alike;
    and where one is a float, their text: ``-0.0`` equals ``0.0``)."""

    __slots__ = ()

    def __missing__(self, keys: tuple[str, ...]) -> tuple[Any, dict[Any, tuple[Any, ...]]] | None:
        read = [key for key in keys if key in TYPED_SOURCE_KEYS]
        plan: tuple[Any, dict[Any, tuple[Any, ...]]] | None = (
            operator.itemgetter(*read) if len(read) > 1 else (lambda attributes: (attributes[read[0]],)),
            {}) if read else None
        self[keys] = plan
        return plan


@functools.lru_cache(maxsize=1)
def _raw_request() -> Any:
    """``ExportTraceServiceRequest`` with each span's attributes left encoded (``repeated bytes``
    in place of ``repeated KeyValue``: the same wire format), built from tracklet's OTLP schema in
    a pool of its own, so that repeated attributes decode once (``_span_attributes``)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    from tracklet.proto import otlp_trace_pb2 as otlp

    schema = descriptor_pb2.FileDescriptorProto()
    otlp.DESCRIPTOR.CopyToProto(schema)
    (span,) = (message for message in schema.message_type if message.name == "Span")
    (field,) = (field for field in span.field if field.name == "attributes")
    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    field.ClearField("type_name")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(schema)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{schema.package}.ExportTraceServiceRequest"))


def _raw_scope_spans() -> Any:
    """The ``ScopeSpans`` of ``_raw_request``'s schema (spans' attributes left encoded)."""
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(_raw_request().DESCRIPTOR.fields_by_name["resource_spans"].message_type
                                           .fields_by_name["scope_spans"].message_type)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def decode(body: bytes, content_type: str, *, project: str | None = None, run: str | None = None) -> Decoded:
    """Span rows from an OTLP/HTTP body, grouped by project (``project``/``run``: the headers), as
    the insert's tuples (``tracklet.store.spans.received_row``). A JSON body is read span by span
    (``otlp_json.py``: bounded memory), a protobuf body parsed whole once its cost is estimated."""
    decoded = Decoded()
    cache = _Cache()
    if content_type.split(";")[0].strip().lower() == JSON:
        from tracklet.tracing.otlp_json import resources

        # at most MAX_SPANS spans, or OtlpTooLarge; a span that isn't one is rejected alone
        for resource, scopes in resources(body, _raw_scope_spans(), decoded.reject):
            _decode_resource(resource, scopes, project, run, decoded, cache)
        return decoded
    request = parse_request(body, content_type, raw_attributes=True)
    total = 0
    for resource_spans in request.resource_spans:
        count = sum(len(scope.spans) for scope in resource_spans.scope_spans)
        total += count
        if total > MAX_SPANS:
            decoded.reject(count, f"more than {MAX_SPANS} spans in one request")
            continue
        _decode_resource(resource_spans.resource,
                         ((scope.scope.name, scope.spans) for scope in resource_spans.scope_spans),
                         project, run, decoded, cache)
    return decoded


def _decode_resource(resource_message: Any, scopes: Iterable[tuple[str, Iterable[Any]]], project: str | None,
                     run: str | None, decoded: Decoded, cache: _Cache) -> None:
    """Append the rows of one resource's spans (``scopes``: each scope's name and spans) to its project's."""
    resource = stored_attributes(resource_message.attributes)
    target = project or _text(resource.get("tracklet.project")) or _text(resource.get("service.name")) or "default"
    problem = name_problem(target)
    if problem is not None:
        decoded.reject(sum(sum(1 for _ in spans) for _, spans in scopes),
                       f"project {target[:100]!r} is not valid: {problem}")
        return
    run_id = fit(store_text(run or _text(resource.get("tracklet.run")) or ""), 128)
    resource_attributes = {f"resource.{key}": value for key, value in resource.items()}
    rows = decoded.by_project.setdefault(target, [])
    for scope_name, spans in scopes:
        shared = ({"otel.scope.name": fit(store_text(scope_name), 1024), **resource_attributes} if scope_name
                  else resource_attributes)
        _decode_spans(spans, shared, run_id, rows, decoded, cache)
    if not rows:
        del decoded.by_project[target]


def _decode_spans(spans: Any, shared: dict[str, Any], run_id: str, rows: list[tuple[Any, ...]],
                  decoded: Decoded, cache: _Cache) -> None:
    """Append the rows of one scope's spans (``received_row``'s tuples, built here in one loop:
    this runs for every span received). A span's ``attributes`` are its own, as JSON joined from
    its entries' member texts (each made once per request, ``_Entries``) unless a key repeats;
    the scope's and resource's (``shared``) are serialized once for the scope and go in the row's
    last value, stored once per resource (``span_resources``; a read merges them back,
    ``tracklet.store.spans.with_resource``)."""
    resource_json = _dumps(shared) if shared else ""
    kinds, statuses, names, typed = KIND_NAMES, STATUS_NAMES, cache.names, cache.typed
    pair_of, member_of = cache.entries.__getitem__, cache.entries.members.__getitem__
    append, join, hexed = rows.append, ",".join, bytes.hex
    for span in spans:
        trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        if (len(trace_id) != 16 or len(span_id) != 8 or (parent and len(parent) != 8) or (end and end < start)
                or start >= _TIME_LIMIT or end >= _TIME_LIMIT or not any(trace_id) or not any(span_id)):
            decoded.reject(1, _invalid(span) or "a span is not valid")
            continue
        raws = list(span.attributes)
        if not raws:
            own: dict[str, Any] = {}
            attributes_json = "{}"
        else:
            try:
                own = dict(map(pair_of, raws))
            except DecodeError:
                decoded.reject(1, "a span's attribute is not an OTLP KeyValue")
                continue
            if len(own) == len(raws) <= MAX_ATTRIBUTES:
                attributes_json = "{" + join(map(member_of, raws)) + "}"
            else:  # a key repeated (its last value at its first place), or past MAX_ATTRIBUTES
                if len(own) > MAX_ATTRIBUTES:
                    own = dict(itertools.islice(own.items(), MAX_ATTRIBUTES))
                attributes_json = _dumps(own)
        plan = typed[tuple(own)]
        if plan is None:
            columns = NO_TYPED
        else:
            values = plan[0](own)
            try:
                types = tuple(map(type, values))
                # With the types (``1`` and ``True`` hash alike), and a float's text (``-0.0`` is ``0.0``).
                key = (values, types) if float not in types else (values, types, repr(values))
                columns = plan[1].get(key)
                if columns is None:
                    columns = plan[1][key] = received_typed(own)
            except TypeError:  # a value that is a list or a map: not a dict key
                columns = received_typed(own)
        status = span.status
        message = status.message
        append((run_id, hexed(trace_id), hexed(span_id), hexed(parent), names[span.name],
                kinds.get(span.kind, "unspecified"), start, end, max(0, end - start) / 1e6,
                statuses.get(status.code, "unset") if end else OPEN, store_text(message)[:4096] if message else "",
                None, *columns[:5], columns[5], "", columns[6], "", attributes_json,
                _dumps([capped_event({"name": e.name, "time_ns": e.time_unix_nano, "attributes": attributes(e.attributes)})
                        for e in list(span.events)[:MAX_EVENTS]]) if span.events else "[]",
                _dumps([capped_link({"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                                     "attributes": attributes(link.attributes)}) for link in list(span.links)[:MAX_LINKS]])
                if span.links else "[]", resource_json))


class _Names(dict[str, str]):
    """Span names as stored (NUL replaced, cut to the column), each computed once per request."""

    __slots__ = ()

    def __missing__(self, name: str) -> str:
        stored = self[name] = fit(store_text(name), 512)
        return stored


class _Cache:
    """What one request's spans share: attribute entries, names, typed columns (see each class)."""

    __slots__ = ("entries", "names", "typed")

    def __init__(self) -> None:
        self.entries = _Entries()
        self.names = _Names()
        self.typed = _Typed()


_TIME_LIMIT = 2**63  # ns: past int64


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
