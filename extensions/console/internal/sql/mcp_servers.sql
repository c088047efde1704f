{% from '_filters.sql' import events, user with context %}
SELECT
    mcp_server,
    min(timestamp) AS first_seen,
    argMin({{ user() }}, timestamp) AS first_user,
    max(timestamp) AS last_seen,
    uniqExact({{ user() }}) AS users,
    count() AS calls,
    countIf(decision = 'accept') AS accepted,
    countIf(decision = 'reject') AS denials,
    arraySort(groupUniqArray(tool_name)) AS tools
FROM tool_calls
WHERE mcp_server != '' AND {{ events() }}
GROUP BY mcp_server
ORDER BY calls DESC, mcp_server
