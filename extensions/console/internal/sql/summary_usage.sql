{% from '_filters.sql' import hourly, usage_sums, user with context %}
-- Overview totals from the hourly rollup: whole hours starting in [from, to).
SELECT
    {{ usage_sums() }},
    uniqExact({{ user() }}) AS active_users
FROM usage_hourly
WHERE {{ hourly() }}
