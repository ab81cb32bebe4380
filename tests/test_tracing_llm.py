"""Autopatched ``openai`` and ``anthropic`` clients: every chat call a GenAI span with model and
tokens, against a fake server on loopback (tests/fake_llm.py), read back through the store."""

from __future__ import annotations

import asyncio
import json

import pytest

import tracklet
from tracklet.core.reader import replay
from tracklet.tracing.llm import autopatch, unpatch

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

from fake_llm import FakeLlmServer  # noqa: E402

KEY = "sk-test-" + "Zx8k2Lq9Vb3Nw7Rt5Yp1Qa4S"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello world"}]


@pytest.fixture(scope="module")
def llm():
    with FakeLlmServer() as server:
        yield server


@pytest.fixture
def patched():
    assert set(autopatch()) == {"openai", "anthropic"}
    yield
    unpatch()


def _spans(run):
    run.finish()
    return replay(run._paths.log_file).spans


def _attrs(span) -> dict:
    from tracklet.store.spans import span_of_message

    return span_of_message(span)["attributes"]


def test_openai_calls_become_genai_spans(start, llm, patched):
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start()
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content == "echo: say hello world"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: say hello world"

    async def both():
        plain = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        streamed = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        texts = [c.choices[0].delta.content or "" async for c in streamed if c.choices]
        return plain, "".join(texts)

    plain, text = asyncio.run(both())
    assert plain.usage.completion_tokens == 4 and text == "echo: say hello world"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fail-500", messages=MESSAGES)
    spans = _spans(run)
    assert [s.name for s in spans] == ["chat gpt-4o-mini-2024-08-06"] * 2 + ["chat gpt-4o-2024-08-06"] * 2 + [
        "chat fail-500"]
    for span in spans[:4]:
        attributes = _attrs(span)
        assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.usage.input_tokens"] == 5 and attributes["gen_ai.usage.output_tokens"] == 4
        assert span.status_code == span.STATUS_OK and span.kind == span.KIND_CLIENT
        assert json.loads(span.input.json)["messages"] == MESSAGES
        assert json.loads(span.output.json)[0]["content"] == "echo: say hello world"
    assert _attrs(spans[1])["gen_ai.response.streamed"] is True  # usage known: include_usage was added
    assert spans[4].status_code == spans[4].STATUS_ERROR
    assert KEY not in str(spans)


def test_anthropic_calls_become_genai_spans(start, llm, patched, root):
    client = anthropic.Anthropic(base_url=llm.url, api_key=KEY, max_retries=0)
    aclient = anthropic.AsyncAnthropic(base_url=llm.url, api_key=KEY, max_retries=0)
    run = start(project="llm")
    kwargs = {"model": "claude-x", "max_tokens": 64, "system": "be brief",
              "messages": [{"role": "user", "content": "say hello world"}]}
    message = client.messages.create(**kwargs)
    assert message.content[0].text == "echo: say hello world"
    with client.messages.create(**kwargs, stream=True) as stream:
        events = list(stream)
    assert events[-1].type == "message_stop"

    async def both():
        await aclient.messages.create(**kwargs)
        streamed = await aclient.messages.create(**kwargs, stream=True)
        return [event async for event in streamed]

    asyncio.run(both())
    run.finish()
    traces = tracklet.Api(root).traces("llm")
    spans = [s for t in traces for s in t.spans]
    assert len(spans) == 4
    for span in spans:
        assert (span.provider, span.operation, span.model) == ("anthropic", "chat", "claude-x-20250101")
        assert (span.input_tokens, span.output_tokens) == (5, 4)
        assert span.name == "chat claude-x-20250101"


def test_calls_outside_a_run_and_after_unpatch_record_nothing(start, llm):
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    autopatch("openai")
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # no run: the plain call
        run = start()
    finally:
        unpatch()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert _spans(run) == []
    with pytest.raises(ValueError, match="unknown provider"):
        autopatch("cohere")


def test_tracklet_run_autopatches_an_unmodified_scripts_openai_calls(root, tmp_path, llm):
    """``tracklet run -- python script.py``: a script that never imports tracklet gets its openai
    chat calls recorded as GenAI spans of the run (the launcher turns autolog on)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "chat.py"
    script.write_text("import sys, openai\n"
                      "client = openai.OpenAI(base_url=sys.argv[1], api_key='sk-test', max_retries=0)\n"
                      "print(client.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', "
                      "'content': 'hi there'}]).choices[0].message.content)\n")
    done = subprocess.run([sys.executable, "-m", "tracklet", "run", "--project", "chatbot", "--", sys.executable,
                           str(script), f"{llm.url}/v1"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "echo: hi there" in done.stdout
    api = tracklet.Api(root)
    ((span,),) = [trace.spans for trace in api.traces("chatbot")]
    (run,) = api.runs("chatbot")
    api.close()
    assert (span.operation, span.provider, span.input_tokens, span.output_tokens) == ("chat", "openai", 2, 3)
    assert span.run_id == run.id


def test_autolog_patches_the_clients_and_disable_restores_them():
    from openai.resources.chat.completions.completions import Completions

    original = Completions.__dict__["create"]
    tracklet.autolog(["openai"])
    try:
        assert Completions.__dict__["create"].__tracklet_original__ is original
    finally:
        tracklet.autolog(disable=True)
    assert Completions.__dict__["create"] is original


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_tool_calls_are_the_output_streamed_or_not(start, llm, patched):
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    claude = anthropic.Anthropic(base_url=llm.url, api_key=KEY, max_retries=0)
    run = start()
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[TOOL])
    for _ in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[TOOL], stream=True):
        pass
    kwargs = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "weather?"}],
              "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}
    claude.messages.create(**kwargs)
    for _ in claude.messages.create(**kwargs, stream=True):
        pass
    plain, streamed, message, message_streamed = _spans(run)
    expected_call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "paris"}'}}
    for span in (plain, streamed):
        (answer,) = json.loads(span.output.json)
        assert answer["tool_calls"] == [expected_call]
        assert _attrs(span)["gen_ai.response.finish_reasons"] == ["tool_calls"]
    for span in (message, message_streamed):
        blocks = json.loads(span.output.json)["content"]
        assert blocks[0] == {"type": "text", "text": "echo: weather?"}
        assert {k: blocks[1][k] for k in ("type", "id", "name", "input")} == {
            "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "paris"}}
        assert _attrs(span)["gen_ai.response.finish_reasons"] == ["tool_use"]


def test_a_dropped_or_broken_stream_still_ends_its_span(start, llm, patched):
    import gc

    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start()
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.content == "echo:"
    del stream, first  # abandoned after one chunk, never closed
    gc.collect()
    import httpx

    with pytest.raises((openai.APIError, httpx.TransportError)):  # the connection cut mid-response
        for _ in client.chat.completions.create(model="fail-midstream", messages=MESSAGES, stream=True):
            pass
    dropped, broken = _spans(run)
    assert json.loads(dropped.output.json) == [{"role": "assistant", "content": "echo:"}]
    assert dropped.status_code == dropped.STATUS_OK
    assert broken.status_code == broken.STATUS_ERROR and broken.name == "chat fail-midstream-2024-08-06"
    assert json.loads(broken.output.json or "null") is None  # an error span records no output


def _transport_errors() -> tuple[type[BaseException], ...]:
    """A cut connection's error from whichever httpx the installed clients use."""
    import importlib

    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except ImportError:
            pass
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()


def _text_of(span) -> str:
    """The assistant text a Responses API span recorded as its output."""
    return "".join(part.get("text", "") for item in json.loads(span.output.json) for part in item.get("content", []))


def test_openai_stream_and_parse_helpers_are_spans_with_usage(start, llm, patched):
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start()
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content == "echo: say hello world"
    parsed = client.chat.completions.parse(model="gpt-4o", messages=MESSAGES)
    assert parsed.choices[0].message.content == "echo: say hello world"

    async def helper():
        async with aclient.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            return [event.delta async for event in stream if event.type == "content.delta"]

    assert "".join(asyncio.run(helper())) == "echo: say hello world"
    spans = _spans(run)
    assert [s.name for s in spans] == ["chat gpt-4o-2024-08-06"] * 2 + ["chat gpt-4o-mini-2024-08-06"]
    for span in spans:
        attributes = _attrs(span)
        # the helpers pass stream_options unset (a sentinel): usage is still asked for and recorded
        assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (5, 4)
        assert json.loads(span.output.json)[0]["content"] == "echo: say hello world"
        assert span.status_code == span.STATUS_OK


def test_responses_api_plain_streamed_and_helper_are_spans(start, llm, patched, root):
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start(project="resp")
    kwargs = {"model": "gpt-4.1", "instructions": "be brief", "input": "say hello world"}
    assert client.responses.create(**kwargs).output_text == "echo: say hello world"
    assert "".join(e.delta for e in client.responses.create(**kwargs, stream=True)
                   if e.type == "response.output_text.delta") == "echo: say hello world"
    with client.responses.stream(**kwargs) as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == "echo: say hello world"

    async def both():
        plain = await aclient.responses.create(**kwargs)
        streamed = await aclient.responses.create(**kwargs, stream=True)
        return plain.output_text, [e.type async for e in streamed][-1]

    assert asyncio.run(both()) == ("echo: say hello world", "response.completed")
    with pytest.raises(openai.RateLimitError):
        client.responses.create(**{**kwargs, "model": "fail-429"})
    import httpx

    with pytest.raises((openai.APIError, httpx.TransportError)):
        for _ in client.responses.create(**{**kwargs, "model": "fail-midstream"}, stream=True):
            pass
    spans = _spans(run)
    assert len(spans) == 7
    for span in spans[:5]:
        assert span.name == "chat gpt-4.1-2025-04-14" and span.status_code == span.STATUS_OK
        attributes = _attrs(span)
        assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (5, 4)
        assert attributes["gen_ai.response.finish_reasons"] == ["completed"]
        assert _text_of(span) == "echo: say hello world"
        assert json.loads(span.input.json)["input"] == "say hello world"
    rate_limited, broken = spans[5:]
    assert rate_limited.status_code == broken.status_code == rate_limited.STATUS_ERROR
    assert broken.name == "chat fail-midstream-2025-04-14"  # the model the stream named before it broke
    traces = tracklet.Api(root).traces("resp", filter={"status": "ok"})
    assert {(s.operation, s.provider, s.input_tokens, s.output_tokens) for t in traces for s in t.spans} == {
        ("chat", "openai", 5, 4)}


def test_embeddings_are_spans_with_input_tokens_not_vectors(start, llm, patched, root):
    from fake_llm import EMBEDDING_SIZE

    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start(project="emb")
    texts = ["one two", "three four five"]
    vectors = client.embeddings.create(model="text-embedding-3-small", input=texts)  # base64 on the wire
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == EMBEDDING_SIZE
    floats = asyncio.run(aclient.embeddings.create(model="text-embedding-3-small", input="six",
                                                   encoding_format="float"))
    assert floats.data[0].embedding[0] == 3.0
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="fail-500", input="x")
    run.finish()
    spans = sorted((s for t in tracklet.Api(root).traces("emb") for s in t.spans), key=lambda s: s.start_ns)
    assert [(s.name, s.operation, s.provider, s.model, s.input_tokens, s.status) for s in spans] == [
        ("embeddings text-embedding-3-small-v1", "embeddings", "openai", "text-embedding-3-small-v1", 5, "ok"),
        ("embeddings text-embedding-3-small-v1", "embeddings", "openai", "text-embedding-3-small-v1", 1, "ok"),
        ("embeddings fail-500", "embeddings", "openai", "fail-500", None, "error")]
    assert spans[0].output == {"embeddings": 2, "dimensions": EMBEDDING_SIZE}
    assert spans[0].inputs["input"] == texts


def test_anthropic_messages_stream_helper_sync_and_async(start, llm, patched):
    client = anthropic.Anthropic(base_url=llm.url, api_key=KEY, max_retries=0)
    aclient = anthropic.AsyncAnthropic(base_url=llm.url, api_key=KEY, max_retries=0)
    run = start()
    kwargs = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "say hello world"}],
              "system": "be brief"}
    with client.messages.stream(**kwargs) as stream:
        assert "".join(stream.text_stream) == "echo: say hello world"
        assert stream.get_final_message().usage.output_tokens == 4

    async def helper():
        async with aclient.messages.stream(**kwargs) as stream:
            return await stream.get_final_text()

    assert asyncio.run(helper()) == "echo: say hello world"
    with pytest.raises(anthropic.RateLimitError):
        with client.messages.stream(**{**kwargs, "model": "fail-429"}) as stream:
            pass
    with pytest.raises((anthropic.APIError, *_TRANSPORT_ERRORS)):
        with client.messages.stream(**{**kwargs, "model": "fail-midstream"}) as stream:
            stream.until_done()
    spans = _spans(run)
    assert [s.name for s in spans] == ["chat claude-x-20250101"] * 2 + ["chat fail-429", "chat fail-midstream-20250101"]
    for span in spans[:2]:
        attributes = _attrs(span)
        assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (5, 4)
        assert attributes["gen_ai.response.streamed"] is True and span.status_code == span.STATUS_OK
        assert json.loads(span.output.json)["content"] == [{"type": "text", "text": "echo: say hello world"}]
        assert json.loads(span.input.json)["system"] == "be brief"
    assert spans[2].status_code == spans[3].status_code == spans[2].STATUS_ERROR


def test_a_streams_span_covers_a_slow_first_token(start, llm, patched):
    """The client returns a stream once the headers arrive; the span runs until the stream ends,
    so the wait for the first token is inside it (the fake server waits before that chunk)."""
    from fake_llm import SLOW_FIRST_TOKEN_S

    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start()
    stream = client.chat.completions.create(model="slow-model", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: say hello world"
    (span,) = _spans(run)
    assert span.end_time_unix_nano - span.start_time_unix_nano >= SLOW_FIRST_TOKEN_S * 1e9
    assert (_attrs(span)["gen_ai.usage.output_tokens"], span.status_code) == (4, span.STATUS_OK)


def test_with_raw_response_calls_record_usage_like_plain_ones(start, llm, patched, root):
    """``with_raw_response`` (the headers: request id, rate limits) keeps the span's usage and
    output, plain or streamed, sync or async, openai and anthropic; the caller's response is the
    client's own."""
    from fake_llm import RATE_LIMIT_REMAINING

    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    claude = anthropic.Anthropic(base_url=llm.url, api_key=KEY, max_retries=0)
    run = start(project="raw")
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.headers["x-ratelimit-remaining-requests"] == RATE_LIMIT_REMAINING
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().choices[0].message.content == "echo: say hello world"
    streamed = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert streamed.headers["x-ratelimit-remaining-requests"] == RATE_LIMIT_REMAINING
    text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text == "echo: say hello world"

    async def async_raw():
        answer = await aclient.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        return answer.parse().usage.completion_tokens

    assert asyncio.run(async_raw()) == 4
    message = claude.messages.with_raw_response.create(model="claude-x", max_tokens=64,
                                                       messages=[{"role": "user", "content": "say hello world"}])
    assert message.parse().content[0].text == "echo: say hello world"
    aclaude = anthropic.AsyncAnthropic(base_url=llm.url, api_key=KEY, max_retries=0)

    async def async_raw_stream():
        answer = await aclaude.messages.with_raw_response.create(
            model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "say hello world"}], stream=True)
        return [event.type async for event in await answer.parse()]

    assert asyncio.run(async_raw_stream())[-1] == "message_stop"
    run.finish()
    spans = sorted((s for t in tracklet.Api(root).traces("raw") for s in t.spans), key=lambda s: s.start_ns)
    assert [(s.provider, s.model, s.input_tokens, s.output_tokens) for s in spans] == [
        ("openai", "gpt-4o-2024-08-06", 5, 4), ("openai", "gpt-4o-mini-2024-08-06", 5, 4),
        ("openai", "gpt-4o-2024-08-06", 5, 4), ("anthropic", "claude-x-20250101", 3, 4),
        ("anthropic", "claude-x-20250101", 3, 4)]
    assert spans[0].output[0]["content"] == spans[1].output[0]["content"] == "echo: say hello world"
    assert spans[0].cost is not None and spans[0].cost > 0  # priced like the plain call
    assert spans[3].output["content"][0]["text"] == "echo: say hello world"


def test_a_raw_stream_never_parsed_still_ends_its_span(start, llm, patched):
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, stream=True)
    raw.http_response.close()
    del raw
    import gc

    gc.collect()
    spans = _spans(run)
    assert len(spans) == 1 and spans[0].end_time_unix_nano > 0 and spans[0].status_code == spans[0].STATUS_OK


def test_with_streaming_response_records_no_usage_whenever_the_body_is_read(start, llm, patched):
    """``with_streaming_response`` leaves the body to the caller: its span never has usage, read
    before the worker ran or not (the worker never reads or parses it)."""
    client = openai.OpenAI(base_url=f"{llm.url}/v1", api_key=KEY, max_retries=0)
    run = start()
    with client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as response:
        assert response.parse().choices[0].message.content == "echo: say hello world"  # read before the drain
    spans = _spans(run)
    assert len(spans) == 1 and spans[0].status_code == spans[0].STATUS_OK
    assert "gen_ai.usage.input_tokens" not in _attrs(spans[0])
