{% from '_filters.sql' import events with context %}
SELECT
    tool_name,
    mcp_server,
    count() AS calls,
    countIf(decision != '') AS decisions,
    countIf(decision = 'reject') AS denials,
    countIf(success IS NOT NULL) AS results,
    countIf(success = false) AS failures,
    avgIf(duration_ms, duration_ms IS NOT NULL) AS avg_duration_ms,
    quantileIf(0.95)(duration_ms, duration_ms IS NOT NULL) AS p95_duration_ms,
    uniqExact(session_id) AS sessions
FROM tool_calls
WHERE {{ events() }}
GROUP BY tool_name, mcp_server
ORDER BY calls DESC, tool_name, mcp_server
