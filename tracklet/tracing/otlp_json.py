"""OTLP/JSON trace export bodies read span by span, in bounded memory and time.

``json.loads`` of a whole body builds every span's objects at once (an empty span, ``{}``, costs
~100 bytes as a dict, ~25x its text), and protobuf's ``json_format.ParseDict`` builds its messages
on top: a 3 MiB body of empty spans grew the server by ~445 MiB. Here the body's text is walked by
hand only through its fixed frame (the request object, ``resourceSpans``, ``scopeSpans``,
``spans``); each value inside that frame (a resource, a scope, one span) is parsed on its own by
the standard library's C scanner and turned into a protobuf message, so what one span costs is
freed before the next is read. Peak memory: the body, its text (as many bytes again for ASCII,
up to 4x for astral characters), the rows decoded so far, and one value's objects, never more
than ``MAX_VALUE_PARSE_BYTES`` (a value is parsed from a window of the text that grows until the
value fits in it; a window is estimated with ``core/parsecost.py`` before it is parsed once it is
long enough to cost more). Time is linear in the body: the hand-walked frame takes a Python step
per span, scope and resource, at most ``MAX_UNITS`` of them.

A span that isn't one (a key twice in it, a field of the wrong type, an id not hex, not an object,
nesting past ``json_format``'s depth or the C scanner's recursion, an integer too long to convert)
is passed to the caller's ``reject`` and left out, as the protobuf path rejects a span alone (OTLP's
partial success); a span the scanner can't read is read past by its brackets and strings alone
(``_Reader._past_nested``). What is wrong with the request gets an ``OtlpError`` naming the problem
(the server's 400): not UTF-8, not JSON (with the character where it stops being JSON), the frame
of the wrong type, a bad resource or scope; too much to parse at all is an ``OtlpTooLarge`` (413).
The frame's keys may come in any order (a resource after its scopes, a scope after its spans: the
spans are read again once it is known, unless no such key can follow, ``_Reader.none_later``) and
in protobuf's JSON names or the proto field names; other keys are ignored, as ``json_format`` does
with ``ignore_unknown_fields``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from tracklet.errors import OtlpError, OtlpTooLarge

# At most this many resources, scopes and spans in one request (the protobuf path's MAX_SPANS).
MAX_UNITS = 200_000
# The most memory one value's parse may take (its window's estimate, core/parsecost.py).
MAX_VALUE_PARSE_BYTES = 64 << 20
# A window this long can't cost more than the limit whatever it holds (json_parse_cost's highest
# cost per character is an object's: ~212 bytes), so it is parsed without an estimate.
_FREE_WINDOW = MAX_VALUE_PARSE_BYTES // 256
_FIRST_WINDOW = 4096
_BATCH_SPANS = 256
_BATCH_CHARS = 64 << 10

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_RESOURCE_SPANS = frozenset({"resourceSpans", "resource_spans"})
_SCOPE_SPANS = frozenset({"scopeSpans", "scope_spans"})
_SURROGATE = re.compile("[\ud800-\udfff]")
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
# A string token or a run of brackets (``_Reader._past_nested``).
_NESTING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[{]+|[\]}]+')
_NUMBER = re.compile(r"[-+0-9.eE]*")
# Text that a key "resource" / "scope" must contain, however written: itself, or one of its
# letters as a JSON escape (``\u0072`` is "r"); ``_Reader.none_later``.
_KEY_LATER = {"resource": ('"resource"', frozenset({"72", "65", "73", "6f", "6F", "75", "63"})),
              "scope": ('"scope"', frozenset({"73", "63", "6f", "6F", "70", "65"}))}


class _Rejected:
    """A span rejected before it became a message (``_Reader.span``, ``_converted``): why."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class _ValueFault(OtlpError):
    """A value's text that is JSON but can't be read as one (a key twice, nesting past the
    parser's recursion, a number too long): in a span, that span is rejected (``_Reader.span``)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refused where a key appears twice (``json.loads`` keeps the last)."""
    made = dict(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _ValueFault(f"the JSON body has the key {key[:100]!r} twice in one object")
            seen.add(key)
    return made


_DECODER = json.JSONDecoder(object_pairs_hook=_object)


class _Reader:
    """A cursor over the body's text: the frame's objects and arrays walked a token at a time,
    the values inside them parsed whole (``value``)."""

    def __init__(self, text: str, reject: Callable[[int, str], None] | None) -> None:
        self.text = text
        self.pos = 0
        self.units = 0
        self.window = _FIRST_WINDOW
        self.reject = reject
        self.next_key: dict[str, int] = {}  # _KEY_LATER's: where its next match is, -1: none

    def _skip_whitespace(self) -> str:
        """The next character past whitespace ("" at the end)."""
        self.pos = _WHITESPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]
        return self.text[self.pos:self.pos + 1]

    def _expect(self, char: str, what: str) -> None:
        found = self._skip_whitespace()
        if found != char:
            shown = repr(found) if found else "the end of the body"
            raise OtlpError(f"the body is not JSON: {what} expects {char!r} at character {self.pos}, not {shown}")
        self.pos += 1

    def null(self) -> bool:
        """Whether the next value is ``null`` (then read past it): protobuf's JSON leaves such a field unset."""
        if self._skip_whitespace() == "n" and self.text.startswith("null", self.pos):
            self.pos += 4
            return True
        return False

    def _ends_early(self, what: str) -> None:
        if not self._skip_whitespace():
            raise OtlpError(f"the body is not JSON: it ends inside {what}, at character {self.pos}")

    def members(self, what: str) -> Iterator[str]:
        """The keys of the object at the cursor; the caller reads each key's value before asking
        for the next. Keys given twice (either spelling of a frame key) are refused."""
        self._ends_early(what)
        if self._skip_whitespace() != "{":
            raise OtlpError(f"{what} must be a JSON object")
        self.pos += 1
        seen: set[str] = set()
        if self._skip_whitespace() == "}":
            self.pos += 1
            return
        while True:
            if self._skip_whitespace() != '"':
                raise OtlpError(f"the body is not JSON: {what} expects a key in double quotes at character {self.pos}")
            key = self.value()
            canonical = "resourceSpans" if key in _RESOURCE_SPANS else "scopeSpans" if key in _SCOPE_SPANS else key
            if canonical in seen:
                raise OtlpError(f"the JSON body has the key {key[:100]!r} twice in {what}")
            seen.add(canonical)
            self._expect(":", what)
            yield canonical
            following = self._skip_whitespace()
            self.pos += 1
            if following == "}":
                return
            if following != ",":
                self.pos -= 1
                self._expect("}", what)

    def elements(self, what: str, count: bool = True) -> Iterator[None]:
        """Stops at each element of the array at the cursor (``null``: none); the caller reads it.
        Each counts against ``MAX_UNITS`` unless ``count`` is false (an array read a second time)."""
        if self.null():
            return
        self._ends_early(what)
        if self._skip_whitespace() != "[":
            raise OtlpError(f"{what} must be a JSON array")
        self.pos += 1
        if self._skip_whitespace() == "]":
            self.pos += 1
            return
        while True:
            if count:
                self.units += 1
                if self.units > MAX_UNITS:
                    raise OtlpTooLarge(f"the JSON body holds more than {MAX_UNITS:,} spans, scopes and resources: "
                                       "send fewer spans per request")
            yield
            following = self._skip_whitespace()
            self.pos += 1
            if following == "]":
                return
            if following != ",":
                self.pos -= 1
                self._expect("]", what)

    def value(self) -> Any:
        """The JSON value at the cursor, parsed whole from a window of the text that starts at
        twice the last value's length and doubles until the value fits (a window cut inside the
        value fails at its end); a window past ``_FREE_WINDOW`` is estimated first, and refused
        (``OtlpTooLarge``) above ``MAX_VALUE_PARSE_BYTES``."""
        from tracklet.core.parsecost import json_parse_cost

        self._skip_whitespace()
        text, start = self.text, self.pos
        remaining = len(text) - start
        size = min(self.window, remaining)
        while True:
            whole = size >= remaining
            window = text[start:start + size]
            if size > _FREE_WINDOW and json_parse_cost(window.encode()) > MAX_VALUE_PARSE_BYTES:
                raise OtlpTooLarge(f"a value at character {start} of the JSON body (a span, its resource or scope) "
                                   f"would take more than {MAX_VALUE_PARSE_BYTES >> 20} MiB of memory to parse: "
                                   "refused unparsed")
            try:
                found, end = _DECODER.raw_decode(window)
            except json.JSONDecodeError as error:
                cut = error.msg.startswith("Unterminated string") or error.pos >= len(window) - 8
                if whole or not cut:
                    raise OtlpError(f"the body is not JSON: {error.msg} at character {start + error.pos}") from None
            except OtlpError:  # a key twice (``_object``)
                raise
            except RecursionError:
                raise _ValueFault(f"the JSON body nests too deeply at character {start}") from None
            except ValueError as error:  # an integer of more digits than int() converts
                raise _ValueFault(f"the JSON body has a number that can't be read at character {start}: {error}") from None
            else:
                if whole or end < len(window):  # else a number or literal may go on past the window
                    self.pos = start + end
                    self.window = max(_FIRST_WINDOW, 2 * end)
                    return found
            del window
            size = min(2 * size, remaining)

    def skip(self) -> None:
        """Read past the value at the cursor (a key the request's frame doesn't use)."""
        self.value()

    def span(self) -> Any:
        """The span at the cursor parsed (``value``), or, where its text is JSON that can't be read
        as a value (``_ValueFault``: a key twice, nesting past the parser, a number too long), a
        ``_Rejected`` saying why, the cursor moved past the span (``_past_nested``)."""
        self._skip_whitespace()
        start = self.pos
        try:
            return self.value()
        except _ValueFault as fault:
            self.pos = start
            self._past_nested(str(fault))
            return _Rejected(f"a span is not valid: {fault}")

    def _past_nested(self, why: str) -> None:
        """Move the cursor past the object or array at it by its brackets alone (strings skipped
        whole, a run of brackets a step), for a value the parser can't read (``why``): linear in its
        text, without recursion. What lies between the brackets is not checked."""
        depth = 0
        start = self.pos
        if self.text[start:start + 1] not in ("[", "{"):  # a number too long for int()
            self.pos = _NUMBER.match(self.text, start).end()  # type: ignore[union-attr]
            return
        text = self.text
        for match in _NESTING.finditer(text, start):
            first, size = match.start(), match.end() - match.start()  # not match.group(): no copy
            if text[first] == '"':
                if depth == 0:
                    break
                continue
            if text[first] in "[{":
                depth += size
            elif size >= depth:
                self.pos = first + depth
                return
            else:
                depth -= size
        raise OtlpError(f"the body is not JSON: it ends inside a span at character {start} that can't be read ({why})")

    def rejected(self, why: str) -> None:
        """One span rejected (``reject``: the caller counts it, OTLP's partial success), or, without
        a ``reject``, the request refused."""
        if self.reject is None:
            raise OtlpError(why)
        self.reject(1, why)

    def none_later(self, key: str) -> bool:
        """Whether no key ``key`` (``_KEY_LATER``: "resource" or "scope") can occur anywhere past
        the cursor: the text is searched (``str.find``, in C) up to the next place the key's text
        or one of its letters as a JSON escape (``\\u0072`` is "r") is, which is remembered, so the
        searches of a body are linear in it together. Such a place may be no key (a string value
        of that text): then this says False, which costs only the spans' second read."""
        found = self.next_key.get(key)
        if found is None or 0 <= found < self.pos:
            text, (quoted, letters) = self.text, _KEY_LATER[key]
            found = text.find(quoted, self.pos)
            escape = text.find("\\u00", self.pos)
            while escape != -1 and (found == -1 or escape < found) and text[escape + 4:escape + 6] not in letters:
                escape = text.find("\\u00", escape + 1)
            if escape != -1 and (found == -1 or escape < found):
                found = escape
            self.next_key[key] = found
        return found == -1

    def at_end(self) -> None:
        if self._skip_whitespace():
            raise OtlpError(f"the body is not JSON: extra data at character {self.pos}")


def _message(data: Any, message: Any, what: str) -> Any:
    """``data`` (a parsed JSON value) as the protobuf ``message`` type, ``OtlpError`` naming what isn't."""
    from google.protobuf import json_format

    parsed = message()
    if data is None:
        return parsed
    if not isinstance(data, dict):
        raise OtlpError(f"the JSON body is not an OTLP ExportTraceServiceRequest: {what} must be an object")
    try:
        try:
            json_format.ParseDict(data, parsed, ignore_unknown_fields=True)
        except json_format.ParseError as error:
            if "surrogate" not in str(error):
                raise
            # JSON's "\ud83d" alone (a JavaScript exporter's string cut inside a character) is
            # U+FFFD, as tracklet records such strings elsewhere, not the whole request refused.
            parsed = message()
            json_format.ParseDict(_replace_lone_surrogates(data), parsed, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as error:
        raise OtlpError(f"the JSON body is not an OTLP ExportTraceServiceRequest: {what}: {error}") from None
    return parsed


def _base64_ids(data: dict[str, Any], what: str) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON parser reads bytes as base64."""
    for key in _ID_KEYS:
        item = data.get(key)
        if isinstance(item, str):
            try:
                data[key] = base64.b64encode(bytes.fromhex(item)).decode("ascii")
            except ValueError:
                raise OtlpError(f"{what}'s {key} {item[:40]!r} is not hex") from None


def _converted(batch: list[Any], raw_scope: Any, reader: _Reader) -> Any:
    """Spans' parsed JSON (``_BATCH_*`` of them: ``json_format`` costs less per span in one call) as
    ``raw_scope`` spans (``otlp._raw_request``'s: attributes left encoded). A span that isn't one
    (not an object, an id not hex, a field of the wrong type, attributes nesting past
    ``json_format``'s depth) is rejected alone (``reader.rejected``): the batch is made again span by
    span where it fails."""
    good = []
    for data in batch:
        problem = data.why if isinstance(data, _Rejected) else _span_problem(data)
        if problem is None:
            good.append(data)
        else:
            reader.rejected(problem)
    try:
        return _spans_message(good, raw_scope)
    except OtlpError as error:
        if len(good) == 1:
            reader.rejected(_not_a_span(error))
            return []
    spans = []
    for data in good:
        try:
            spans.extend(_spans_message([data], raw_scope))
        except OtlpError as error:
            reader.rejected(_not_a_span(error))
    return spans


def _not_a_span(error: OtlpError) -> str:
    """``_message``'s error for one span, without what it says of the request the span was put in."""
    reason = str(error).split(": spans: ", 1)[-1]
    reason = reason.split("Failed to parse spans field: ", 1)[-1]
    if reason.startswith("maximum recursion depth exceeded") or "Message too deep" in reason:
        reason = "its values nest too deeply (past protobuf's 100 levels of messages)"
    return f"a span is not valid: {reason.split(' at ScopeSpans.spans[0]', 1)[0].rstrip('.')}"


def _spans_message(batch: list[Any], raw_scope: Any) -> Any:
    from tracklet.proto import otlp_trace_pb2 as otlp

    return raw_scope.FromString(_message({"spans": batch}, otlp.ScopeSpans, "spans").SerializeToString()).spans


def _span_problem(data: Any) -> str | None:
    """What makes a span's parsed JSON no span before ``json_format`` reads it (its ids turned from
    OTLP/JSON's hex to the base64 ``json_format`` reads, in place), or None."""
    if not isinstance(data, dict):
        return "a span is not valid: a span must be an object"
    try:
        _base64_ids(data, "a span")
        links = data.get("links")
        for link in links if isinstance(links, list) else ():  # another type: json_format says what is wrong
            if isinstance(link, dict):
                _base64_ids(link, "a span link")
    except OtlpError as error:
        return f"a span is not valid: {error}"
    return None


def _replace_lone_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON) with each lone surrogate of its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(key): _replace_lone_surrogates(item) for key, item in value.items()}
    return value


def resources(body: bytes, raw_scope: Any, reject: Callable[[int, str], None] | None = None,
              ) -> Iterator[tuple[Any, Iterator[tuple[str, Iterator[Any]]]]]:
    """Each resource of an OTLP/JSON body (an ``opentelemetry.proto.resource.v1.Resource``) with its
    scopes' names and spans (those of ``raw_scope``, a ``ScopeSpans`` type: ``otlp._raw_request``'s
    leaves attributes encoded), read as consumed:
    each scope's spans must be read before the next scope, each resource's scopes before the next
    resource. A span that isn't one is passed to ``reject`` (a count, why) and left out; without
    ``reject`` it refuses the request (``OtlpError``), as does what is wrong with the request's frame."""
    try:
        text = body.decode()
    except UnicodeDecodeError as error:
        raise OtlpError(f"the JSON body is not UTF-8: {error}") from None
    reader = _Reader(text, reject)
    if reader._skip_whitespace() != "{":
        raise OtlpError("the JSON body must be an object (an ExportTraceServiceRequest)")
    for key in reader.members("the request"):
        if key != "resourceSpans":
            reader.skip()
            continue
        for _ in reader.elements("resourceSpans"):
            yield from _resource_spans(reader, raw_scope)
    reader.at_end()


def _resource_spans(reader: _Reader, raw_scope: Any) -> Iterator[tuple[Any, Iterator[tuple[str, Iterator[Any]]]]]:
    from tracklet.proto import otlp_trace_pb2 as otlp

    if reader.null():
        raise OtlpError("the JSON body is not an OTLP ExportTraceServiceRequest: a resourceSpans item is null")
    resource = None
    later = None  # where scopeSpans starts, when it came before the resource
    for key in reader.members("a resourceSpans item"):
        if key == "resource":
            if resource is not None:  # none_later said no such key could follow
                raise OtlpError("the JSON body has a resource after its scopes where none was expected")
            resource = _message(reader.value(), otlp.Resource, "a resource")
        elif key == "scopeSpans" and resource is None and not reader.none_later("resource"):
            later = reader.pos
            _skip_scope_spans(reader)  # checked and counted now, read for its spans once the resource is known
        elif key == "scopeSpans":
            if resource is None:  # no resource can follow: the spans are read once
                resource = otlp.Resource()
            scopes = _scope_spans(reader, raw_scope, count=True)
            yield resource, scopes
            for _ in scopes:  # what the consumer left unread
                pass
        else:
            reader.skip()
    if later is not None:
        end, reader.pos = reader.pos, later
        scopes = _scope_spans(reader, raw_scope, count=False)
        yield resource or otlp.Resource(), scopes
        for _ in scopes:
            pass
        reader.pos = end


def _scope_spans(reader: _Reader, raw_scope: Any, count: bool) -> Iterator[tuple[str, Iterator[Any]]]:
    from tracklet.proto import otlp_trace_pb2 as otlp

    for _ in reader.elements("scopeSpans", count):
        if reader.null():
            raise OtlpError("the JSON body is not an OTLP ExportTraceServiceRequest: a scopeSpans item is null")
        scope = None
        later = None  # where spans start, when they came before the scope
        for key in reader.members("a scopeSpans item"):
            if key == "scope":
                if scope is not None:  # none_later said no such key could follow
                    raise OtlpError("the JSON body has a scope after its spans where none was expected")
                scope = _message(reader.value(), otlp.InstrumentationScope, "a scope")
            elif key == "spans" and scope is None and not reader.none_later("scope"):
                later = reader.pos
                for _ in reader.elements("spans", count):
                    reader.span()  # checked and counted now, made into spans once the scope is known
            elif key == "spans":
                if scope is None:  # no scope can follow: the spans are read once
                    scope = otlp.InstrumentationScope()
                spans = _spans(reader, raw_scope, count)
                yield scope.name, spans
                for _ in spans:  # what the consumer left unread
                    pass
            else:
                reader.skip()
        if later is not None:
            end, reader.pos = reader.pos, later
            spans = _spans(reader, raw_scope, False)
            yield (scope.name if scope is not None else ""), spans
            for _ in spans:
                pass
            reader.pos = end


def _skip_scope_spans(reader: _Reader) -> None:
    """Read past a resource's scopes and their spans, counting them (``MAX_UNITS``)."""
    for _ in reader.elements("scopeSpans"):
        for key in reader.members("a scopeSpans item"):
            if key == "spans":
                for _ in reader.elements("spans"):
                    reader.span()
            else:
                reader.skip()


def _spans(reader: _Reader, raw_scope: Any, count: bool) -> Iterator[Any]:
    """A scope's spans, parsed a batch at a time (at most ``_BATCH_SPANS`` or ``_BATCH_CHARS`` of text,
    or one span longer than that)."""
    batch: list[Any] = []
    chars = 0
    for _ in reader.elements("spans", count):
        start = reader.pos
        batch.append(reader.span())
        chars += reader.pos - start
        if len(batch) >= _BATCH_SPANS or chars >= _BATCH_CHARS:
            yield from _converted(batch, raw_scope, reader)
            batch, chars = [], 0
    if batch:
        yield from _converted(batch, raw_scope, reader)
