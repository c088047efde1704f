-- The models of a page of sessions (their calls lie between the page's first and last event).
SELECT session_id, agent, arraySort(groupUniqArray(model)) AS models
FROM (
    SELECT session_id, agent, model FROM api_calls
    WHERE has({ids:Array(String)}, session_id) AND model != ''
      AND timestamp >= {lo:DateTime64(9, 'UTC')} AND timestamp <= {hi:DateTime64(9, 'UTC')}
    UNION ALL
    SELECT session_id, agent, model FROM api_usage
    WHERE has({ids:Array(String)}, session_id) AND model != ''
      AND timestamp >= {lo:DateTime64(9, 'UTC')} AND timestamp <= {hi:DateTime64(9, 'UTC')}
)
GROUP BY session_id, agent
