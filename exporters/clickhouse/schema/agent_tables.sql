{#- Queries of the agent tables' materialized views and back-fills (agent_tables.py).

    A query that changed over time takes the schema `version` it is rendered for, so an old
    migration renders it as it was then and a new version only adds `version >= N` branches.
    Source columns are qualified (`src.x`) because ClickHouse aliases are query-wide:
    `sum(x) AS x` next to `countIf(x ...)` would nest.

    From version 5 the api_call and api_usage queries are revision-aware (REPRICE_COLUMNS): a
    revision-0 row is an event as the exporter stored it and counts in full; a later revision
    is reprice's correction of that event and adds only the change of its cost and of whether
    it is priced. Sums of every revision of an event thus equal the figures of its latest one,
    and a correction needs no rebuild. -#}
{% import "common.sql" as common %}

{%- set cost_change = "sum(ifNull(src.cost_usd, 0)) - sum(ifNull(src.previous_cost_usd, 0))" %}
{%- set priced_change = "toInt64(countIf(src.cost_usd IS NOT NULL)) - toInt64(countIf(src.previous_cost_usd IS NOT NULL))" %}
{%- set repriced_change = "toInt64(countIf(src.revision > 0 AND src.cost_usd IS NOT NULL)) - toInt64(countIf(src.previous_cost_usd IS NOT NULL))" %}

{#- What each agent table adds to a session's counters (`session_counters`) and cost; a counter
    a table does not name is 0. -#}
{%- set session_sums = {
    "agent_api_calls": {
        "api_calls": "count()",
        "input_tokens": "sum(src.input_tokens)",
        "cache_read_tokens": "sum(src.cache_read_tokens)",
        "cache_write_tokens": "sum(src.cache_write_tokens)",
        "output_tokens": "sum(src.output_tokens)",
        "reasoning_tokens": "sum(src.reasoning_tokens)",
        "priced_api_calls": "countIf(src.cost_usd IS NOT NULL)",
        "cost_usd": "sum(ifNull(src.cost_usd, 0))",
    },
    "agent_api_errors": {"api_errors": "count()"},
    "agent_tool_calls": {"tool_calls": "count()"},
    "agent_user_prompts": {"user_prompts": "count()"},
    "agent_detections": {"detections": "count()"},
    "agent_code_changes": {
        "lines_added": "sum(src.lines_added)",
        "lines_removed": "sum(src.lines_removed)",
    },
    "agent_session_starts": {},
} %}
{#- The api_call counters from version 5: revision 0 only (a correction changes no count). -#}
{%- set api_call_session_sums = {
    "api_calls": "countIf(src.revision = 0)",
    "input_tokens": "sumIf(src.input_tokens, src.revision = 0)",
    "cache_read_tokens": "sumIf(src.cache_read_tokens, src.revision = 0)",
    "cache_write_tokens": "sumIf(src.cache_write_tokens, src.revision = 0)",
    "output_tokens": "sumIf(src.output_tokens, src.revision = 0)",
    "reasoning_tokens": "sumIf(src.reasoning_tokens, src.revision = 0)",
    "priced_api_calls": "countIf(src.revision = 0 AND src.cost_usd IS NOT NULL)",
} %}

{% macro event_ids(event, source) -%}
SELECT event_id, '{{ event }}' AS event, timestamp FROM {{ source }}
{%- endmacro %}

{% macro session_key() -%}
src.agent AS agent, src.session_id AS session_id, toStartOfMonth(src.timestamp) AS month
{%- endmacro %}

{% macro session_group(source) -%}
FROM {{ source }} AS src WHERE src.session_id != '' GROUP BY src.agent, src.session_id, month
{%- endmacro %}

{% macro session(table, version, source, into="") -%}
{#- What the rows of `table` add to agent_sessions, as of schema `version`: the query of the
    table's view, or with `into` the INSERT of its rows into that table. The view inserts by
    name, an INSERT ... SELECT by position, so the INSERT names the columns; both come from the
    one list of (expression, column) below. -#}
{%- set out = namespace(columns=[]) %}
{%- macro add(expression, name) %}{% set out.columns = out.columns + [(expression, name)] %}{% endmacro %}
{%- for name in session_labels %}{{ add("max(toString(src.%s))" | format(name), name) }}{% endfor %}
{{- add("min(src.timestamp)", "first_seen") }}{{ add("max(src.timestamp)", "last_seen") }}
{%- if table == "agent_api_usage" %}
  {{- add("toUInt64(countIf(src.revision = 0))", "usage_records") }}
  {%- for name in usage_tokens %}{{ add("toUInt64(sumIf(src.%s, src.revision = 0))" | format(name), "usage_" ~ name) }}{% endfor %}
  {{- add(priced_change, "priced_usage_records") }}
  {{- add("toFloat64(%s)" | format(cost_change), "usage_cost_usd") }}
{%- elif table == "agent_api_calls" and version >= 5 %}
  {%- for name in session_counters %}{{ add("toUInt64(%s)" | format(api_call_session_sums.get(name, "0")), name) }}{% endfor %}
  {{- add("toFloat64(%s)" | format(cost_change), "cost_usd") }}
  {{- add(repriced_change, "priced_api_calls_repriced") }}
  {%- if version >= 7 %}
    {#- the vendor's own billing measures; a repriced revision changes none #}
    {{- add("toFloat64(sumIf(ifNull(src.premium_requests, 0), src.revision = 0))", "premium_requests") }}
    {{- add("toUInt64(sumIf(ifNull(src.nano_aiu, 0), src.revision = 0))", "nano_aiu") }}
  {%- endif %}
{%- else %}
  {%- set sums = session_sums[table] %}
  {%- for name in session_counters %}{{ add("toUInt64(%s)" | format(sums.get(name, "0")), name) }}{% endfor %}
  {{- add("toFloat64(%s)" | format(sums.get("cost_usd", "0")), "cost_usd") }}
  {%- if table == "agent_tool_calls" and version >= 6 %}
    {{- add("uniqExactState(%s)" | format(common.invocation_key("src")), "tool_invocations") }}
  {%- endif %}
{%- endif %}
{%- if into %}
INSERT INTO {{ into }} (agent, session_id, month{% for _, name in out.columns %}, {{ name }}{% endfor %})
{%- endif %}
SELECT {{ session_key() }}{% for expression, name in out.columns %}, {{ expression }} AS {{ name }}{% endfor %}
{{ session_group(source) }}
{%- endmacro %}

{% macro session_rebuild(table, version, source, into, repriced) -%}
{#- Re-insert into `into` the sessions of the `{sessions}` parameter from their rows in `source`
    (agent table `table`), with the query of the table's view as of `version`. Each event counts
    once (a duplicate not yet merged away is left out), each revision of a repriced call too,
    as when the view saw them arrive. -#}
{%- set rows -%}
(SELECT * FROM {{ source }} WHERE (agent, session_id) IN {sessions:Array(Tuple(String, String))}
LIMIT 1 BY event_id{% if repriced %}, revision{% endif %})
{%- endset %}
{{ session(table, version, rows, into) }}
{%- endmacro %}

{% macro tool_invocations_backfill(source) -%}
{#- Migration 6: the tool invocations of sessions stored before sessions counted them. -#}
SELECT {{ session_key() }}, min(src.timestamp) AS first_seen, max(src.timestamp) AS last_seen,
uniqExactState({{ common.invocation_key("src") }}) AS tool_invocations
{{ session_group(source) }}
{%- endmacro %}

{% macro usage_hourly(table, version, source) -%}
{#- What the rows of `table` add to its hourly rollup, as of schema `version`: api_call rows to
    agent_usage_hourly, api_usage rows (per session) to agent_api_usage_hourly. -#}
{%- set keys = api_usage_hourly_keys if table == "agent_api_usage" else usage_keys %}
SELECT toStartOfHour(src.timestamp) AS hour,
{%- for key in keys[1:] %} src.{{ key }} AS {{ key }},{% endfor %}
{%- if table == "agent_api_usage" %}
  countIf(src.revision = 0) AS usage_records,
  {%- for name in usage_tokens %} sumIf(src.{{ name }}, src.revision = 0) AS {{ name }},{% endfor %}
  {{ priced_change }} AS priced_usage_records,
  countIf(src.revision = 0 AND src.cost_usd_reported IS NOT NULL) AS reported_usage_records,
  {{ cost_change }} AS cost_usd,
  sumIf(ifNull(src.cost_usd_reported, 0), src.revision = 0) AS cost_usd_reported
{%- elif version >= 5 %}
  countIf(src.revision = 0) AS api_calls,
  {%- for name in usage_tokens %} sumIf(src.{{ name }}, src.revision = 0) AS {{ name }},{% endfor %}
  countIf(src.revision = 0 AND src.cost_usd IS NOT NULL) AS priced_api_calls,
  countIf(src.revision = 0 AND src.cost_usd_reported IS NOT NULL) AS reported_api_calls,
  {{ cost_change }} AS cost_usd,
  sumIf(ifNull(src.cost_usd_reported, 0), src.revision = 0) AS cost_usd_reported,
  sumIf(ifNull(src.duration_ms, 0), src.revision = 0) AS duration_ms,
  {{ repriced_change }} AS priced_api_calls_repriced
{%- else %}
  count() AS api_calls,
  {%- for name in usage_tokens %} sum(src.{{ name }}) AS {{ name }},{% endfor %}
  countIf(src.cost_usd IS NOT NULL) AS priced_api_calls,
  countIf(src.cost_usd_reported IS NOT NULL) AS reported_api_calls,
  sum(ifNull(src.cost_usd, 0)) AS cost_usd,
  sum(ifNull(src.cost_usd_reported, 0)) AS cost_usd_reported,
  sum(ifNull(src.duration_ms, 0)) AS duration_ms
{%- endif %}
FROM {{ source }} AS src GROUP BY hour{% for key in keys[1:] %}, src.{{ key }}{% endfor %}
{%- endmacro %}

{% macro record_or_resource(key) -%}
{#- A record attribute, or the resource attribute of that name when the record has none. -#}
if(mapContains(LogAttributes, '{{ key }}'), LogAttributes['{{ key }}'], ResourceAttributes['{{ key }}'])
{%- endmacro %}

{% macro call_sources(source, otlp) -%}
{#- One agent_call_sources row per api_call log record in the raw logs. -#}
SELECT Timestamp AS timestamp,
{{ record_or_resource("agentwatch.agent") }} AS agent,
{{ record_or_resource("agentwatch.session_id") }} AS session_id,
if(LogAttributes['agentwatch.source'] = '', '{{ otlp }}', LogAttributes['agentwatch.source']) AS source,
LogAttributes['agentwatch.event_id'] AS event_id,
{{ record_or_resource("agentwatch.user_id") }} AS user_id,
{{ record_or_resource("agentwatch.user_email") }} AS user_email,
LogAttributes['agentwatch.request_id'] AS request_id,
LogAttributes['agentwatch.model'] AS model,
{%- for name in ["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"] %}
toUInt64OrZero(LogAttributes['agentwatch.{{ name }}']) AS {{ name }},
{%- endfor %}
toFloat64OrNull(LogAttributes['agentwatch.cost_usd']) AS cost_usd
FROM {{ source }}
WHERE LogAttributes['agentwatch.event'] = 'api_call' AND LogAttributes['agentwatch.event_id'] != ''
{%- endmacro %}
