"""A fake OpenAI- and Anthropic-compatible server on loopback, for tests (no network).

``/v1/chat/completions`` (JSON, or SSE with a usage chunk when ``stream_options.include_usage``),
``/v1/responses`` (JSON, or the Responses API's SSE events ending in ``response.completed`` with
the usage), ``/v1/embeddings`` (float lists or base64, as asked; one token per word, a vector of
``EMBEDDING_SIZE`` per input) and ``/v1/messages`` (JSON, or Anthropic's SSE events). Tokens are deterministic: the input counts
the words of the request's messages, the answer is ``"echo: <last message>"`` and the output
counts its words. With ``tools``, the answer calls the first tool with ``{"city": "paris"}`` (in
pieces when streamed, as the real APIs send them). Fault modes by model name: ``"fail-500"`` answers 500, ``"fail-429"`` 429,
``"fail-midstream"`` drops a stream after two chunks (chat, responses and messages); a model named
``"slow-..."`` waits ``SLOW_FIRST_TOKEN_S`` before a chat stream's first chunk (after the headers).
Every answer carries the headers callers read through ``with_raw_response``: ``x-request-id``
(``req_<n>``, counting requests) and ``x-ratelimit-remaining-requests`` (``RATE_LIMIT_REMAINING``).
The real ``openai`` and ``anthropic`` clients talk to it through ``base_url``.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _words(messages: list[dict[str, Any]], system: Any = None) -> tuple[int, str]:
    texts = [system] if isinstance(system, str) else []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        texts.append(str(content))
    return sum(len(t.split()) for t in texts), f"echo: {texts[-1] if texts else ''}"


EMBEDDING_SIZE = 8
RATE_LIMIT_REMAINING = "99"
SLOW_FIRST_TOKEN_S = 0.3


def _fault(model: str) -> Response | None:
    if model.startswith("fail-") and model[5:].isdigit():
        status = int(model.split("-")[1])
        return JSONResponse({"error": {"message": f"fake {status}", "type": "server_error"}}, status_code=status)
    return None


async def chat(request: Request) -> Response:
    body = await request.json()
    model = body["model"]
    fault = _fault(model)
    if fault is not None:
        return fault
    prompt_tokens, answer = _words(body["messages"])
    pieces = answer.split(" ")
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
             "total_tokens": prompt_tokens + len(pieces)}
    served = f"{model}-2024-08-06"
    tool = (body.get("tools") or [{}])[0].get("function", {}).get("name")
    arguments = json.dumps({"city": "paris"})
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if tool:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": arguments}}]}
        return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": served,
                             "choices": [{"index": 0, "message": message,
                                          "finish_reason": "tool_calls" if tool else "stop"}], "usage": usage})
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def events() -> Any:
        base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": served}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]})}\n\n"

        if model.startswith("slow-"):
            time.sleep(SLOW_FIRST_TOKEN_S)  # in the response's thread: the headers are out already
        if tool:  # the call's arguments arrive in pieces
            yield chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                               "function": {"name": tool, "arguments": ""}}]})
            for part in (arguments[:5], arguments[5:]):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
            yield chunk({}, "tool_calls")
        else:
            for index, piece in enumerate(pieces):
                yield chunk({"content": piece if index == 0 else " " + piece})
                if model == "fail-midstream" and index == 1:
                    raise ConnectionError("the fake server drops the stream")  # uvicorn cuts the response
            yield chunk({}, "stop")
        if include_usage:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def messages(request: Request) -> Response:
    body = await request.json()
    model = body["model"]
    fault = _fault(model)
    if fault is not None:
        return fault
    input_tokens, answer = _words(body["messages"], body.get("system"))
    pieces = answer.split(" ")
    served = f"{model}-20250101"
    tool = (body.get("tools") or [{}])[0].get("name")
    if not body.get("stream"):
        content: list[dict[str, Any]] = [{"type": "text", "text": answer}]
        if tool:
            content.append({"type": "tool_use", "id": "toolu_1", "name": tool, "input": {"city": "paris"}})
        return JSONResponse({"id": "msg_1", "type": "message", "role": "assistant", "model": served,
                             "content": content, "stop_reason": "tool_use" if tool else "end_turn",
                             "stop_sequence": None, "usage": {"input_tokens": input_tokens,
                                                              "output_tokens": len(pieces)}})

    def event(kind: str, data: dict[str, Any]) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    def events() -> Any:
        yield event("message_start", {"message": {
            "id": "msg_2", "type": "message", "role": "assistant", "model": served, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
        yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        for index, piece in enumerate(pieces):
            text = piece if index == 0 else " " + piece
            yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
            if model == "fail-midstream" and index == 1:
                raise ConnectionError("the fake server drops the stream")
        yield event("content_block_stop", {"index": 0})
        if tool:
            yield event("content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                              "name": tool, "input": {}}})
            for part in ('{"city": ', '"paris"}'):
                yield event("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": part}})
            yield event("content_block_stop", {"index": 1})
        yield event("message_delta", {"delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": len(pieces)}})
        yield event("message_stop", {})

    return StreamingResponse(events(), media_type="text/event-stream")


def _response_input_words(body: dict[str, Any]) -> tuple[int, str]:
    given = body.get("input")
    messages = [{"content": given}] if isinstance(given, str) else list(given or [])
    return _words(messages, body.get("instructions"))


async def responses(request: Request) -> Response:
    body = await request.json()
    model = body["model"]
    fault = _fault(model)
    if fault is not None:
        return fault
    input_tokens, answer = _response_input_words(body)
    pieces = answer.split(" ")
    served = f"{model}-2025-04-14"
    usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": len(pieces), "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": input_tokens + len(pieces)}
    text = {"type": "output_text", "text": answer, "annotations": [], "logprobs": []}
    item = {"id": "msg_r1", "type": "message", "role": "assistant", "status": "completed", "content": [text]}

    def response(status: str, output: list[Any], with_usage: bool) -> dict[str, Any]:
        return {"id": "resp_1", "object": "response", "created_at": 1, "model": served, "status": status,
                "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": usage if with_usage else None, "error": None, "incomplete_details": None,
                "instructions": body.get("instructions"), "metadata": {}, "temperature": 1.0, "top_p": 1.0}

    if not body.get("stream"):
        return JSONResponse(response("completed", [item], True))

    def events() -> Any:
        number = iter(range(1_000))

        def event(kind: str, data: dict[str, Any]) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': next(number), **data})}\n\n"

        yield event("response.created", {"response": response("in_progress", [], False)})
        yield event("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress",
                                                                                 "content": []}})
        yield event("response.content_part.added", {"item_id": "msg_r1", "output_index": 0, "content_index": 0,
                                                    "part": {**text, "text": ""}})
        for index, piece in enumerate(pieces):
            yield event("response.output_text.delta", {"item_id": "msg_r1", "output_index": 0, "content_index": 0,
                                                       "delta": piece if index == 0 else " " + piece, "logprobs": []})
            if model == "fail-midstream" and index == 1:
                raise ConnectionError("the fake server drops the stream")
        yield event("response.output_text.done", {"item_id": "msg_r1", "output_index": 0, "content_index": 0,
                                                  "text": answer, "logprobs": []})
        yield event("response.content_part.done", {"item_id": "msg_r1", "output_index": 0, "content_index": 0,
                                                   "part": text})
        yield event("response.output_item.done", {"output_index": 0, "item": item})
        yield event("response.completed", {"response": response("completed", [item], True)})

    return StreamingResponse(events(), media_type="text/event-stream")


async def embeddings(request: Request) -> Response:
    body = await request.json()
    model = body["model"]
    fault = _fault(model)
    if fault is not None:
        return fault
    given = body["input"]
    texts = [given] if isinstance(given, str) else list(given)
    data = []
    for index, text in enumerate(texts):
        vector = [float(len(text) + i) for i in range(EMBEDDING_SIZE)]
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{EMBEDDING_SIZE}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(str(text).split()) for text in texts)
    return JSONResponse({"object": "list", "data": data, "model": f"{model}-v1",
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class _RateHeaders:
    """ASGI middleware: the request id and rate-limit headers real providers send on every answer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1
        number = self.requests

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", f"req_{number}".encode()),
                                      (b"x-ratelimit-remaining-requests", RATE_LIMIT_REMAINING.encode())]
            await send(message)

        await self.app(scope, receive, sending)


class FakeLlmServer:
    """The server in a thread on 127.0.0.1 and a free port; ``url`` once started."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                                Route("/v1/responses", responses, methods=["POST"]),
                                Route("/v1/embeddings", embeddings, methods=["POST"]),
                                Route("/v1/messages", messages, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(_RateHeaders(app), host="127.0.0.1", port=self.port, log_level="error",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeLlmServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake LLM server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
