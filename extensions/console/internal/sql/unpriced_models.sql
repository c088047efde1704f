{% from '_filters.sql' import hourly with context %}
SELECT agent, provider, model,
    sum(unpriced_api_calls) + sum(unpriced_usage_records) AS unpriced,
    sum(api_calls) + sum(usage_records) AS records
FROM usage_hourly
WHERE {{ hourly() }}
GROUP BY agent, provider, model
HAVING unpriced > 0
ORDER BY unpriced DESC, model
