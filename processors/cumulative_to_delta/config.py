"""Configuration of the ``cumulative_to_delta`` processor: which metrics, how long to remember."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import Field, model_validator

from collector.component import ComponentConfig, Duration


class MetricMatch(ComponentConfig):
    """Metric names to match, exactly or by (unanchored, like upstream) regular expression."""

    metrics: list[str] = Field(min_length=1)
    match_type: Literal["strict", "regexp"] = "strict"

    @model_validator(mode="after")
    def _compile(self) -> MetricMatch:
        if self.match_type == "regexp":
            for i, pattern in enumerate(self.metrics):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"metrics[{i}]: invalid regexp {pattern!r}: {exc}") from None
        return self

    def matcher(self) -> Callable[[str], bool]:
        if self.match_type == "strict":
            names = frozenset(self.metrics)
            return names.__contains__
        patterns = [re.compile(p) for p in self.metrics]
        return lambda name: any(p.search(name) for p in patterns)


class CumulativeToDeltaConfig(ComponentConfig):
    include: MetricMatch | None = Field(
        default=None, description="Only these metrics are converted; all when unset."
    )
    exclude: MetricMatch | None = Field(
        default=None, description="These metrics are never converted; wins over include."
    )
    initial_value: Literal["auto", "keep", "drop"] = Field(
        default="auto",
        description="First point of a stream never seen: auto emits it only when the stream "
        "started after this processor's state did; keep always; drop never.",
    )
    max_streams: int = Field(
        default=100_000, gt=0, description="Streams remembered; the least recently seen go first."
    )
    max_staleness: Duration = Field(
        default=0.0, description="Forget a stream not seen for this long; 0 keeps it until LRU."
    )
    state_flush_interval: Duration = Field(
        default=10.0, gt=0, description="How often the state is compacted into an fsynced snapshot."
    )
