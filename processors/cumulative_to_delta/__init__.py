"""The ``cumulative_to_delta`` processor: cumulative sums and histograms become deltas, with
state that survives a restart (docs/cumulative-to-delta.md)."""

from __future__ import annotations

from processors.cumulative_to_delta.config import CumulativeToDeltaConfig, MetricMatch
from processors.cumulative_to_delta.processor import FACTORY, CumulativeToDelta

__all__ = ["FACTORY", "CumulativeToDelta", "CumulativeToDeltaConfig", "MetricMatch"]
