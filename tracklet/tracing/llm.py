"""Spans for every call of the ``openai`` and ``anthropic`` clients: :func:`autopatch`.

Patched, sync and async (and their ``with_raw_response`` forms): ``openai``'s ``chat.completions.create`` / ``.parse``,
``responses.create`` / ``.parse`` and ``embeddings.create`` (the ``.stream()`` helpers of chat and
responses call ``create``, so they are covered too), and ``anthropic``'s ``messages.create`` and ``messages.stream``. Each call, while a
run records, becomes a span of the OTel GenAI semantic conventions: name ``"<operation> <model>"``
(``chat`` or ``embeddings``), kind client, ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, finish reasons; the request's arguments as the input (secrets redacted like any
op's) and the answer as the output (an embedding call's output is the vectors' count and size, not
the vectors).

The caller pays what an ``@tracklet.op`` call pays; the response's usage, model and text are read
on the run's worker. A stream's span runs until the stream is exhausted, closed, fails or is
dropped; its chunks are kept by reference (a list append each, :class:`_Chunks`) and folded on the
worker. For OpenAI chat streams, ``stream_options={"include_usage": True}`` is added when the
caller set no ``stream_options`` (the usage arrives as one last chunk with no choices), so token
counts are known; ``autopatch(include_usage=False)`` leaves requests as they are.

Patches follow ``integrations/autolog.py``'s rule: the client's method always runs exactly once
with the caller's arguments, its result and exceptions pass through, and a failure of tracklet's
own part is one ``TrackletWarning``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import weakref
from typing import Any, Callable, NamedTuple

from tracklet.core import lifecycle
from tracklet.tracing.ops import _DROPPED, OpCall, OpInfo, _begin, _contained, _CURRENT, _time_ns

PROVIDERS = ("openai", "anthropic")


class _Target(NamedTuple):
    """One patched method: where its class lives (modules to try, newest layout first), the
    class and method, whether it is async, and which API's responses it returns."""

    provider: str
    modules: tuple[str, ...]
    owner: str
    method: str
    is_async: bool
    api: str  # "chat", "responses", "embeddings", "messages"; "messages_stream": a stream manager


_CHAT = ("openai.resources.chat.completions.completions", "openai.resources.chat.completions")
_RESPONSES = ("openai.resources.responses.responses", "openai.resources.responses")
_EMBEDDINGS = ("openai.resources.embeddings",)
_MESSAGES = ("anthropic.resources.messages.messages", "anthropic.resources.messages")
_TARGETS = (
    _Target("openai", _CHAT, "Completions", "create", False, "chat"),
    _Target("openai", _CHAT, "AsyncCompletions", "create", True, "chat"),
    _Target("openai", _CHAT, "Completions", "parse", False, "chat"),
    _Target("openai", _CHAT, "AsyncCompletions", "parse", True, "chat"),
    _Target("openai", _RESPONSES, "Responses", "create", False, "responses"),
    _Target("openai", _RESPONSES, "AsyncResponses", "create", True, "responses"),
    _Target("openai", _RESPONSES, "Responses", "parse", False, "responses"),
    _Target("openai", _RESPONSES, "AsyncResponses", "parse", True, "responses"),
    _Target("openai", _EMBEDDINGS, "Embeddings", "create", False, "embeddings"),
    _Target("openai", _EMBEDDINGS, "AsyncEmbeddings", "create", True, "embeddings"),
    _Target("anthropic", _MESSAGES, "Messages", "create", False, "messages"),
    _Target("anthropic", _MESSAGES, "AsyncMessages", "create", True, "messages"),
    _Target("anthropic", _MESSAGES, "Messages", "stream", False, "messages_stream"),
    _Target("anthropic", _MESSAGES, "AsyncMessages", "stream", True, "messages_stream"),
)
_OPERATIONS = {"chat": "chat", "responses": "chat", "embeddings": "embeddings", "messages": "chat"}


def _find_class(modules: tuple[str, ...], name: str, method: str) -> Any:
    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(found, type) and method in found.__dict__:
            return found
    raise ImportError(f"no {name} with a {method} method in {', '.join(modules)}")


_patched: list[tuple[Any, str, Any]] = []  # (class, method name, original)
_include_usage = True


class LlmCall(OpCall):
    """An ``OpCall`` whose result is a client's response (or a stream's chunks): the worker folds
    it into GenAI attributes and an output before writing the span."""

    __slots__ = ("provider", "api", "streamed", "name", "attributes")
    provider: str
    api: str
    streamed: bool
    name: str
    attributes: dict[str, Any]

    def open_attributes(self) -> dict[str, Any]:
        attributes = {"gen_ai.operation.name": _OPERATIONS[self.api], "gen_ai.provider.name": self.provider}
        model = self.kwargs.get("model")
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
        self.name = f"{_OPERATIONS[self.api]} {model if isinstance(model, str) else ''}".strip()
        return attributes

    def _record(self) -> Any:
        from tracklet.tracing.record import span_record

        try:
            attributes, output = _fold(self.api, _parsed(self.result, self.streamed), self.streamed)
        except Exception as error:  # an unexpected response shape: the span without its usage
            attributes, output = {"tracklet.llm.fold_error": repr(error)[:500]}, None
        operation = _OPERATIONS[self.api]
        attributes["gen_ai.operation.name"] = operation
        attributes["gen_ai.provider.name"] = self.provider
        model = self.kwargs.get("model")
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
        self.result = output
        self.attributes = attributes
        self.name = f"{operation} {attributes.get('gen_ai.response.model') or model or ''}".strip()
        return span_record(self)


# ---------------------------------------------------------------- folding, on the worker


def _fold(api: str, result: Any, streamed: bool) -> tuple[dict[str, Any], Any]:
    """GenAI attributes and the recorded output of a response or of a stream's chunks."""
    if result is None:
        return {}, None
    if streamed:
        return _STREAM_FOLDS[api](result)
    return _FOLDS[api](result)


_RAW_RESPONSES = ("LegacyAPIResponse", "APIResponse", "AsyncAPIResponse")
_RAW_HEADER = "X-Stainless-Raw-Response"  # "true"/"raw": with_raw_response; "stream": with_streaming_response


def _is_raw(result: Any) -> bool:
    """Whether ``result`` is what a ``with_raw_response`` call returns: the HTTP response with a
    ``parse()`` for the model (``openai``'s ``LegacyAPIResponse``, ``anthropic``'s
    ``APIResponse`` / ``AsyncAPIResponse``)."""
    return type(result).__name__ in _RAW_RESPONSES and hasattr(result, "http_response") and callable(
        getattr(result, "parse", None))


def _parsed(result: Any, streamed: bool) -> Any:
    """The response a span folds: a raw (not streamed) response's model, built on the worker from
    the body the client read before the call returned, through the clients' own synchronous
    ``_parse`` (no cache or caller-visible state touched; an async response's ``parse`` is a
    coroutine). A body not read (``with_streaming_response``) is left alone: no usage then."""
    if streamed or not _is_raw(result):
        return result
    try:
        if result.http_response.request.headers.get(_RAW_HEADER) == "stream":
            return None  # with_streaming_response: the caller reads the body, maybe not yet
        _ = result.http_response.content  # raises unless the body was read
    except Exception:
        return None
    return result._parse()


def _usage(attributes: dict[str, Any], usage: Any, input_name: str, output_name: str | None) -> None:
    if usage is None:
        return
    for name, key in ((input_name, "gen_ai.usage.input_tokens"), (output_name, "gen_ai.usage.output_tokens")):
        value = getattr(usage, name, None) if name else None
        if isinstance(value, int):
            attributes[key] = value


def _identity(attributes: dict[str, Any], response: Any) -> None:
    if getattr(response, "model", None):
        attributes["gen_ai.response.model"] = response.model
    if getattr(response, "id", None):
        attributes["gen_ai.response.id"] = response.id


def _fold_openai(response: Any) -> tuple[dict[str, Any], Any]:
    attributes: dict[str, Any] = {}
    _identity(attributes, response)
    _usage(attributes, getattr(response, "usage", None), "prompt_tokens", "completion_tokens")
    choices = getattr(response, "choices", None) or []
    reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    output = [c.message.model_dump(exclude_none=True) for c in choices if getattr(c, "message", None) is not None]
    return attributes, output


def _fold_openai_stream(chunks: list[Any]) -> tuple[dict[str, Any], Any]:
    attributes: dict[str, Any] = {"gen_ai.response.streamed": True}
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> tool call index -> the call so far
    for chunk in chunks:
        _identity(attributes, chunk)
        _usage(attributes, getattr(chunk, "usage", None), "prompt_tokens", "completion_tokens")
        for choice in getattr(chunk, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if content:
                texts.setdefault(choice.index, []).append(content)
            for delta_call in getattr(delta, "tool_calls", None) or []:
                call = calls.setdefault(choice.index, {}).setdefault(
                    delta_call.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                call["id"] = delta_call.id or call["id"]
                function = getattr(delta_call, "function", None)
                if function is not None:
                    call["function"]["name"] += function.name or ""
                    call["function"]["arguments"] += function.arguments or ""
            if getattr(choice, "finish_reason", None):
                reasons[choice.index] = choice.finish_reason
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = [reasons[i] for i in sorted(reasons)]
    output = []
    for index in sorted(set(texts) | set(reasons) | set(calls)):
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts[index]) if index in texts else None}
        if index in calls:
            message["tool_calls"] = [calls[index][i] for i in sorted(calls[index])]
        output.append(message)
    return attributes, output


def _fold_responses(response: Any) -> tuple[dict[str, Any], Any]:
    """A Responses API ``Response``: its output items (messages, function calls, ...) as the
    output; its status (and why it is incomplete) as the finish reason."""
    attributes: dict[str, Any] = {}
    _identity(attributes, response)
    _usage(attributes, getattr(response, "usage", None), "input_tokens", "output_tokens")
    status = getattr(response, "status", None)
    reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
    if reason or status:
        attributes["gen_ai.response.finish_reasons"] = [reason or status]
    return attributes, [item.model_dump(exclude_none=True) for item in getattr(response, "output", None) or []]


_FINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def _fold_responses_stream(events: list[Any]) -> tuple[dict[str, Any], Any]:
    """A Responses API stream's events: the final event's response when the stream got that far,
    else the output items and text deltas received before it ended."""
    attributes: dict[str, Any] = {}
    items: dict[int, dict[str, Any]] = {}  # output index -> the item so far
    for event in events:
        kind = getattr(event, "type", None)
        if kind in _FINAL_RESPONSE_EVENTS:
            attributes, output = _fold_responses(event.response)
            attributes["gen_ai.response.streamed"] = True
            return attributes, output
        if kind in ("response.created", "response.in_progress"):
            _identity(attributes, event.response)
        elif kind == "response.output_item.added":
            items[event.output_index] = event.item.model_dump(exclude_none=True)
        elif kind == "response.output_text.delta":
            item = items.setdefault(event.output_index, {"type": "message", "role": "assistant", "content": []})
            parts = item.setdefault("content", [])
            while len(parts) <= event.content_index:
                parts.append({"type": "output_text", "text": ""})
            parts[event.content_index]["text"] = parts[event.content_index].get("text", "") + event.delta
        elif kind == "response.function_call_arguments.delta":
            item = items.setdefault(event.output_index, {"type": "function_call", "arguments": ""})
            item["arguments"] = item.get("arguments", "") + event.delta
    attributes["gen_ai.response.streamed"] = True
    return attributes, [items[i] for i in sorted(items)]


def _fold_embeddings(response: Any) -> tuple[dict[str, Any], Any]:
    """An embeddings response: the vectors' count and size as the output (not the vectors)."""
    attributes: dict[str, Any] = {}
    _identity(attributes, response)
    _usage(attributes, getattr(response, "usage", None), "prompt_tokens", None)
    data = getattr(response, "data", None) or []
    first = getattr(data[0], "embedding", None) if data else None
    dimensions = len(first) if isinstance(first, (list, str)) else None
    if isinstance(dimensions, int):
        attributes["gen_ai.embeddings.dimension.count"] = dimensions
    return attributes, {"embeddings": len(data), "dimensions": dimensions}


def _fold_anthropic(response: Any) -> tuple[dict[str, Any], Any]:
    attributes: dict[str, Any] = {}
    _identity(attributes, response)
    _usage(attributes, getattr(response, "usage", None), "input_tokens", "output_tokens")
    if getattr(response, "stop_reason", None):
        attributes["gen_ai.response.finish_reasons"] = [response.stop_reason]
    content = [block.model_dump(exclude_none=True) for block in getattr(response, "content", None) or []]
    return attributes, {"role": "assistant", "content": content}


def _fold_anthropic_stream(events: list[Any]) -> tuple[dict[str, Any], Any]:
    attributes: dict[str, Any] = {"gen_ai.response.streamed": True}
    blocks: dict[int, dict[str, Any]] = {}  # content blocks by index, as the plain response has them
    partial: dict[int, list[str]] = {}  # a tool_use block's input JSON, in pieces
    input_tokens = output_tokens = None
    for event in events:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = event.message
            _identity(attributes, message)
            input_tokens = getattr(message.usage, "input_tokens", None)
            output_tokens = getattr(message.usage, "output_tokens", None)
        elif kind == "content_block_start":
            blocks[event.index] = event.content_block.model_dump(exclude_none=True)
        elif kind == "content_block_delta":
            block = blocks.setdefault(event.index, {"type": "text", "text": ""})
            piece = getattr(event.delta, "text", None)
            if piece:
                block["text"] = block.get("text", "") + piece
            piece = getattr(event.delta, "partial_json", None)
            if piece:
                partial.setdefault(event.index, []).append(piece)
        elif kind == "message_delta":
            usage: Any = getattr(event, "usage", None)
            if isinstance(getattr(usage, "output_tokens", None), int):
                output_tokens = usage.output_tokens
            if isinstance(getattr(usage, "input_tokens", None), int):
                input_tokens = usage.input_tokens
            reason = getattr(event.delta, "stop_reason", None)
            if reason:
                attributes["gen_ai.response.finish_reasons"] = [reason]
    if isinstance(input_tokens, int):
        attributes["gen_ai.usage.input_tokens"] = input_tokens
    if isinstance(output_tokens, int):
        attributes["gen_ai.usage.output_tokens"] = output_tokens
    for index, pieces in partial.items():
        text = "".join(pieces)
        try:
            blocks[index]["input"] = json.loads(text)
        except ValueError:
            blocks[index]["input"] = text
    return attributes, {"role": "assistant", "content": [blocks[i] for i in sorted(blocks)]}


_FOLDS: dict[str, Callable[[Any], tuple[dict[str, Any], Any]]] = {
    "chat": _fold_openai, "responses": _fold_responses, "embeddings": _fold_embeddings, "messages": _fold_anthropic}
_STREAM_FOLDS: dict[str, Callable[[list[Any]], tuple[dict[str, Any], Any]]] = {
    "chat": _fold_openai_stream, "responses": _fold_responses_stream, "embeddings": _fold_openai_stream,
    "messages": _fold_anthropic_stream}


# ---------------------------------------------------------------- the caller's side


def _prepare(target: _Target, kwargs: dict[str, Any]) -> dict[str, Any]:
    # The clients' helpers pass an unset option as a falsy sentinel (``Omit``, ``NotGiven``).
    if (target.api == "chat" and _include_usage and kwargs.get("stream") is True
            and not kwargs.get("stream_options")):
        kwargs = {**kwargs, "stream_options": {"include_usage": True}}
    return kwargs


def _start(op: OpInfo, target: _Target, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> tuple[LlmCall, Any, dict[str, Any]] | None:
    """The span of a call about to be made, the context token, and the request's arguments
    (``include_usage`` added); None when nothing records or tracklet's own part failed."""
    run = lifecycle.trace_target
    if run is None:
        return None
    try:
        parent = _CURRENT.get()
        if parent is _DROPPED:  # inside a trace sampling left out
            return None
        kwargs = _prepare(target, kwargs)
        call, token = _begin(op, run, parent, LlmCall, queue=False)
        call.provider = target.provider
        call.api = "messages" if target.api == "messages_stream" else target.api
        call.streamed = target.api == "messages_stream"
        call.args, call.kwargs = args, kwargs
        run._enqueue(call)
        return call, token, kwargs
    except Exception as own:
        _contained("llm call start", own)
        return None


def _finish(call: LlmCall, result: Any, error: BaseException | None) -> None:
    try:
        end = _time_ns()
        call.result = result
        call.error = error
        call.end = end  # last: the worker reads the other fields once it sees an end
        if call.state:
            call.run._enqueue(call)
    except Exception as own:
        _contained("llm call end", own)


def _failed(call: LlmCall, token: Any, error: BaseException) -> None:
    _CURRENT.reset(token)
    _finish(call, None, error)


def _returned(call: LlmCall, token: Any, result: Any, wrapper: type[_StreamWrapper]) -> Any:
    """What the caller gets back: the response (the span ends now) or the stream, wrapped so its
    span ends with it."""
    _CURRENT.reset(token)
    if call.streamed or call.kwargs.get("stream") is True:
        call.streamed = True
        if _is_raw(result):
            return _raw_stream(result, _Chunks(call), wrapper)
        return wrapper(result, _Chunks(call))
    _finish(call, result, None)
    return result


def _raw_stream(raw: Any, chunks: _Chunks, wrapper: type[_StreamWrapper]) -> Any:
    """A streamed ``with_raw_response`` call: the caller gets the raw response itself, whose
    ``parse()`` (the stream) is wrapped like a plain call's stream, so the span ends with the
    stream and folds its chunks (usage included); a raw response dropped unparsed ends it empty."""
    original = raw.parse
    wrapped: list[Any] = []

    def wrap(stream: Any, custom: bool) -> Any:
        if custom:  # parse(to=...): the caller's own type, passed through
            return stream
        if not wrapped:  # parse() returns one stream, cached: wrapped once
            wrapped.append(wrapper(stream, chunks))
        return wrapped[0]

    if inspect.iscoroutinefunction(original):  # anthropic's AsyncAPIResponse
        @functools.wraps(original)
        async def parse_async(*args: Any, **kwargs: Any) -> Any:
            return wrap(await original(*args, **kwargs), bool(args or kwargs))

        parse: Callable[..., Any] = parse_async
    else:
        @functools.wraps(original)
        def parse_sync(*args: Any, **kwargs: Any) -> Any:
            return wrap(original(*args, **kwargs), bool(args or kwargs))

        parse = parse_sync
    try:
        raw.parse = parse
        weakref.finalize(raw, chunks.end, None)
    except Exception as own:
        _contained("llm raw stream", own)
        chunks.end(None)
    return raw


class _Chunks:
    """What a stream gave so far, and the span's end: shared by the sync and async wrappers."""

    __slots__ = ("call", "items", "done")

    def __init__(self, call: LlmCall) -> None:
        self.call = call
        self.items: list[Any] = []
        self.done = False

    def end(self, error: BaseException | None) -> None:
        if not self.done:
            self.done = True
            _finish(self.call, self.items, error)


class _StreamWrapper:
    """A client's stream, passed through item by item; the span ends when it is exhausted,
    closed, fails, or is dropped. Everything else is the stream's own (``response``...)."""

    def __init__(self, stream: Any, chunks: _Chunks) -> None:
        self._stream = stream
        self._chunks = chunks
        self._iterator: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:  # a stream dropped before its end: its span ends with what it gave
        try:
            self._chunks.end(None)
        except Exception:
            pass


class _SyncStream(_StreamWrapper):
    def __iter__(self) -> "_SyncStream":
        return self

    def __next__(self) -> Any:
        try:
            if self._iterator is None:
                self._iterator = iter(self._stream)
            chunk = next(self._iterator)
        except StopIteration:
            self._chunks.end(None)
            raise
        except BaseException as error:
            self._chunks.end(error)
            raise
        self._chunks.items.append(chunk)
        return chunk

    def __enter__(self) -> "_SyncStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._chunks.end(None)


class _AsyncStream(_StreamWrapper):
    def __aiter__(self) -> "_AsyncStream":
        return self

    async def __anext__(self) -> Any:
        try:
            if self._iterator is None:
                self._iterator = self._stream.__aiter__()
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._chunks.end(None)
            raise
        except BaseException as error:
            self._chunks.end(error)
            raise
        self._chunks.items.append(chunk)
        return chunk

    async def __aenter__(self) -> "_AsyncStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            self._chunks.end(None)

    aclose = close


def _sync_wrapper(original: Callable[..., Any], target: _Target) -> Callable[..., Any]:
    op = OpInfo(original, f"{target.provider}.{target.api}", "full", "function")

    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = _start(op, target, args, kwargs)
        if started is None:
            return original(self, *args, **kwargs)
        call, token, kwargs = started
        try:
            result = original(self, *args, **kwargs)
        except BaseException as error:
            _failed(call, token, error)
            raise
        return _returned(call, token, result, _SyncStream)

    return method


def _async_wrapper(original: Callable[..., Any], target: _Target) -> Callable[..., Any]:
    op = OpInfo(original, f"{target.provider}.{target.api}", "full", "coroutine")

    @functools.wraps(original)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = _start(op, target, args, kwargs)
        if started is None:
            return await original(self, *args, **kwargs)
        call, token, kwargs = started
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as error:
            _failed(call, token, error)
            raise
        return _returned(call, token, result, _AsyncStream)

    return method


def _manager_wrapper(original: Callable[..., Any], target: _Target) -> Callable[..., Any]:
    """anthropic's ``messages.stream(...)`` returns a manager that sends the request when entered
    (``with`` / ``async with``); the span starts there: the manager's request is wrapped so the raw
    event stream it returns is one of ours (``MessageStream`` reads its events through it)."""
    op = OpInfo(original, f"{target.provider}.{target.api}", "full", "function")
    attribute = f"_{'Async' if target.is_async else ''}MessageStreamManager__api_request"

    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)
        if lifecycle.trace_target is None:
            return manager
        try:
            request = getattr(manager, attribute)
            setattr(manager, attribute, _async_request(request, op, target, args, kwargs) if target.is_async
                    else functools.partial(_sync_request, request, op, target, args, kwargs))
        except Exception as own:
            _contained("llm stream manager", own)
        return manager

    return stream


def _sync_request(request: Callable[[], Any], op: OpInfo, target: _Target, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
    started = _start(op, target, args, kwargs)
    if started is None:
        return request()
    call, token, _ = started
    try:
        result = request()
    except BaseException as error:
        _failed(call, token, error)
        raise
    return _returned(call, token, result, _SyncStream)


async def _async_request(request: Any, op: OpInfo, target: _Target, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
    started = _start(op, target, args, kwargs)
    if started is None:
        return await request
    call, token, _ = started
    try:
        result = await request
    except BaseException as error:
        _failed(call, token, error)
        raise
    return _returned(call, token, result, _AsyncStream)


def autopatch(providers: Any = None, *, include_usage: bool = True) -> list[str]:
    """Record a span for every call of the installed ``openai`` / ``anthropic`` clients' patched
    methods while a run records (see the module's docstring). ``providers``: names from
    ``PROVIDERS`` (default: both). Returns the providers patched now (not installed ones are
    skipped). Idempotent."""
    global _include_usage
    _include_usage = include_usage
    names = PROVIDERS if providers is None else tuple([providers] if isinstance(providers, str) else providers)
    unknown = set(names) - set(PROVIDERS)
    if unknown:
        raise ValueError(f"autopatch: unknown provider {sorted(unknown)[0]!r}; known: {', '.join(PROVIDERS)}")
    done = []
    for provider in names:
        found = False
        for target in _TARGETS:
            if target.provider != provider:
                continue
            try:
                owner = _find_class(target.modules, target.owner, target.method)
            except ImportError:  # not installed, or a version without this method
                continue
            found = True
            original = owner.__dict__[target.method]
            if getattr(original, "__tracklet_original__", None) is not None:
                continue
            if target.api == "messages_stream":
                wrapper = _manager_wrapper(original, target)
            else:
                wrapper = (_async_wrapper if target.is_async else _sync_wrapper)(original, target)
            wrapper.__tracklet_original__ = original  # type: ignore[attr-defined]
            setattr(owner, target.method, wrapper)
            _patched.append((owner, target.method, original))
        if found:
            done.append(provider)
    return done


def unpatch() -> None:
    """Put every patched method back."""
    while _patched:
        owner, method, original = _patched.pop()
        setattr(owner, method, original)
