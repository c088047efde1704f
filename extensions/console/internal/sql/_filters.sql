{#- Shared WHERE clauses. Values are never written into the SQL: they are ClickHouse query
    parameters ({name:Type}); Jinja only chooses which clauses apply. -#}
{% macro people(model_column=false) -%}
(empty({agents:Array(String)}) OR has({agents:Array(String)}, agent))
  AND (empty({teams:Array(String)}) OR has({teams:Array(String)}, team))
  AND (empty({users:Array(String)}) OR has({users:Array(String)}, user_email) OR has({users:Array(String)}, user_id))
{%- if models %}
  AND {% if model_column %}has({models:Array(String)}, model){% else %}session_id IN (
    SELECT session_id FROM api_calls WHERE has({models:Array(String)}, model)
      AND timestamp >= {start:DateTime64(3, 'UTC')} - INTERVAL 1 DAY AND timestamp < {end:DateTime64(3, 'UTC')}
    UNION ALL
    SELECT session_id FROM api_usage WHERE has({models:Array(String)}, model)
      AND timestamp >= {start:DateTime64(3, 'UTC')} - INTERVAL 1 DAY AND timestamp < {end:DateTime64(3, 'UTC')} + INTERVAL 1 DAY){% endif %}
{%- endif %}
{%- endmacro %}

{% macro events(model_column=false) -%}
timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}
  AND {{ people(model_column) }}
{%- endmacro %}

{% macro hourly() -%}
hour >= toStartOfHour({start:DateTime64(3, 'UTC')}) AND hour < {end:DateTime64(3, 'UTC')}
  AND {{ people(true) }}
{%- endmacro %}

{% macro sessions() -%}
last_seen >= {start:DateTime64(3, 'UTC')} AND first_seen < {end:DateTime64(3, 'UTC')}
  AND {{ people(false) }}
{%- endmacro %}

{% macro user() %}if(user_email != '', user_email, user_id){% endmacro %}

{#- The rollup's additive measures, summed: the same columns wherever usage_hourly is read. -#}
{% macro usage_sums() -%}
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
{%- endmacro %}
