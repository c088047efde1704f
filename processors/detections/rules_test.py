"""``agentwatch rules test``: one rule file over sample events, through the same pure matching
the processor uses (``RuleSet.evaluate``), with no records built."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.detections.rules import (
    FIELDS,
    Values,
    build_rule_set,
    event_fields,
    render_evidence,
)
from processors.secrets import SecretScrubber

EXPECT_KEY = "_expect"
EVIDENCE_MAX_CHARS = 512
"""The processor's default ``evidence_max_chars``."""


@dataclass
class EventResult:
    line: int
    matched: list[tuple[str, str, str]]
    """(rule id, severity, evidence)"""
    expected: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.expected is None or sorted(self.expected) == sorted(
            r for r, _, _ in self.matched
        )


@dataclass
class RulesTestReport:
    rule_file: str
    events_file: str
    rules: int
    results: list[EventResult]

    @property
    def failures(self) -> list[EventResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def format(self) -> str:
        lines = [
            f"{self.rules} rules from {self.rule_file}; {len(self.results)} events from "
            f"{self.events_file}"
        ]
        for r in self.results:
            if not r.matched:
                lines.append(f"line {r.line}: no match")
            for rule_id, severity, evidence in r.matched:
                lines.append(f"line {r.line}: {rule_id} [{severity}] {evidence}")
            if not r.ok:
                got = sorted(rule for rule, _, _ in r.matched)
                lines.append(f"line {r.line}: FAIL expected {sorted(r.expected or [])}, got {got}")
        matched = sum(1 for r in self.results if r.matched)
        total = sum(len(r.matched) for r in self.results)
        checked = sum(1 for r in self.results if r.expected is not None)
        lines.append(
            f"{total} matches on {matched} of {len(self.results)} events; "
            f"{checked} expectations checked, {len(self.failures)} failed"
        )
        return "\n".join(lines)


def sample_fields(event: Mapping[str, Any]) -> dict[str, Values]:
    """The rule fields of one sample event (a JSON object): keys are full attribute keys or
    rule field names; a list of strings is a comma-separated list, an object its JSON text."""
    attributes: dict[str, Any] = {}
    for key, value in event.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        elif isinstance(value, dict):
            value = json.dumps(value)
        attributes[FIELDS.get(key, key)] = value
    return event_fields(attributes)


def test_rules(
    rule_file: str | Path,
    events_file: str | Path,
    lists: Mapping[str, Sequence[str]] | None = None,
) -> RulesTestReport:
    """Run one rule file over sample events (JSON lines, see docs/detections.md).

    Each line is an object of attributes: full keys (``agentwatch.command``) or rule field names
    (``command``); ``"_expect": [rule ids]`` makes the line a check. Blank lines and lines
    starting with ``#`` are skipped. Rules are not deduplicated here: every match is shown.
    """
    rule_set = build_rule_set([rule_file], lists)
    scrubber = SecretScrubber()
    results: list[EventResult] = []
    with open(events_file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{events_file}:{number}: not valid JSON: {e.msg}") from e
            if not isinstance(event, dict):
                raise ValueError(f"{events_file}:{number}: expected a JSON object")
            expected = event.pop(EXPECT_KEY, None)
            if expected is not None and not (
                isinstance(expected, list) and all(isinstance(e, str) for e in expected)
            ):
                raise ValueError(f"{events_file}:{number}: {EXPECT_KEY} must be a list of rule ids")
            matched: list[tuple[str, str, str]] = [
                (m.rule.id, m.rule.severity, render_evidence(m, scrubber, EVIDENCE_MAX_CHARS))
                for m in rule_set.evaluate(sample_fields(event))
            ]
            results.append(EventResult(number, matched, expected))
    return RulesTestReport(str(rule_file), str(events_file), len(rule_set.rules), results)


test_rules.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
