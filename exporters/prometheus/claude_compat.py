"""Claude Code's own metric names, as the community Grafana dashboard 25255 queries them.

The names, token type names and edit tools are the vendor's (``compat_*`` on
:class:`processors.vendors.claude_code.ClaudeCode`); this module lays out their labels and
counts into them. The dashboard filters on ``organization_id`` and ``user_email`` and groups by
``model``, ``type``, ``decision`` and ``session_id``. Everything is derived from ``claude_code``
events, so whatever reached agentwatch counts exactly once; Claude's own token and cost metrics
(which repeat the events) are not read. Lines of code, commits, pull requests and active time
exist only as Claude's delta metrics and are read from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from collector.agent_model import Agent
from exporters.prometheus.config import PrometheusConfig
from exporters.prometheus.families import CounterMaker, Family
from processors.vendors import Vendor, all_vendors

if TYPE_CHECKING:
    from exporters.prometheus.derived import Who

AGENT = Agent.CLAUDE_CODE


def claude_code_vendor() -> Vendor:
    """The registered Claude Code vendor, owner of the names this module exposes."""
    return next(v for v in all_vendors() if v.agent is AGENT)


class ClaudeCompat:
    """Claude Code's metric families under its own names and labels.

    Series keys are label values in label order, built here next to the label definitions.
    """

    def __init__(self, vendor: Vendor, config: PrometheusConfig, counter: CounterMaker) -> None:
        self.agent = vendor.agent.value
        self.token_types = tuple(vendor.compat_token_types.items())
        self.edit_tools = vendor.compat_edit_tools
        names = vendor.compat_metric_names
        self._user = config.user_label != "none"
        self._session_id = config.claude_code_compat_session_id
        # Series keys are label values in this order (see ``_who``).
        user = ("user_email",) if self._user else ()
        who = ("organization_id", *user)
        session = ("session_id",) if self._session_id else ()
        self.tokens = counter(
            names["tokens"],
            f"Claude Code tokens by type ({', '.join(vendor.compat_token_types)}).",
            ("type", "model", *who),
        )
        self.cost = counter(names["cost"], "Claude Code cost in USD.", ("model", *who, *session))
        self.sessions = counter(
            names["sessions"], "Claude Code sessions started.", ("terminal_type", *who, *session)
        )
        self.lines = counter(
            names["lines"], "Lines of code Claude Code added or removed.", ("type", *who)
        )
        self.commits = counter(names["commits"], "Commits by Claude Code.", who)
        self.pull_requests = counter(names["pull_requests"], "Pull requests by Claude Code.", who)
        self.active = counter(
            names["active_time"], "Claude Code active time by type.", ("type", *who)
        )
        self.edit_decisions = counter(
            names["edit_decisions"],
            "Claude Code edit tool permission decisions.",
            ("decision", "tool_name", *who),
        )
        self.families: list[Family] = [
            self.tokens,
            self.cost,
            self.sessions,
            self.lines,
            self.commits,
            self.pull_requests,
            self.active,
            self.edit_decisions,
        ]

    def _who(self, who: Who) -> tuple[str, ...]:
        """``organization_id[, user_email]``: how every family's labels end (the session's
        families add ``session_id`` after it)."""
        return (who.organization, who.user) if self._user else (who.organization,)

    def _session(self, who: Who) -> tuple[str, ...]:
        return (who.session,) if self._session_id else ()

    def api_call(
        self, who: Who, model: str, tokens: Mapping[str, float | None], cost: float | None
    ) -> None:
        """``tokens``: the call's token counts by agentwatch key."""
        ids = self._who(who)
        for token_type, key in self.token_types:
            n = tokens.get(key)
            if n:
                self.tokens.inc((token_type, model, *ids), n)
        if cost is not None:
            self.cost.inc((model, *ids, *self._session(who)), cost)

    def session(self, who: Who) -> None:
        self.sessions.inc((who.terminal, *self._who(who), *self._session(who)))

    def tool_decision(self, who: Who, tool: str, decision: str) -> None:
        if tool in self.edit_tools:
            self.edit_decisions.inc((decision, tool, *self._who(who)))

    def code_change(
        self,
        who: Who,
        added: float | None,
        removed: float | None,
        commits: float | None,
        pull_requests: float | None,
    ) -> None:
        ids = self._who(who)
        if added:
            self.lines.inc(("added", *ids), added)
        if removed:
            self.lines.inc(("removed", *ids), removed)
        if commits:
            self.commits.inc(ids, commits)
        if pull_requests:
            self.pull_requests.inc(ids, pull_requests)

    def active_time(self, who: Who, kind: str, seconds: float) -> None:
        self.active.inc((kind, *self._who(who)), seconds)
