"""The worker's half of ``@tracklet.op``: an ``OpCall`` becomes a ``Span`` record.

Runs on the run's sender worker thread (the sender calls the queued ``OpCall``). Here, and not on
the caller: binding the arguments to parameter names, turning them and the result into JSON
(bounded: depth, items, string length), redacting secrets (always: names like ``api_key`` /
``authorization`` and token shapes like ``sk-...`` or ``Bearer ...``, through
``tracklet.core.redact``; then the user's hook, :func:`set_redaction_hook`), and writing a
payload over ``PAYLOAD_INLINE_BYTES`` to the artifacts' content-addressed blob store, the span
keeping its sha256.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import traceback
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Callable

from tracklet.core import forksafe
from tracklet.core.redact import (REDACTED, looks_random, may_hold_secrets, may_name_secrets, redact_text,
                                   secret_name)
from tracklet.core.values import fill_entries
from tracklet.core.wire import varint
from tracklet.proto import records_pb2 as pb
from tracklet.tracing import media as span_media
from tracklet.tracing.ops import OpCall

# JSON text up to this many bytes stays in the span; longer text goes to the blob store.
PAYLOAD_INLINE_BYTES = 8 * 1024
MAX_DEPTH = 32
MAX_ITEMS = 10_000  # per container; the rest are counted in a "..." entry
MAX_STRING = 1 << 20  # characters of one string kept (1 MiB); longer ones are cut and marked
_ARRAY_ITEMS = 1_000  # arrays and tensors up to this many elements are recorded as lists

RedactionHook = Callable[[Any, str, str], Any]
_hook: RedactionHook | None = None
_blob_stores: dict[Path, Any] = forksafe.cache()
_blob_lock = forksafe.lock()


def set_redaction_hook(hook: RedactionHook | None) -> None:
    """Have ``hook(value, part, op_name)`` rewrite what every op records, on the worker, after the
    built-in secret redaction: ``part`` is ``"input"`` (``value``: a dict of arguments by name) or
    ``"output"``; it returns what to record. Should it raise, the part is recorded as
    ``"[redaction failed]"`` (never unredacted). ``None`` removes the hook."""
    global _hook
    if hook is not None and not callable(hook):
        raise TypeError("set_redaction_hook takes a callable or None")
    _hook = hook


class _Budget:
    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0


def _redacted_item(key: str, value: Any) -> bool:
    kind = secret_name(key)
    if kind is None:
        return False
    if kind == "strong":
        return True
    return isinstance(value, str) and looks_random(value)


def _key_name(key: Any) -> str:
    """A dict key as JSON writes it (``json.dumps({True: 1})`` is ``{"true": 1}``); other types by
    ``str``. Both payload paths name keys alike."""
    if type(key) is str:
        return key
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return _float_name(key) if not math.isfinite(key) else float.__repr__(key)
    if isinstance(key, str):
        return str.__str__(key)
    return str(key)


def _float_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def to_json(value: Any, budget: _Budget | None = None, depth: int = 0) -> Any:
    """``value`` as JSON-ready data with secrets redacted (see the module's docstring)."""
    budget = budget or _Budget()
    budget.nodes += 1
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else _float_name(value)
    if kind is not str:  # subclasses of str, int, float (enums, numpy's float64): their value, as JSON has it
        if isinstance(value, str):
            value, kind = str.__str__(value), str
        elif isinstance(value, int):
            return int.__int__(value)
        elif isinstance(value, float):
            return to_json(float.__float__(value), budget, depth)
    if kind is str:
        if len(value) < 8:  # shorter than any secret shape or name=value it could redact
            return value
        text = value if len(value) <= MAX_STRING else value[:MAX_STRING] + f"...[{len(value) - MAX_STRING} chars cut]"
        return redact_text(text)
    if depth >= MAX_DEPTH or budget.nodes > 100 * MAX_ITEMS:
        return f"<{kind.__name__}: too deep to record>"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["..."] = f"{len(value) - MAX_ITEMS} more items"
                break
            name = _key_name(key)
            out[name] = REDACTED if _redacted_item(name, item) else to_json(item, budget, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value) if not isinstance(value, list) else value
        out_list = [to_json(item, budget, depth + 1) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out_list.append(f"... {len(items) - MAX_ITEMS} more items")
        return out_list
    if isinstance(value, (bytes, bytearray, memoryview)):
        sink = span_media.current()
        if sink is not None and len(value) > span_media.BYTES_INLINE:
            return span_media.reference(value, sink)
        return {"_type": "bytes", "size": len(value)}
    if span_media.is_media(value):
        sink = span_media.current()
        if sink is not None:
            return span_media.reference(value, sink)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json({f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}, budget, depth + 1)
    dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(dump) and not isinstance(value, type):
        try:
            return to_json(dump(), budget, depth + 1)
        except Exception:
            pass
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):  # numpy arrays, torch/jax tensors
        return _array(value, shape)
    if hasattr(value, "item") and hasattr(value, "dtype"):
        try:
            return to_json(value.item(), budget, depth + 1)
        except Exception:
            pass
    try:
        text = repr(value)
    except Exception as error:
        text = f"<{kind.__name__}: repr failed: {error!r}>"
    return redact_text(text[:MAX_STRING])


def _array(value: Any, shape: Any) -> Any:
    try:
        shape = [int(n) for n in shape]
        size = math.prod(shape)
        described = {"_type": type(value).__name__, "shape": shape, "dtype": str(value.dtype)}
        if size <= _ARRAY_ITEMS:
            data = value.tolist() if hasattr(value, "tolist") else None
            if data is None and hasattr(value, "detach"):
                data = value.detach().cpu().tolist()
            described["data"] = to_json(data)
        return described
    except Exception as error:
        return f"<{type(value).__name__}: {error!r}>"


def _metadata(value: Any) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def bind_inputs(call: Any) -> dict[str, Any]:
    """The call's arguments by parameter name (``self``/``cls`` left out); positional ones beyond
    the signature under ``args``. Falls back to ``{"args": [...], **kwargs}``."""
    op = call.op
    names = op.positional
    args, kwargs = call.args, call.kwargs
    if names is not None and len(args) <= len(names):
        arguments = dict(zip(names, args))  # the common case, without inspect's bind
        if kwargs and arguments.keys().isdisjoint(kwargs):
            arguments.update(kwargs)  # keywords (a positional parameter's too) after the positional ones
            kwargs = {}
        if not kwargs:
            if names and names[0] in ("self", "cls"):
                arguments.pop(names[0], None)
            return arguments
    signature = op.signature
    if signature is not None:
        try:
            bound = signature.bind(*call.args, **call.kwargs)
            arguments = dict(bound.arguments)
            first = next(iter(signature.parameters), None)
            if first in ("self", "cls"):
                arguments.pop(first, None)
            return arguments
        except TypeError:
            pass
    return {"args": list(call.args), **call.kwargs} if call.args else dict(call.kwargs)


def _blob_store(root: Path) -> Any:
    store = _blob_stores.get(root)
    if store is None:
        with _blob_lock:
            store = _blob_stores.get(root)
            if store is None:
                from tracklet.artifacts.blobs import FsspecBlobStore
                from tracklet.artifacts.storage import artifact_dir

                store = _blob_stores[root] = FsspecBlobStore(artifact_dir(root))
    return store


def _user_redaction(value: Any, part: str, name: str) -> Any:
    hook = _hook
    if hook is None:
        return value
    try:
        return to_json(hook(value, part, name))
    except Exception:
        return "[redaction failed]"


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)

# The fast path (docs/tracing.md, "Payloads"): the C encoder writes the whole value in one call,
# refusing anything but plain JSON types; substring checks (``core/redact.py``:
# ``may_hold_secrets``, ``may_name_secrets``) show that no string needs redaction and no key is
# named like a secret. Only values that fail a check, or whose JSON could hold what the walk cuts
# (``_within_bounds``), take ``to_json``'s walk (a Python call per value).
FAST_PATH_CHARS = MAX_STRING  # no string in a shorter text is longer than MAX_STRING


def _within_bounds(text: str) -> bool:
    """Whether JSON ``text`` holds nothing ``to_json`` would cut for its length or item count:
    every container's items but one are followed by a comma, so fewer commas than ``MAX_ITEMS``
    (counted in C; strings' commas too) means no container reaches it."""
    return len(text) <= FAST_PATH_CHARS and (len(text) < 2 * MAX_ITEMS or text.count(",") < MAX_ITEMS)


_SAFE_NAMES: set[str] = set()  # dict keys seen that are not named like secrets (bounded)
_SAFE_NAMES_MAX = 10_000


def _refuse(value: Any) -> Any:
    raise TypeError("not plain JSON")


# One C encoder made once (``JSONEncoder.encode`` builds one per call): no circular-reference
# markers, so it can be shared by every run's worker; a cycle ends in RecursionError, and the walk.
_c_encode = c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", False, False, False) \
    if c_make_encoder is not None else None
_FAST_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse)


def _plain_json(value: Any) -> str | None:
    """JSON text of a value of plain JSON types only (no NaN), in one C call; None otherwise."""
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0))
        return _FAST_ENCODER.encode(value)
    except Exception:  # not plain JSON (NaN, sets, objects), or nested too deeply
        return None


def _names_safe(text: str) -> bool:
    """Whether no object key in JSON ``text`` is named like a secret (one Python call per object)."""
    safe = True

    def check(obj: dict[str, Any]) -> dict[str, Any]:
        nonlocal safe
        if safe and not _SAFE_NAMES.issuperset(obj):
            for name in obj:
                if name in _SAFE_NAMES:
                    continue
                if secret_name(name) is not None:
                    safe = False
                    break
                if len(_SAFE_NAMES) < _SAFE_NAMES_MAX:
                    _SAFE_NAMES.add(name)
        return obj

    json.loads(text, object_hook=check)
    return safe


def payload_json(value: Any) -> str:
    """``value`` as JSON text, secrets redacted and bounded as :func:`to_json` does."""
    text = _plain_json(value)
    if text is not None and _within_bounds(text):
        lowered = text.lower()
        if not may_hold_secrets(text, lowered) and (not may_name_secrets(lowered) or _names_safe(text)):
            return text
    return _ENCODER.encode(to_json(value))


def fill_payload(message: Any, value: Any, root: Path | None) -> None:
    """Put JSON-ready ``value`` into a ``SpanPayload``: inline, or as a blob when long."""
    fill_payload_text(message, _ENCODER.encode(value), root)


def fill_payload_text(message: Any, text: str, root: Path | None) -> None:
    """Put JSON ``text`` into a ``SpanPayload``: inline, or as a blob when long."""
    data = text.encode("utf-8", "surrogatepass")
    message.size_bytes = len(data)
    if len(data) <= PAYLOAD_INLINE_BYTES or root is None:
        message.json = data.decode("utf-8", "replace")
        return
    digest, note = _stored(data, root)
    if digest:
        message.blob_digest = digest
    else:
        message.json = note


def _stored(data: bytes, root: Path) -> tuple[str, str]:
    """``data`` written to the blob store: ``(digest, "")``; when the store fails (a full disk),
    ``("", note)``: JSON saying so, which the span keeps in the payload's place rather than being
    lost."""
    try:
        digest, _ = _blob_store(root).put_bytes(data)
        return str(digest), ""
    except Exception as error:
        return "", json.dumps({"_type": "payload", "size": len(data), "error": f"not stored: {error}"[:500]})


SKIP, SEEN_OPEN, WRITTEN = -1, 1, 2


def claim(call: Any) -> int:
    """The worker's side of ``OpCall``'s handshake: ``WRITTEN`` (write the finished span now),
    ``SEEN_OPEN`` (the call is still running: write its start), or ``SKIP`` (written before)."""
    if call.state == WRITTEN:
        return SKIP
    call.state = SEEN_OPEN  # before reading ``end``: a caller ending after this queues it again
    if not call.end:
        return SEEN_OPEN
    call.state = WRITTEN
    return WRITTEN


def open_span_record(call: Any) -> pb.Record:
    """The start of a span still running when the worker drained: ids, name, start, run and
    step, no end (``end_time_unix_nano`` 0) and no payloads. Its finished record, written later
    with the same ids, replaces it; after a kill, readers show it as unfinished."""
    record = pb.Record()
    span = record.span
    span.MergeFromString(_template(call.op))
    attributes = call.open_attributes()
    name = getattr(call, "name", None)
    if name:
        span.name = name
        span.kind = pb.Span.KIND_CLIENT
    span.trace_id = call.trace_id.to_bytes(16, "big")
    span.span_id = call.span_id.to_bytes(8, "big")
    if call.parent_id:
        span.parent_span_id = call.parent_id.to_bytes(8, "big")
    span.start_time_unix_nano = call.start
    span.run_id = call.run.id
    span.step = call.step
    if attributes:
        fill_entries(span.attributes, attributes)
    return record


def span_record(call: Any) -> pb.Record:
    """The ``Span`` record of a finished ``OpCall`` (``tracklet/tracing/ops.py``)."""
    record = pb.Record()
    span = record.span
    op = call.op
    template = op.template
    if template is None:  # what every span of this op shares, built once (one C call per span after)
        shared = pb.Span(name=op.name, kind=pb.Span.KIND_INTERNAL)
        fill_entries(shared.attributes, {"tracklet.op.kind": op.kind, "tracklet.op.capture": op.capture})
        template = op.template = shared.SerializeToString()
    span.MergeFromString(template)
    span.trace_id = call.trace_id.to_bytes(16, "big")
    span.span_id = call.span_id.to_bytes(8, "big")
    if call.parent_id:
        span.parent_span_id = call.parent_id.to_bytes(8, "big")
    span.start_time_unix_nano = call.start
    span.end_time_unix_nano = call.end
    run = call.run
    span.run_id = run.id
    span.step = call.step
    attributes: dict[str, Any] = getattr(call, "attributes", None) or {}  # an LLM client call's GenAI keys
    name = getattr(call, "name", None)
    if name:
        span.name = name
        span.kind = pb.Span.KIND_CLIENT
    if call.items >= 0:
        attributes["tracklet.op.items"] = call.items
    error = call.error
    if error is None:
        span.status_code = pb.Span.STATUS_OK
    else:
        span.status_code = pb.Span.STATUS_ERROR
        message = redact_text(f"{type(error).__name__}: {error}")[:4096]
        span.status_message = message
        event = span.events.add()
        event.name = "exception"
        event.time_unix_nano = call.end
        fill_entries(event.attributes, {
            "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
            "exception.message": redact_text(str(error))[:4096],
            "exception.stacktrace": redact_text("".join(
                traceback.format_exception(type(error), error, error.__traceback__)))[:65536],
            "exception.escaped": True,
        })
    if attributes:
        fill_entries(span.attributes, attributes)
    root = getattr(getattr(run, "_paths", None), "root", None)
    if op.capture == "full":
        sink = span_media.begin(root)
        try:
            if _hook is None:
                fill_payload_text(span.input, payload_json(bind_inputs(call)), root)
                if error is None:
                    fill_payload_text(span.output, payload_json(call.result), root)
            else:
                fill_payload(span.input, _user_redaction(to_json(bind_inputs(call)), "input", op.name), root)
                if error is None:
                    fill_payload(span.output, _user_redaction(to_json(call.result), "output", op.name), root)
        finally:
            span_media.end()
        if sink.digests:
            fill_entries(span.attributes, {span_media.MEDIA_ATTRIBUTE: span_media.attribute(sink)})
    elif op.capture == "metadata":
        fill_payload(span.input, {name: _metadata(value) for name, value in bind_inputs(call).items()}, root)
        if error is None:
            fill_payload(span.output, _metadata(call.result), root)
    # Drop the references now: the record holds what is kept.
    call.args = ()
    call.kwargs = {}
    call.result = None
    call.error = None
    return record


# ---------------------------------------------------------------- a drain's op calls at once
# The sender hands the worker's consecutive op calls here together (``OpCall.batch_records``).
# The common span (an ``OpCall`` that returned, no generator, no redaction hook) is written
# without building protobuf messages: its fields are few and fixed, so its bytes are assembled
# from the op's serialized template and the fields' wire encodings (tests compare them with
# ``span_record``'s). Secret prefilters run once over all the calls' payload texts joined.

# Span fields 1-2 (trace and span id, big-endian bytes), 3 (parent id), 7-9 (start and end as
# fixed64, little-endian; status OK): tags and values packed in one C call each.
_IDS = struct.Struct(">2sQQ2sQ")
_PARENT = struct.Struct(">2sQ")
_TIMES = struct.Struct("<1sQ1sQ2s")
_MASK64 = (1 << 64) - 1
_run_ids: dict[str, bytes] = {}  # a run id's encoded field (tag, length, UTF-8)
_SMALL = [bytes((n,)) for n in range(128)]  # varint(n) for n < 128, without the call


def _template(op: Any) -> bytes:
    template = op.template
    if template is None:
        shared = pb.Span(name=op.name, kind=pb.Span.KIND_INTERNAL)
        fill_entries(shared.attributes, {"tracklet.op.kind": op.kind, "tracklet.op.capture": op.capture})
        template = op.template = shared.SerializeToString()
    return template


def _payload_field(tag: bytes, text: str, root: Path | None) -> bytes:
    """A ``SpanPayload`` field (``tag``: field 16 or 17) holding JSON ``text``, inline or as a blob."""
    try:
        data = inline = text.encode("utf-8")  # the same bytes "surrogatepass" gives, when it succeeds
    except UnicodeEncodeError:  # lone surrogates: sized as they are, stored as fill_payload_text stores them
        data = text.encode("utf-8", "surrogatepass")
        inline = data.decode("utf-8", "replace").encode("utf-8")
    length = len(data)
    size = _SMALL[length] if length < 128 else varint(length)
    if length <= PAYLOAD_INLINE_BYTES or root is None:
        count = len(inline)
        body = b"\x0a" + (_SMALL[count] if count < 128 else varint(count)) + inline + b"\x18" + size
    else:
        digest, note = _stored(data, root)
        if digest:
            body = b"\x12\x40" + digest.encode("ascii") + b"\x18" + size
        else:
            inline = note.encode("utf-8")
            body = b"\x0a" + varint(len(inline)) + inline + b"\x18" + size
    length = len(body)
    return tag + (_SMALL[length] if length < 128 else varint(length)) + body


def _media_field(digests: list[str]) -> bytes:
    """The ``Span`` field bytes of its ``tracklet.media`` attribute (a repeated field: appended)."""
    shared = pb.Span()
    fill_entries(shared.attributes, {span_media.MEDIA_ATTRIBUTE: digests})
    return shared.SerializeToString()


def _span_bytes(call: Any, inputs: str | None, output: str | None, root: Path | None, extra: bytes = b"") -> bytes:
    """The serialized ``Record`` holding the ``Span`` of a returned ``OpCall``."""
    run_id = call.run.id
    run_field = _run_ids.get(run_id)
    if run_field is None:
        encoded = run_id.encode("utf-8")
        run_field = _run_ids[run_id] = b"\x72" + varint(len(encoded)) + encoded if encoded else b""
        if len(_run_ids) > 1000:
            _run_ids.clear()
    trace_id = call.trace_id
    parts = [_template(call.op), _IDS.pack(b"\x0a\x10", trace_id >> 64, trace_id & _MASK64, b"\x12\x08", call.span_id)]
    if call.parent_id:
        parts.append(_PARENT.pack(b"\x1a\x08", call.parent_id))
    step = call.step & _MASK64
    parts += (_TIMES.pack(b"\x39", call.start, b"\x41", call.end, b"\x48\x01"), run_field, b"\x78",
              _SMALL[step] if step < 128 else varint(step))
    if inputs is not None:
        parts.append(_payload_field(b"\x82\x01", inputs, root))
    if output is not None:
        parts.append(_payload_field(b"\x8a\x01", output, root))
    if extra:
        parts.append(extra)
    span = b"".join(parts)
    length = len(span)
    return b"\x7a" + (_SMALL[length] if length < 128 else varint(length)) + span


def _fast_text(value: Any) -> str | None:
    text = _plain_json(value)
    return text if text is not None and _within_bounds(text) else None


def batch_records(calls: list[Any]) -> list[bytes | BaseException]:
    """The serialized ``Record`` of each op call, in order: its span if it has ended, its start if
    it is still running (``claim``), nothing if written before; a call that fails gives its
    exception in its place (the sender reports it), never the others'. The sender charges the
    worker's CPU time on them, these and their delivery, to the run's tracing budget
    (``OpCall.charge_batch``)."""
    common = []  # (index, inputs text or None, output text or None) of the calls written by hand
    out: list[bytes | BaseException] = []
    texts: list[str] = []
    for index, call in enumerate(calls):
        out.append(b"")
        try:
            state = claim(call)
            if state != WRITTEN:
                if state == SEEN_OPEN:
                    out[index] = open_span_record(call).SerializeToString()
                continue
            if type(call) is not OpCall or call.error is not None or call.items >= 0 or _hook is not None:
                record = call._record()
                out[index] = b"" if record is None else record.SerializeToString()
                continue
            capture = call.op.capture
            if capture == "full":
                inputs: Any = bind_inputs(call)
                output: Any = call.result
                inputs_text, output_text = _fast_text(inputs), _fast_text(output)
                common.append((index, inputs_text, output_text, inputs, output))
                for text in (inputs_text, output_text):
                    if text is not None and len(text) <= _JOINED_MAX:
                        texts.append(text)
            elif capture == "metadata":
                bound = bind_inputs(call)
                common.append((index, _ENCODER.encode({name: _metadata(v) for name, v in bound.items()}),
                               _ENCODER.encode(_metadata(call.result)), None, None))
            else:
                common.append((index, None, None, None, None))
        except Exception as error:
            out[index] = error
    if not common:
        return out
    joined = "\x00".join(texts)
    lowered = joined.lower()
    clean = not may_hold_secrets(joined, lowered) and (not may_name_secrets(lowered) or _all_names_safe(texts))
    for index, inputs_text, output_text, inputs, output in common:
        call = calls[index]
        try:
            root = getattr(getattr(call.run, "_paths", None), "root", None)
            extra = b""
            if call.op.capture == "full" and (inputs_text is None or output_text is None or not clean):
                sink = span_media.begin(root)  # the walk stores media it meets (tracing/media.py)
                try:
                    if inputs_text is None or not _clean(inputs_text, clean):
                        inputs_text = _ENCODER.encode(to_json(inputs))
                    if output_text is None or not _clean(output_text, clean):
                        output_text = _ENCODER.encode(to_json(output))
                finally:
                    span_media.end()
                if sink.digests:
                    extra = _media_field(span_media.attribute(sink))
            out[index] = _span_bytes(call, inputs_text, output_text, root, extra)
        except Exception as error:
            out[index] = error
        finally:
            call.args, call.kwargs, call.result, call.error = (), {}, None, None
    return out


# Texts up to this long are checked together; a longer one on its own (where a text without the
# prefilter's hint characters skips its searches: core/redact.py).
_JOINED_MAX = 1 << 16


def _clean(text: str, joined_clean: bool) -> bool:
    return (joined_clean and len(text) <= _JOINED_MAX) or _text_clean(text)


def _text_clean(text: str) -> bool:
    lowered = text.lower()
    return not may_hold_secrets(text, lowered) and (not may_name_secrets(lowered) or _names_safe(text))


def _all_names_safe(texts: list[str]) -> bool:
    return all(_names_safe(text) for text in texts)
