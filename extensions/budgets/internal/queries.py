"""The SQL the budgets extension runs, on the public views only (docs/data-model.md).

Times are bound as Unix microseconds (``fromUnixTimestamp64Micro``) and returned as Unix
milliseconds, so neither the server's nor the client's time zone can shift them.
"""

from __future__ import annotations

_SCOPE = (
    "(empty({team:Array(String)}) OR has({team:Array(String)}, team)) "
    "AND (empty({cost_center:Array(String)}) OR has({cost_center:Array(String)}, cost_center)) "
    "AND (empty({user:Array(String)}) OR has({user:Array(String)}, user_email) "
    "OR has({user:Array(String)}, user_id)) "
    "AND (empty({agent:Array(String)}) OR has({agent:Array(String)}, agent)) "
    "AND (empty({model:Array(String)}) OR has({model:Array(String)}, model))"
)
_SINCE = "timestamp >= fromUnixTimestamp64Micro({since_us:Int64})"

SPEND = (
    "SELECT "
    "sumIf(c.cost, c.ts >= fromUnixTimestamp64Micro({start_us:Int64})) AS spend, "
    "sumIf(c.cost, c.ts >= fromUnixTimestamp64Micro({recent_us:Int64})) AS recent, "
    "countIf(c.unpriced AND c.ts >= fromUnixTimestamp64Micro({start_us:Int64})) AS unpriced "
    "FROM ("
    f"SELECT timestamp AS ts, ifNull(cost_usd, 0) AS cost, isNull(cost_usd) AS unpriced "
    f"FROM api_calls WHERE {_SINCE} AND {_SCOPE} "
    "UNION ALL "
    f"SELECT timestamp AS ts, ifNull(cost_usd, 0) AS cost, isNull(cost_usd) AS unpriced "
    f"FROM api_usage WHERE {_SINCE} AND {_SCOPE} AND (agent, session_id) NOT IN ("
    "SELECT agent, session_id FROM sessions WHERE api_calls > 0 AND (agent, session_id) IN ("
    f"SELECT agent, session_id FROM api_usage WHERE {_SINCE}))"
    ") AS c"
)
"""Known costs of the scope since the period start and since the burn-rate window start, and
the calls without a price. A session's cost comes from its api_call rows when it has any, else
from its api_usage rows (metrics-only set-ups): the rule of the ``sessions`` view, so a budget's
spend equals the sum of ``sessions.cost_usd`` over the same sessions. The inner ``IN`` names
only sessions with api_usage rows in the window; ClickHouse pushes it into the ``sessions``
view's grouping, so the view aggregates those sessions, not every session ever stored."""

LAST_SEEN = (
    "SELECT agent, if(user_email != '', user_email, user_id) AS who, "
    "toUnixTimestamp64Milli(max(last_seen)) AS last_ms FROM sessions "
    "WHERE last_seen >= fromUnixTimestamp64Micro({since_us:Int64}) "
    "GROUP BY agent, who"
)
"""When each agent and user last sent anything, among those seen since ``since``."""

SESSION_GAPS = (
    "SELECT e.agent, e.session_id, e.last_event_ms, m.last_metric_ms FROM ("
    "SELECT agent, session_id, toUnixTimestamp64Milli(max(timestamp)) AS last_event_ms FROM ("
    f"SELECT agent, session_id, timestamp FROM api_calls WHERE {_SINCE} "
    f"UNION ALL SELECT agent, session_id, timestamp FROM tool_calls WHERE {_SINCE}"
    ") WHERE session_id != '' GROUP BY agent, session_id) AS e "
    "INNER JOIN ("
    "SELECT agent, session_id, toUnixTimestamp64Milli(max(timestamp)) AS last_metric_ms "
    f"FROM api_usage WHERE {_SINCE} AND session_id != '' GROUP BY agent, session_id) AS m "
    "ON e.agent = m.agent AND e.session_id = m.session_id "
    "WHERE abs(e.last_event_ms - m.last_metric_ms) > {gap_ms:Int64}"
)
"""Sessions with both events (api and tool calls) and token metrics (``api_usage``) whose last
event and last metric point lie more than ``gap`` apart: one of the two streams stopped."""
