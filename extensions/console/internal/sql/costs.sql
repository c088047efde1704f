{% from '_filters.sql' import hourly, usage_sums with context %}
-- Cost and tokens grouped by the requested keys (each key's expression comes from the
-- query layer's whitelist), from the hourly rollup.
SELECT
{%- for key, expr in keys %}
    {{ expr }} AS {{ key }},
{%- endfor %}
    {{ usage_sums() }}
FROM usage_hourly
WHERE {{ hourly() }}
{%- if keys %}
GROUP BY {% for key, _ in keys %}{{ key }}{{ ", " if not loop.last }}{% endfor %}
ORDER BY {% for key, _ in keys if key in ("day", "hour") %}{{ key }}, {% endfor %}cost_usd DESC NULLS LAST{% for key, _ in keys %}, {{ key }}{% endfor %}
{%- endif %}
