"""Tracing: ``@tracklet.op`` spans recorded in a run's log, and OTLP/HTTP spans decoded for the
store (docs/tracing.md).

Layer 5, beside ``api`` and ``sweeps``: it builds on the core (the run's sender queue), the
artifacts' blob store (large payloads) and the store (span rows); the server's ``/v1/traces``
receiver builds on it. Importing this package imports neither protobuf nor the store.
"""

from __future__ import annotations

from typing import Any

from tracklet.tracing.ops import budget_left_out, current_span_ids, op, sampled

__all__ = ["autopatch", "budget_left_out", "current_span_ids", "op", "sampled", "set_redaction_hook"]


def autopatch(providers: Any = None, *, include_usage: bool = True) -> list[str]:
    """See :func:`tracklet.tracing.llm.autopatch`: chat calls of ``openai``/``anthropic`` become spans."""
    from tracklet.tracing.llm import autopatch as _autopatch

    return _autopatch(providers, include_usage=include_usage)


def set_redaction_hook(hook: Any) -> None:
    """See :func:`tracklet.tracing.record.set_redaction_hook`."""
    from tracklet.tracing.record import set_redaction_hook as _set

    _set(hook)
