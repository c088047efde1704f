{% from '_filters.sql' import hourly with context %}
-- Cost and tokens grouped by the requested keys (each key's expression comes from the
-- query layer's whitelist), from the hourly rollup.
SELECT
{%- for key, expr in keys %}
    {{ expr }} AS {{ key }},
{%- endfor %}
    sum(cost_usd) AS cost_usd,
    sum(api_calls) AS api_calls,
    sum(usage_records) AS usage_records,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(unpriced_api_calls) AS unpriced_api_calls,
    sum(unpriced_usage_records) AS unpriced_usage_records
FROM usage_hourly
WHERE {{ hourly() }}
{%- if keys %}
GROUP BY {% for key, _ in keys %}{{ key }}{{ ", " if not loop.last }}{% endfor %}
ORDER BY {% for key, _ in keys if key in ("day", "hour") %}{{ key }}, {% endfor %}cost_usd DESC NULLS LAST{% for key, _ in keys %}, {{ key }}{% endfor %}
{%- endif %}
