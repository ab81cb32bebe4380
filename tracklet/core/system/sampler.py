"""The contract every system-metrics source implements."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass
class SamplerInfo:
    """What a sampler reports once, when it starts: static facts for the ``SystemInfo`` record."""

    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    gpus: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


class Sampler:
    """One source of system metrics.

    ``start()`` runs once on the monitor's thread and may turn the sampler off (return ``None``
    and set ``self.enabled = False``) when its source isn't there. ``sample()`` returns
    ``{metric name: value}`` and must be cheap (the monitor calls it every interval) and must not
    raise for a metric that is merely unavailable: leave that metric out. An exception escaping
    ``sample()`` is reported once by the monitor, which then stops calling this sampler.
    """

    name = "sampler"

    def __init__(self, report: Callable[[Any, str], None] | None = None) -> None:
        self.enabled = True
        self._report = report or (lambda token, message: None)

    def start(self) -> SamplerInfo | None:
        return None

    def sample(self) -> dict[str, float]:
        raise NotImplementedError

    def final_sample(self) -> dict[str, float]:
        """The last sample, taken while ``finish()`` waits: a sampler leaves out what is slow to
        measure here."""
        return self.sample()

    def close(self) -> None:
        pass
