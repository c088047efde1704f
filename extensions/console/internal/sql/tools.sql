{% from '_filters.sql' import events, user with context %}
-- Tools (per tool and MCP server) and the MCP server catalog (per server) in one pass over
-- tool_calls; grouping_set names the set.
SELECT
    if(grouping(tool_name) = 0, 'tool', 'mcp_server') AS grouping_set,
    tool_name,
    mcp_server,
    count() AS calls,
    countIf(decision != '') AS decisions,
    countIf(decision = 'accept') AS accepted,
    countIf(decision = 'reject') AS denials,
    countIf(success IS NOT NULL) AS results,
    countIf(success = false) AS failures,
    avgIf(duration_ms, duration_ms IS NOT NULL) AS avg_duration_ms,
    quantileIf(0.95)(duration_ms, duration_ms IS NOT NULL) AS p95_duration_ms,
    uniqExact(session_id) AS sessions,
    min(timestamp) AS first_seen,
    argMin({{ user() }}, timestamp) AS first_user,
    max(timestamp) AS last_seen,
    uniqExact({{ user() }}) AS users,
    arraySort(groupUniqArray(tool_name)) AS tools
FROM tool_calls
WHERE {{ events() }}
GROUP BY GROUPING SETS ((tool_name, mcp_server), (mcp_server))
