"""Configuration of the ``detections`` processor."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from collector.component import ComponentConfig, ConfigContext
from processors.detections.rules import DEFAULT_RULES_FILE, RuleFileError, build_rule_set
from processors.secrets import PatternFileError, SecretScrubber


class DetectionsConfig(ComponentConfig):
    rules_file: str | None = Field(
        default=None, description="Your rule file, loaded after the default rules."
    )
    default_rules: bool = Field(default=True, description="Load the built-in rule set.")
    disabled_rules: list[str] = Field(default_factory=list, description="Rule ids to switch off.")
    lists: dict[str, list[str]] = Field(
        default_factory=dict, description="Named lists (e.g. mcp_allowlist); replace the files'."
    )
    evidence_max_chars: int = Field(default=512, ge=0)
    extra_patterns_file: str | None = Field(
        default=None, description="More secret patterns for scrubbing evidence."
    )

    def rule_files(self, base_dir: str = "") -> list[str]:
        files = [str(DEFAULT_RULES_FILE)] if self.default_rules else []
        if self.rules_file:
            files.append(resolve(self.rules_file, base_dir))
        return files

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        """Load every file now, so a bad one stops ``validate`` and the start, named."""
        errors: list[str] = []
        try:
            build_rule_set(self.rule_files(ctx.base_dir), self.lists, self.disabled_rules)
        except RuleFileError as e:
            errors.append(f"{path}.rules_file: {e}")
        if self.extra_patterns_file:
            try:
                SecretScrubber.from_files([resolve(self.extra_patterns_file, ctx.base_dir)])
            except PatternFileError as e:
                errors.append(f"{path}.extra_patterns_file: {e}")
        return errors


def resolve(path: str, base_dir: str) -> str:
    """A configured path, relative ones taken from the config file's directory."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() or not base_dir else Path(base_dir) / p)
