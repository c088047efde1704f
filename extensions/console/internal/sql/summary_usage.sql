{% from '_filters.sql' import hourly, user with context %}
-- Overview totals from the hourly rollup: whole hours starting in [from, to).
SELECT
    sum(cost_usd) AS cost_usd,
    sum(api_calls) AS api_calls,
    sum(usage_records) AS usage_records,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(unpriced_api_calls) AS unpriced_api_calls,
    sum(unpriced_usage_records) AS unpriced_usage_records,
    uniqExact({{ user() }}) AS active_users
FROM usage_hourly
WHERE {{ hourly() }}
