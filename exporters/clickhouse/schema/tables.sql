{#- Queries of the raw tables' materialized views (tables.py). -#}

{% macro trace_id_ts(source) -%}
SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End
FROM {{ source }} WHERE TraceId != '' GROUP BY TraceId
{%- endmacro %}
