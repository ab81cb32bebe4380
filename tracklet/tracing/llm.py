"""Spans for every call of the ``openai`` and ``anthropic`` clients: :func:`autopatch`.

``openai``'s ``chat.completions.create`` and ``anthropic``'s ``messages.create`` (sync and async,
plain and streaming, tool calls included) are wrapped so each call, while a run records, becomes a span of the OTel
GenAI semantic conventions: name ``"chat <model>"``, kind client, ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, finish reasons; the request's arguments as the
input (secrets redacted like any op's) and the answer as the output.

The caller pays what an ``@tracklet.op`` call pays; the response's usage, model and text are read
on the run's worker. A stream's span runs until the stream is exhausted, closed, fails or is dropped; its chunks are
kept by reference (a list append each) and folded on the worker. For OpenAI streams,
``stream_options={"include_usage": True}`` is added when the caller did not set
``stream_options`` (the usage arrives as one last chunk with no choices), so token counts are
known; ``autopatch(include_usage=False)`` leaves requests as they are.

Patches follow ``integrations/autolog.py``'s rule: the client's method always runs exactly once
with the caller's arguments, its result and exceptions pass through, and a failure of tracklet's
own part is one ``TrackletWarning``.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import Any, Callable

from tracklet.core import lifecycle
from tracklet.tracing.ops import OpCall, OpInfo, _begin, _contained, _CURRENT, _time_ns

PROVIDERS = ("openai", "anthropic")
# (modules to try, newest layout first; class; whether async) of each patched ``create``.
_OPENAI = ("openai.resources.chat.completions.completions", "openai.resources.chat.completions")
_ANTHROPIC = ("anthropic.resources.messages.messages", "anthropic.resources.messages")
_TARGETS = {
    "openai": ((_OPENAI, "Completions", False), (_OPENAI, "AsyncCompletions", True)),
    "anthropic": ((_ANTHROPIC, "Messages", False), (_ANTHROPIC, "AsyncMessages", True)),
}


def _find_class(modules: tuple[str, ...], name: str) -> Any:
    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(found, type) and "create" in found.__dict__:
            return found
    raise ImportError(f"no {name} with a create method in {', '.join(modules)}")
_patched: list[tuple[Any, Any]] = []  # (class, original create)
_include_usage = True


class LlmCall(OpCall):
    """An ``OpCall`` whose result is a client's response (or a stream's chunks): the worker folds
    it into GenAI attributes and an output before writing the span."""

    __slots__ = ("provider", "streamed", "name", "attributes")
    provider: str
    streamed: bool
    name: str
    attributes: dict[str, Any]

    def __call__(self) -> Any:
        from tracklet.tracing.record import span_record

        try:
            attributes, output = _fold(self.provider, self.result, self.streamed)
        except Exception as error:  # an unexpected response shape: the span without its usage
            attributes, output = {"tracklet.llm.fold_error": repr(error)[:500]}, None
        attributes["gen_ai.operation.name"] = "chat"
        attributes["gen_ai.provider.name"] = self.provider
        model = self.kwargs.get("model")
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
        self.result = output
        self.attributes = attributes
        self.name = f"chat {attributes.get('gen_ai.response.model') or model or ''}".strip()
        return span_record(self)


def _fold(provider: str, result: Any, streamed: bool) -> tuple[dict[str, Any], Any]:
    """GenAI attributes and the recorded output of a response or of a stream's chunks."""
    if result is None:
        return {}, None
    if provider == "openai":
        return _fold_openai_stream(result) if streamed else _fold_openai(result)
    return _fold_anthropic_stream(result) if streamed else _fold_anthropic(result)


def _usage(attributes: dict[str, Any], usage: Any, input_name: str, output_name: str) -> None:
    if usage is None:
        return
    for name, key in ((input_name, "gen_ai.usage.input_tokens"), (output_name, "gen_ai.usage.output_tokens")):
        value = getattr(usage, name, None)
        if isinstance(value, int):
            attributes[key] = value


def _fold_openai(response: Any) -> tuple[dict[str, Any], Any]:
    attributes: dict[str, Any] = {}
    if getattr(response, "model", None):
        attributes["gen_ai.response.model"] = response.model
    if getattr(response, "id", None):
        attributes["gen_ai.response.id"] = response.id
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
        if getattr(chunk, "model", None):
            attributes["gen_ai.response.model"] = chunk.model
        if getattr(chunk, "id", None):
            attributes["gen_ai.response.id"] = chunk.id
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


def _fold_anthropic(response: Any) -> tuple[dict[str, Any], Any]:
    attributes: dict[str, Any] = {}
    if getattr(response, "model", None):
        attributes["gen_ai.response.model"] = response.model
    if getattr(response, "id", None):
        attributes["gen_ai.response.id"] = response.id
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
            attributes["gen_ai.response.model"] = message.model
            attributes["gen_ai.response.id"] = message.id
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


# ---------------------------------------------------------------- the caller's side


def _start(op: OpInfo, provider: str, run: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call, token = _begin(op, run, LlmCall)
    call.provider = provider
    call.streamed = False
    call.args, call.kwargs = args, kwargs
    return call, token


def _finish(call: LlmCall, result: Any, error: BaseException | None) -> None:
    try:
        call.end = _time_ns()
        call.result = result
        call.error = error
        call.run._enqueue(call)
    except Exception as own:
        _contained("llm call end", own)


class _Stream:
    """A client's stream, passed through item by item; the span ends when it is exhausted,
    closed or fails. Everything else is the stream's own (``response``, ``__enter__``...)."""

    def __init__(self, stream: Any, call: LlmCall) -> None:
        self._stream = stream
        self._call = call
        self._chunks: list[Any] = []
        self._done = False
        self._iterator: Any = None

    def _end(self, error: BaseException | None) -> None:
        if not self._done:
            self._done = True
            _finish(self._call, self._chunks, error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:  # a stream dropped before its end: its span ends with what it gave
        try:
            self._end(None)
        except Exception:
            pass

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        try:
            if self._iterator is None:
                self._iterator = iter(self._stream)
            chunk = next(self._iterator)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as error:
            self._end(error)
            raise
        self._chunks.append(chunk)
        return chunk

    def __enter__(self) -> "_Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._end(None)

    def __aiter__(self) -> "_Stream":
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as error:
            self._end(error)
            raise
        self._chunks.append(chunk)
        return chunk

    async def __aenter__(self) -> "_Stream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        try:
            await self._stream.close()
        finally:
            self._end(None)


def _prepare(provider: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if provider == "openai" and _include_usage and kwargs.get("stream") is True and "stream_options" not in kwargs:
        kwargs = {**kwargs, "stream_options": {"include_usage": True}}
    return kwargs


def _sync_wrapper(original: Callable[..., Any], provider: str) -> Callable[..., Any]:
    op = OpInfo(original, f"{provider}.chat", "full", "function")

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = lifecycle.trace_target
        if run is None:
            return original(self, *args, **kwargs)
        try:
            kwargs = _prepare(provider, kwargs)
            call, token = _start(op, provider, run, args, kwargs)
        except Exception as own:
            _contained("llm call start", own)
            return original(self, *args, **kwargs)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as error:
            _CURRENT.reset(token)
            _finish(call, None, error)
            raise
        _CURRENT.reset(token)
        if kwargs.get("stream") is True:
            call.streamed = True
            return _Stream(result, call)
        _finish(call, result, None)
        return result

    create.__tracklet_original__ = original  # type: ignore[attr-defined]
    return create


def _async_wrapper(original: Callable[..., Any], provider: str) -> Callable[..., Any]:
    op = OpInfo(original, f"{provider}.chat", "full", "coroutine")

    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = lifecycle.trace_target
        if run is None:
            return await original(self, *args, **kwargs)
        try:
            kwargs = _prepare(provider, kwargs)
            call, token = _start(op, provider, run, args, kwargs)
        except Exception as own:
            _contained("llm call start", own)
            return await original(self, *args, **kwargs)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as error:
            _CURRENT.reset(token)
            _finish(call, None, error)
            raise
        _CURRENT.reset(token)
        if kwargs.get("stream") is True:
            call.streamed = True
            return _Stream(result, call)
        _finish(call, result, None)
        return result

    create.__tracklet_original__ = original  # type: ignore[attr-defined]
    return create


def autopatch(providers: Any = None, *, include_usage: bool = True) -> list[str]:
    """Record a span for every chat call of the installed ``openai`` / ``anthropic`` clients while a
    run records (see the module's docstring). ``providers``: names from ``PROVIDERS`` (default:
    both). Returns the providers patched now (not installed ones are skipped). Idempotent."""
    global _include_usage
    _include_usage = include_usage
    names = PROVIDERS if providers is None else tuple([providers] if isinstance(providers, str) else providers)
    unknown = set(names) - set(PROVIDERS)
    if unknown:
        raise ValueError(f"autopatch: unknown provider {sorted(unknown)[0]!r}; known: {', '.join(PROVIDERS)}")
    done = []
    for provider in names:
        try:
            targets = [(_find_class(modules, cls), is_async) for modules, cls, is_async in _TARGETS[provider]]
        except ImportError:
            continue
        for owner, is_async in targets:
            original = owner.__dict__["create"]
            if getattr(original, "__tracklet_original__", None) is not None:
                continue
            wrapper = _async_wrapper(original, provider) if is_async else _sync_wrapper(original, provider)
            owner.create = wrapper
            _patched.append((owner, original))
        done.append(provider)
    return done


def unpatch() -> None:
    """Put every patched ``create`` back."""
    while _patched:
        owner, original = _patched.pop()
        owner.create = original
