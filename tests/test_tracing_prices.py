"""LLM cost: the versioned price table applied to spans' tokens when traces are read."""

from __future__ import annotations

import datetime
import json

import pytest

import tracklet
from tracklet.errors import PricesError
from tracklet.store import Store
from tracklet.store.prices import DEFAULT_PRICES, PriceTable, load_prices, parse_prices
from tracklet.store.spans import span_row


def _ns(day: str) -> int:
    return int(datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc).timestamp() * 1e9)


def _span(model: str, day: str, tokens_in: int | None = 1000, tokens_out: int | None = 500, provider="openai",
          span_id="1" * 16, trace_id="a" * 32, parent="") -> dict:
    attributes = {"gen_ai.provider.name": provider, "gen_ai.response.model": model}
    if tokens_in is not None:
        attributes["gen_ai.usage.input_tokens"] = tokens_in
    if tokens_out is not None:
        attributes["gen_ai.usage.output_tokens"] = tokens_out
    return span_row({"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent, "name": f"chat {model}",
                     "start_ns": _ns(day), "end_ns": _ns(day) + 1, "attributes": attributes}) | {"run_id": ""}


def test_the_price_in_effect_at_the_span_start_applies_by_longest_model_prefix():
    table = PriceTable(DEFAULT_PRICES)
    late, early = table.cost(_span("gpt-4o-2024-08-06", "2025-01-10")), table.cost(_span("gpt-4o", "2024-06-01"))
    assert late == {"input_cost": pytest.approx(0.0025), "output_cost": pytest.approx(0.005), "cost": pytest.approx(0.0075)}
    assert early["cost"] == pytest.approx(1000 * 5 / 1e6 + 500 * 15 / 1e6)  # the price before 2024-10-01
    assert table.cost(_span("gpt-4o-mini-2024-07-18", "2025-01-10"))["input_cost"] == pytest.approx(0.00015)
    assert table.cost(_span("gpt-4o", "2020-01-01"))["cost"] is None  # before any price of it
    assert table.cost(_span("gpt-4o", "2025-01-10", provider="anthropic"))["cost"] is None  # another provider's
    assert table.cost(_span("unknown-model", "2025-01-10"))["cost"] is None
    assert table.cost(_span("gpt-4o", "2025-01-10", tokens_out=None)) == {
        "input_cost": pytest.approx(0.0025), "output_cost": None, "cost": pytest.approx(0.0025)}


def test_a_data_roots_prices_add_models_and_override_per_project(tmp_path):
    (tmp_path / "prices.json").write_text(json.dumps([
        {"provider": "acme", "model": "acme-1", "effective": "2025-01-01", "input": 1, "output": 2},
        {"provider": "openai", "model": "gpt-4o", "effective": "2024-01-01", "input": 1.0, "output": 1.0,
         "project": "discounted"},
    ]))
    table = PriceTable(load_prices(tmp_path))
    assert table.cost(_span("acme-1", "2025-02-01", provider="acme"))["cost"] == pytest.approx(0.002)
    assert table.cost(_span("gpt-4o", "2025-02-01"), "discounted")["cost"] == pytest.approx(0.0015)
    assert table.cost(_span("gpt-4o", "2025-02-01"), "other")["cost"] == pytest.approx(0.0075)


@pytest.mark.parametrize("data, problem", [
    ({"model": "x"}, "expected a JSON list"),
    ([{"model": "x", "effective": "2025-01-01", "input": -1, "output": 1}], "entry 0: input must be a price"),
    ([{"model": "x", "effective": "2025-13-01", "input": 1, "output": 1}], "entry 0: effective must be a date"),
    ([{"model": "", "effective": "2025-01-01", "input": 1, "output": 1}], "entry 0: model must be"),
    ([{"model": "x", "effective": "2025-01-01", "input": 1, "output": float("nan")}], "output must be a price"),
    ([{"model": "x", "effective": "2025-01-01", "input": 1, "output": 1, "currency": "EUR"}], "unknown field 'currency'"),
])
def test_bad_prices_are_refused_naming_the_entry(data, problem):
    with pytest.raises(PricesError, match=problem):
        parse_prices(data)


def test_traces_carry_costs_and_sums(root):
    store = Store(root=root)
    rows = [_span("gpt-4o", "2025-01-10"),
            _span("claude-3-5-sonnet-20241022", "2025-01-10", 2000, 100, provider="anthropic", span_id="2" * 16,
                  parent="1" * 16),
            _span("no-price", "2025-01-10", 7, 7, span_id="3" * 16, parent="1" * 16)]
    store.add_spans("p", rows)
    (trace,) = store.traces("p")
    assert [s["cost"] for s in trace["spans"]][:2] == [pytest.approx(0.0075), pytest.approx(0.0075)]
    assert trace["spans"][2]["cost"] is None
    assert trace["cost"] == pytest.approx(0.015) and trace["input_tokens"] == 3007 and trace["output_tokens"] == 607
    store.close()
    (api_trace,) = tracklet.Api(root).traces("p")
    assert api_trace.cost == pytest.approx(0.015) and api_trace.spans[0].output_cost == pytest.approx(0.005)
    (root / "prices.json").write_text(json.dumps([{"model": "no-price", "effective": "2025-01-01", "input": 1e6,
                                                    "output": 0}]))
    (api_trace,) = tracklet.Api(root).traces("p")
    assert api_trace.spans[2].cost == pytest.approx(7.0)  # a price added later applies to spans before it


def test_built_in_prices_name_their_source_and_newer_models_do_not_take_an_older_prefixs_price():
    assert all(price.source for price in DEFAULT_PRICES)  # where each was read (docs/tracing.md)
    # OpenAI's own page was not reachable where the table was checked: every OpenAI entry says so
    assert all(price.source.startswith("UNVERIFIED") for price in DEFAULT_PRICES if price.provider == "openai")
    table = PriceTable(DEFAULT_PRICES)
    # claude-opus-4 is a prefix of claude-opus-4-5, priced a third of it; haiku 4.5 has a price of its own
    assert (table.price("anthropic", "claude-opus-4-5-20251101", _ns("2026-01-05")).input,
            table.price("anthropic", "claude-opus-4-1-20250805", _ns("2026-01-05")).input) == (5.0, 15.0)
    assert table.price("anthropic", "claude-haiku-4-5-20251001", _ns("2026-01-05")).output == 5.0
    assert table.price("anthropic", "claude-sonnet-4-5-20250929", _ns("2026-01-05")).input == 3.0
    # gpt-4o's first snapshot kept its launch price when the alias moved to a cheaper one
    assert table.price("openai", "gpt-4o-2024-05-13", _ns("2025-03-01")).input == 5.0
    assert table.price("openai", "gpt-4o", _ns("2025-03-01")).input == 2.5
    assert table.price("openai", "gpt-4o", _ns("2024-09-01")).input == 5.0


def test_a_prices_file_entry_may_name_its_source():
    (price,) = parse_prices([{"provider": "acme", "model": "m", "effective": "2025-01-01", "input": 1, "output": 2,
                              "source": "acme.example/pricing"}])
    assert price.source == "acme.example/pricing"
    with pytest.raises(PricesError, match="source must be"):
        parse_prices([{"model": "m", "effective": "2025-01-01", "input": 1, "output": 2, "source": 5}])
