"""Typed config of the ``sessionfiles`` receiver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from collector.component import ComponentConfig, Duration

AgentName = Literal["claude-code", "codex", "gemini"]
ALL_AGENTS: list[AgentName] = ["claude-code", "codex", "gemini"]


class SessionFilesConfig(ComponentConfig):
    agents: list[AgentName] = Field(
        default_factory=lambda: list(ALL_AGENTS),
        description="Agents whose session files are followed.",
    )
    paths: dict[AgentName, str] = Field(
        default_factory=dict,
        description="Directory per agent; default: the agent's own under $HOME (or "
        "$AGENTWATCH_CLAUDE_CODE_PATH, $AGENTWATCH_CODEX_PATH, $AGENTWATCH_GEMINI_PATH).",
    )
    poll_interval: Duration = Field(
        default=5.0, gt=0, description="How often the directories are scanned for changes."
    )
    settle: Duration = Field(
        default=10.0,
        ge=0,
        description="A changed file is read once it has not changed for this long, so a "
        "message streamed over several lines is read whole.",
    )
