{#- How much of the API calls the agents' own session files show OTLP delivered too
    (call_reconciliation), per agent over the sessions active in the range. The view has no
    team or model: those filters do not apply here. -#}
SELECT agent,
    count() AS sessions,
    sum(file_calls) AS file_calls,
    sum(otlp_calls) AS otlp_calls,
    sum(both_calls) AS both_calls,
    sum(file_only_calls) AS file_only_calls,
    sum(otlp_only_calls) AS otlp_only_calls,
    if(file_calls = 0, NULL, round(100 * both_calls / file_calls, 2)) AS coverage_pct
FROM call_reconciliation
WHERE last_seen >= {start:DateTime64(3, 'UTC')} AND first_seen < {end:DateTime64(3, 'UTC')}
  AND (empty({agents:Array(String)}) OR has({agents:Array(String)}, agent))
  AND (empty({users:Array(String)}) OR has({users:Array(String)}, user_email) OR has({users:Array(String)}, user_id))
GROUP BY agent
HAVING file_calls > 0
ORDER BY agent
