{% from '_filters.sql' import hourly, usage_sums, user with context %}
-- Everything the Overview reads from the hourly rollup in one pass: cost over time by agent,
-- model and team, cost by user and by team, and the totals. grouping_set names the set.
SELECT
    multiIf(
        grouping(bucket) = 0 AND grouping(agent) = 0, 'agent',
        grouping(bucket) = 0 AND grouping(model) = 0, 'model',
        grouping(bucket) = 0 AND grouping(team) = 0, 'team',
        grouping(user) = 0, 'user',
        grouping(team) = 0, 'top_team',
        'total') AS grouping_set,
    {{ bucket }} AS bucket,
    agent,
    model,
    team,
    {{ user() }} AS user,
    {{ usage_sums() }},
    uniqExact({{ user() }}) AS active_users
FROM usage_hourly
WHERE {{ hourly() }}
GROUP BY GROUPING SETS ((bucket, agent), (bucket, model), (bucket, team), (user), (team), ())
