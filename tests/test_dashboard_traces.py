"""The traces pages of the dashboard in real Chromium (issue #19): the list of a project's traces
with filters, tokens and cost, and one trace as a tree beside a waterfall with span details, over
spans recorded by ``@tracklet.op`` and received over OTLP, served by ``tracklet ui``. Fixtures
(browser, page) are tests/test_dashboard.py's; the pages are read through their DOM and
``window.__tracklet.probe("traces" | "trace")``."""

from __future__ import annotations

import json
import time

import pytest
import test_dashboard
from conftest import QUIET
from test_dashboard import probe, start_ui

import tracklet
from tracklet.store import Store
from tracklet.store.spans import span_row

pytestmark = [*test_dashboard.pytestmark, pytest.mark.slow]
browser, page, allowed_errors = test_dashboard.browser, test_dashboard.page, test_dashboard.allowed_errors  # fixtures


@tracklet.op
def lookup(city: str) -> dict:
    time.sleep(0.002)
    if city == "atlantis":
        raise LookupError("no such city")
    return {"city": city, "weather": "sunny"}


@tracklet.op(name="agent")
def agent(question: str) -> list:
    answers = [lookup("paris")]
    try:
        lookup("atlantis")
    except LookupError:
        pass
    return answers


@pytest.fixture
def traced(root):
    run = tracklet.init(project="tr", id="r1", dir=str(root), settings=QUIET)
    agent("weather?")
    run.finish()
    store = Store(root=root)
    start = time.time_ns()
    store.add_spans("tr", [span_row({
        "trace_id": "c" * 32, "span_id": "1" * 16, "name": "chat gpt-4o", "kind": "client", "start_ns": start,
        "end_ns": start + 40_000_000, "status": "ok",
        "attributes": {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                       "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000,
                       "gen_ai.usage.output_tokens": 500}}) | {"run_id": ""}])
    store.close()
    process, url, token = start_ui(root)
    yield url, token
    process.terminate()
    process.wait(timeout=10)


def test_traces_list_filters_and_a_trace_shows_tree_waterfall_and_details(traced, page):
    url, token = traced
    page.goto(url + "projects/tr?token=" + token)
    page.click("a.traces-link")
    page.wait_for_selector("table.traces tr[data-trace]")
    listed = probe(page, "traces")["traces"]
    assert {t["root"] for t in listed} == {"agent", "chat gpt-4o"}
    chat = next(t for t in listed if t["root"] == "chat gpt-4o")
    assert chat["cost"] == pytest.approx(1000 * 2.5e-6 + 500 * 10e-6)  # gpt-4o's list price
    row = page.text_content(f"tr[data-trace='{'c' * 32}']")
    assert "1000 → 500" in row and "$0.0075" in row

    page.fill("input[name=status]", "error")
    page.press("input[name=status]", "Enter")
    page.wait_for_function("() => window.__tracklet.probe('traces').traces.length === 1")
    assert probe(page, "traces")["traces"][0]["root"] == "agent"
    assert "status=error" in page.url

    page.click("table.traces tr[data-trace] a[data-link]")
    page.wait_for_selector(".trace-page .span-row[data-span]")
    trace = probe(page, "trace")
    assert [(r["name"], r["depth"]) for r in trace["rows"]] == [("agent", 0), ("lookup", 1), ("lookup", 1)]
    parent, first, second = trace["rows"]
    assert parent["left"] == pytest.approx(0, abs=0.5) and parent["width"] == pytest.approx(100, abs=0.5)
    assert 0 <= first["left"] < second["left"] and second["left"] + second["width"] <= 100.01
    assert trace["selected"] == parent["span_id"]  # the root's details first

    page.click(f".span-row[data-span='{second['span_id']}']")
    details = page.wait_for_selector(f".span-details[data-span='{second['span_id']}']")
    text = details.text_content()
    assert "atlantis" in text and "no such city" in text and "error" in text
    assert page.get_attribute(f".span-row[data-span='{second['span_id']}'] .span-bar", "data-status") == "error"
    assert f"span={second['span_id']}" in page.url

    page.reload()  # the selected span is in the URL
    page.wait_for_selector(f".span-details[data-span='{second['span_id']}']")


@tracklet.op(name="answer")
def answer(question: str) -> str:
    return question.upper()


@pytest.fixture
def stepped(root):
    """A run whose traces start at steps 0, 0 and 2, and a trace of it whose spans were open when
    the process died (a start record with no end)."""
    run = tracklet.init(project="st", id="r2", dir=str(root), settings=QUIET)
    answer("a")
    answer("b")
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    answer("c")
    run.finish()
    store = Store(root=root)
    start = time.time_ns()
    store.add_spans("st", [
        span_row({"trace_id": "d" * 32, "span_id": "1" * 16, "name": "killed agent", "start_ns": start,
                  "end_ns": 0, "step": 2}) | {"run_id": "r2"},
        span_row({"trace_id": "d" * 32, "span_id": "2" * 16, "parent_span_id": "1" * 16, "name": "tool",
                  "start_ns": start + 1_000_000, "end_ns": start + 3_000_000, "status": "ok", "step": 2}) | {"run_id": "r2"},
        span_row({"trace_id": "d" * 32, "span_id": "3" * 16, "parent_span_id": "1" * 16, "name": "llm",
                  "start_ns": start + 4_000_000, "end_ns": 0, "step": 2}) | {"run_id": "r2"},
        span_row({"trace_id": "e" * 32, "span_id": "4" * 16, "name": "chat claude-x", "kind": "client",
                  "start_ns": start, "end_ns": start + 1_000_000, "status": "ok",
                  "input": json.dumps({"model": "claude-x", "system": "be brief", "messages": [
                      {"role": "user", "content": [{"type": "text", "text": "weather in paris?"}]}]}),
                  "output": json.dumps({"role": "assistant", "content": [
                      {"type": "text", "text": "let me look"},
                      {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "paris"}}]}),
                  "attributes": {"gen_ai.operation.name": "chat"}}) | {"run_id": ""},
    ])
    store.close()
    process, url, token = start_ui(root)
    yield url, token
    process.terminate()
    process.wait(timeout=10)


def test_run_page_lists_its_traces_by_step_and_unfinished_spans_show_as_such(stepped, page):
    url, token = stepped
    page.goto(url + "projects/st/runs/r2?token=" + token)
    page.wait_for_selector(".run-traces-card:not([hidden]) tr[data-trace]")
    rows = page.query_selector_all(".run-traces-card tr[data-trace]")
    by_step = [(row.get_attribute("data-step"), row.query_selector("a").text_content()) for row in rows]
    assert by_step == [("0", "answer"), ("0", "answer"), ("2", "answer"), ("2", "killed agent")]
    killed = page.query_selector(f".run-traces-card tr[data-trace='{'d' * 32}']")
    assert "unfinished" in killed.text_content()
    assert page.get_attribute(".run-traces-card a.run-traces-all", "href").endswith("/projects/st/traces?run=r2")

    killed.query_selector("a").click()
    page.wait_for_selector(".trace-page .span-row[data-span]")
    trace = probe(page, "trace")
    rows = {r["name"]: r for r in trace["rows"]}
    assert [(r["name"], r["depth"], r["status"]) for r in trace["rows"]] == [
        ("killed agent", 0, "unfinished"), ("tool", 1, "ok"), ("llm", 1, "unfinished")]
    # an unfinished span's bar runs to the last time the trace knows (here the llm span's start)
    assert rows["killed agent"]["width"] == pytest.approx(100, abs=0.5)
    assert rows["llm"]["left"] + rows["llm"]["width"] == pytest.approx(100, abs=0.5)
    assert page.text_content(f".span-row[data-span='{'3' * 16}'] .span-time") == "unfinished"
    details = page.text_content(".span-details")
    assert "unfinished" in details

    page.goto(url + "projects/st/traces?run=r2&token=" + token)
    page.wait_for_selector("table.traces tr[data-trace]")
    assert len(probe(page, "traces")["traces"]) == 4
    assert "unfinished" in page.text_content(f"table.traces tr[data-trace='{'d' * 32}']")


def test_an_llm_spans_conversation_shows_as_a_chat(stepped, page):
    url, token = stepped
    page.goto(url + f"projects/st/traces/{'e' * 32}?token=" + token)
    page.wait_for_selector(".span-details .chat-view .chat-message")
    messages = [(m.get_attribute("data-role"), m.query_selector(".chat-text").text_content())
                for m in page.query_selector_all(".chat-view .chat-message")]
    assert messages == [("system", "be brief"), ("user", "weather in paris?"),
                        ("assistant", 'let me look\n→ get_weather({"city":"paris"})')]


def test_two_traces_compare_span_by_span(stepped, page):
    url, token = stepped
    page.goto(url + "projects/st/traces?run=r2&token=" + token)
    page.wait_for_selector("table.traces tr[data-trace]")
    answers = [t["trace_id"] for t in probe(page, "traces")["traces"] if t["root"] == "answer"]
    first, second = answers[:2]
    page.goto(url + f"projects/st/traces/{first}?token=" + token)
    page.wait_for_selector(".trace-page .span-row[data-span]")
    page.fill("input.compare-input", second)
    page.press("input.compare-input", "Enter")
    row = page.wait_for_selector(".trace-diff tr.diff-row")
    assert row.get_attribute("data-path") == "answer"
    assert row.get_attribute("data-changed") == "inputs,output"  # same op, other question and answer
    assert f"compare={second}" in page.url
    page.fill("input.compare-input", "d" * 32)  # a trace of another shape: spans on one side only
    page.press("input.compare-input", "Enter")
    page.wait_for_selector(".trace-diff tr.diff-row[data-path='killed agent / tool']")
    changed = {r.get_attribute("data-path"): r.get_attribute("data-changed")
               for r in page.query_selector_all(".trace-diff tr.diff-row")}
    assert changed == {"answer": "only in A", "killed agent": "only in B", "killed agent / tool": "only in B",
                       "killed agent / llm": "only in B"}


def test_a_spans_media_show_as_images_players_and_downloads(root, page):
    np = pytest.importorskip("numpy")
    pil = pytest.importorskip("PIL.Image")

    @tracklet.op(name="caption")
    def caption(photo, clip, weights: bytes):
        return "a red square"

    @tracklet.op(name="long")
    def long(text: str):
        return {"words": text.split()[:3]}

    run = tracklet.init(project="media", id="m1", dir=str(root), settings=QUIET)
    photo = np.zeros((200, 300, 3), dtype=np.uint8)
    photo[..., 0] = 255
    clip = tracklet.Audio(np.zeros(4000, dtype=np.float32), sample_rate=8000)
    weights = bytes(range(256)) * 64  # 16 KiB of bytes: stored, offered as a download
    caption(pil.fromarray(photo), clip, weights)
    long("lorem ipsum " * 2000)  # 24 KB of JSON: a payload blob
    run.finish()
    traces = {t.root.name: t.trace_id for t in tracklet.Api(root).traces("media")}
    trace_id = traces["caption"]
    process, url, token = start_ui(root)
    try:
        page.goto(url + f"projects/media/traces/{trace_id}?token=" + token)
        image = page.wait_for_selector(".span-media[data-kind=image] img.span-media-image")
        page.wait_for_function("() => document.querySelector('img.span-media-image').naturalWidth > 0")
        # the thumbnail (256 px on the longer side), in the image's colours
        assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [256, 171]
        red = image.evaluate("""i => { const c = document.createElement('canvas'); c.width = 4; c.height = 4;
            const x = c.getContext('2d'); x.drawImage(i, 0, 0, 4, 4); return Array.from(x.getImageData(1, 1, 1, 1).data); }""")
        assert red == [255, 0, 0, 255]
        audio = page.wait_for_selector(".span-media[data-kind=audio] audio")
        assert audio.get_attribute("src").startswith("blob:")
        page.wait_for_function("() => document.querySelector('.span-media[data-kind=file] a').href.startsWith('blob:')")
        size = page.evaluate("""() => fetch(document.querySelector('.span-media[data-kind=file] a').href)
            .then(r => r.arrayBuffer()).then(b => b.byteLength)""")
        assert size == len(weights)
        captions = [c.text_content() for c in page.query_selector_all(".span-media figcaption")]
        assert captions[0].startswith("inputs.photo · image · 300×200")
        assert captions[2].startswith("inputs.weights · bytes")

        page.goto(url + f"projects/media/traces/{traces['long']}?token=" + token)  # a payload over 8 KiB
        page.wait_for_function("() => (document.querySelector('pre.span-blob') || {}).textContent?.startsWith('{')")
        shown = json.loads(page.text_content("pre.span-blob"))
        assert shown == {"text": "lorem ipsum " * 2000}
    finally:
        process.terminate()
        process.wait(timeout=10)
