"""LLM prices: a versioned table (provider, model, effective date, USD per million input and output
tokens) that the traces query applies to each span's token columns (docs/tracing.md, "Cost").

Cost is computed when traces are read, never stored: a price added or corrected later applies to
spans recorded before. For a span the entry used is, among those of its provider (or any provider
when the span names none) whose ``model`` is the span's model or the longest prefix of it
(``gpt-4o`` prices ``gpt-4o-2024-08-06``; ``gpt-4o-mini`` wins over ``gpt-4o`` for
``gpt-4o-mini-...``), the one with the latest ``effective`` date on or before the span's start.

``DEFAULT_PRICES`` holds list prices the providers published; a data root's ``prices.json``
(a JSON list of entries like ``{"provider": "openai", "model": "gpt-4o", "effective":
"2025-01-01", "input": 2.5, "output": 10.0}``, the prices in USD per million tokens; an optional
``"project"`` limits an entry to one project) adds entries or replaces those of the same
provider, model, date and project: a project's own entries win over the general ones.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tracklet.errors import PricesError

PRICES_FILE = "prices.json"
MAX_PRICES_FILE_BYTES = 4 << 20
MAX_ENTRIES = 10_000


@dataclasses.dataclass(frozen=True)
class Price:
    """USD per million tokens for ``model`` (or models it prefixes) from ``effective`` on;
    ``source``: where the price was read (built-in entries; optional in ``prices.json``)."""

    provider: str
    model: str
    effective: datetime.date
    input: float
    output: float
    project: str = ""
    source: str = dataclasses.field(default="", compare=False)


def _entry(provider: str, model: str, effective: str, input: float, output: float, source: str) -> Price:
    return Price(provider, model, datetime.date.fromisoformat(effective), input, output, source=source)


# Where the built-in prices were read (checked 2026-12-03). Anthropic's come from its own pricing
# page; OpenAI's page was not reachable from here, so its entries are the figures that several
# independent pages citing it agree on (docs/tracing.md, "Cost", says which is which).
_ANTHROPIC = "docs.anthropic.com/en/docs/about-claude/pricing"
_ANTHROPIC_45 = _ANTHROPIC + " (as mirrored 2025-11-15 at aiwiki.dev/claude/docs/about-claude/pricing)"
_ANTHROPIC_UNVERIFIED = ("not on Anthropic's page as read here; deploybase.ai/articles/claude-api-pricing "
                         "(2026-03-21) and others")


def _openai(seen: str) -> str:
    """An OpenAI entry's source: unverified (openai.com/api/pricing and platform.openai.com/docs/pricing
    were not reachable where the table was checked, 2026-12-03), and the third-party pages that
    gave the same figure, with the date each states."""
    return f"UNVERIFIED against openai.com; the same figure on: {seen}"


_O_CONDUIT = "github.com/knnlabs/Conduit docs/model-pricing/openai-pricing.md (2025-01-18)"
_O_KUNISHOU = "github.com/kunishou/GenerativeAI-Cost (2024)"
_O_AIMODELCALC = "aimodelcalc.pages.dev/guides/openai-api-pricing.html (citing platform.openai.com, 2026-05)"
_O_GOITREELS = "goitreels-com.pages.dev/blog/openai-api-pricing-guide (2026-04-06)"
_O_TOKENMATH = "tokenmath.io/openai-api-pricing-explained (2026-06-21)"
_O_AKR = "chatgptpricing-akr.pages.dev/api-pricing (citing developers.openai.com)"

# List prices (USD per 1M tokens, standard tier, no caching or batch discount) from the dates given:
# a price change's date, else the model's release (the date in its snapshot's name where it has one).
DEFAULT_PRICES: tuple[Price, ...] = (
    _entry("openai", "gpt-4o", "2024-05-13", 5.00, 15.00, _openai(f"{_O_KUNISHOU}; {_O_CONDUIT} (the 2024-05-13 snapshot)")),
    # gpt-4o's price from gpt-4o-2024-08-06 on (the alias moved to it on 2024-10-02); the first
    # snapshot kept its launch price.
    _entry("openai", "gpt-4o", "2024-10-02", 2.50, 10.00, _openai(f"{_O_AIMODELCALC}; {_O_GOITREELS}; {_O_AKR}")),
    _entry("openai", "gpt-4o-2024-05-13", "2024-05-13", 5.00, 15.00, _openai(_O_CONDUIT)),
    _entry("openai", "gpt-4o-2024-08-06", "2024-08-06", 2.50, 10.00, _openai(f"{_O_CONDUIT}; {_O_KUNISHOU}")),
    _entry("openai", "gpt-4o-mini", "2024-07-18", 0.15, 0.60, _openai(f"{_O_CONDUIT}; {_O_AIMODELCALC}; {_O_GOITREELS}; {_O_AKR}")),
    _entry("openai", "gpt-4-turbo", "2024-04-09", 10.00, 30.00, _openai(_O_KUNISHOU)),
    _entry("openai", "gpt-3.5-turbo", "2024-01-25", 0.50, 1.50, _openai(f"{_O_KUNISHOU} (gpt-3.5-turbo-0125); {_O_AIMODELCALC}; {_O_GOITREELS}")),
    _entry("openai", "gpt-4.1", "2025-04-14", 2.00, 8.00, _openai(f"{_O_CONDUIT}; {_O_TOKENMATH}")),
    _entry("openai", "gpt-4.1-mini", "2025-04-14", 0.40, 1.60, _openai(f"{_O_CONDUIT}; {_O_TOKENMATH}")),
    _entry("openai", "gpt-4.1-nano", "2025-04-14", 0.10, 0.40, _openai(_O_CONDUIT)),
    _entry("openai", "text-embedding-3-small", "2024-01-25", 0.02, 0.0, _openai(f"{_O_GOITREELS}; {_O_AKR}; {_O_TOKENMATH}")),
    _entry("openai", "text-embedding-3-large", "2024-01-25", 0.13, 0.0, _openai(f"{_O_GOITREELS}; {_O_AKR}")),
    _entry("anthropic", "claude-3-opus", "2024-03-04", 15.00, 75.00, _ANTHROPIC),
    _entry("anthropic", "claude-3-haiku", "2024-03-07", 0.25, 1.25, _ANTHROPIC),
    _entry("anthropic", "claude-3-5-sonnet", "2024-06-20", 3.00, 15.00, _ANTHROPIC),
    _entry("anthropic", "claude-3-5-haiku", "2024-11-04", 0.80, 4.00, _ANTHROPIC),
    _entry("anthropic", "claude-3-7-sonnet", "2025-02-24", 3.00, 15.00, _ANTHROPIC),
    # claude-sonnet-4 prices claude-sonnet-4-5 too (same price: _ANTHROPIC_45), claude-opus-4
    # prices claude-opus-4-1 (same price).
    _entry("anthropic", "claude-sonnet-4", "2025-05-22", 3.00, 15.00, _ANTHROPIC),
    _entry("anthropic", "claude-opus-4", "2025-05-22", 15.00, 75.00, _ANTHROPIC),
    _entry("anthropic", "claude-haiku-4-5", "2025-10-01", 1.00, 5.00, _ANTHROPIC_45),
    # Without it, claude-opus-4-5 would take claude-opus-4's price (a prefix of its name).
    _entry("anthropic", "claude-opus-4-5", "2025-11-01", 5.00, 25.00, _ANTHROPIC_UNVERIFIED),
)


def parse_prices(data: Any, source: str = PRICES_FILE) -> list[Price]:
    """Entries from a ``prices.json``'s parsed JSON; ``PricesError`` naming the first bad entry."""
    if not isinstance(data, list):
        raise PricesError(f"{source}: expected a JSON list of price entries")
    if len(data) > MAX_ENTRIES:
        raise PricesError(f"{source}: more than {MAX_ENTRIES} entries")
    out = []
    for index, item in enumerate(data):
        where = f"{source}: entry {index}"
        if not isinstance(item, Mapping):
            raise PricesError(f"{where} is not an object")
        unknown = set(item) - {"provider", "model", "effective", "input", "output", "project", "source"}
        if unknown:
            raise PricesError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        model, provider, project = item.get("model"), item.get("provider", ""), item.get("project", "")
        if not isinstance(model, str) or not model or len(model) > 256:
            raise PricesError(f"{where}: model must be a non-empty string")
        source_text = item.get("source", "")
        if not isinstance(provider, str) or not isinstance(project, str) or not isinstance(source_text, str):
            raise PricesError(f"{where}: provider, project and source must be strings")
        try:
            effective = datetime.date.fromisoformat(str(item.get("effective", "")))
        except ValueError:
            raise PricesError(f"{where}: effective must be a date like 2025-01-31") from None
        prices = []
        for field in ("input", "output"):
            value = item.get(field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise PricesError(f"{where}: {field} must be a price >= 0 in USD per million tokens")
            prices.append(float(value))
        out.append(Price(provider.lower(), model, effective, prices[0], prices[1], project, source_text[:1000]))
    return out


def load_prices(root: Path | None) -> list[Price]:
    """``DEFAULT_PRICES`` with a data root's ``prices.json`` on top (see the module's docstring)."""
    entries = {(p.provider, p.model, p.effective, p.project): p for p in DEFAULT_PRICES}
    path = None if root is None else Path(root) / PRICES_FILE
    if path is not None and path.is_file():
        if path.stat().st_size > MAX_PRICES_FILE_BYTES:
            raise PricesError(f"{path}: larger than {MAX_PRICES_FILE_BYTES} bytes")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise PricesError(f"{path}: not JSON ({error})") from None
        for price in parse_prices(data, str(path)):
            entries[(price.provider, price.model, price.effective, price.project)] = price
    return list(entries.values())


class PriceTable:
    """Looks up the price of a span's model at its start time (see the module's docstring)."""

    def __init__(self, prices: Iterable[Price]) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for price in prices:
            self._by_model.setdefault(price.model, []).append(price)
        self._cache: dict[tuple[str, str, datetime.date, str], Price | None] = {}
        self._lengths = sorted({len(model) for model in self._by_model}, reverse=True)

    def price(self, provider: str, model: str, start_ns: int, project: str = "") -> Price | None:
        if not model:
            return None
        day = datetime.datetime.fromtimestamp(start_ns / 1e9, datetime.timezone.utc).date()
        key = (provider, model, day, project)
        if key in self._cache:
            return self._cache[key]
        found = None
        for length in self._lengths:
            entries = self._by_model.get(model[:length]) if length <= len(model) else None
            if entries is None:
                continue
            candidates = [p for p in entries if p.effective <= day and p.project in ("", project)
                          and (not p.provider or not provider or p.provider == provider)]
            if candidates:  # a project's own entries first, then the latest
                found = max(candidates, key=lambda p: (bool(p.project), p.effective))
                break
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = found
        return found

    def cost(self, span: Mapping[str, Any], project: str = "") -> dict[str, float | None]:
        """``input_cost``, ``output_cost`` and ``cost`` (USD) of a span row; None where its model has
        no price or it has no tokens of that kind."""
        price = self.price(span.get("provider") or "", span.get("model") or "", span.get("start_ns") or 0, project)
        if price is None:
            return {"input_cost": None, "output_cost": None, "cost": None}
        tokens_in, tokens_out = span.get("input_tokens"), span.get("output_tokens")
        input_cost = tokens_in * price.input / 1e6 if tokens_in is not None else None
        output_cost = tokens_out * price.output / 1e6 if tokens_out is not None else None
        total = None if input_cost is None and output_cost is None else (input_cost or 0.0) + (output_cost or 0.0)
        return {"input_cost": input_cost, "output_cost": output_cost, "cost": total}
