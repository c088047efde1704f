"""The ``budgets`` extension: spend against budgets with forecasts, silent telemetry, and
webhook notifications (docs/budgets.md)."""

from __future__ import annotations

from collector.component import Factory
from extensions.budgets.config import BudgetsConfig
from extensions.budgets.extension import BudgetsExtension

FACTORY: Factory[BudgetsExtension] = Factory(
    "budgets", "extension", BudgetsConfig, BudgetsExtension
)
