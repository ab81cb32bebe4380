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
