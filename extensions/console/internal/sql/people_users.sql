{% from '_filters.sql' import hourly, user with context %}
SELECT
    {{ user() }} AS user,
    argMax(team, hour) AS main_team,
    sum(cost_usd) AS cost_usd,
    sum(api_calls) AS api_calls,
    sum(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens,
    uniqExact(toDate(hour)) AS active_days,
    arraySort(groupUniqArray(agent)) AS agents,
    arraySort(groupUniqArray(model)) AS models
FROM usage_hourly
WHERE {{ hourly() }}
GROUP BY user
