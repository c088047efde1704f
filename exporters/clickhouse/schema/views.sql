{#- The public views (views.py): the contract of docs/data-model.md. Each macro renders one view
    as of schema `version`; names and leading columns never change, a later version only
    appends columns (a `version >= N` branch), so an earlier migration renders what it always
    did. `usage_keys` and `usage_tokens` come from agent_tables.py; `tables` maps each table name to the name to read it by. Agent views read FINAL so the
    ReplacingMergeTree backstop hides any duplicate that slipped past the exporter's check, and
    show the latest revision of a repriced row. -#}
{% import "common.sql" as common %}

{%- set envelope = "timestamp, event_id, agent, agent_version, session_id, prompt_id, user_id, user_email, team, organization" %}
{#- One tool event's columns: `tool_calls` of migration 4, `tool_events` from migration 6. -#}
{%- set tool_event_columns = "timestamp, agent, session_id, user_id, tool_name, mcp_server, decision, decision_source, success, duration_ms, arguments, event_id, agent_version, prompt_id, user_email, team, tool_call_id, permission_mode, arguments_size, output, output_size, command, file_path, trace_id, span_id" %}
{%- set calls = "sum(t.api_calls)" %}
{%- set usage = "sum(t.usage_records)" %}
{%- set priced_calls = "(sum(t.priced_api_calls) + sum(t.priced_api_calls_repriced))" %}
{%- set priced_usage = "sum(t.priced_usage_records)" %}

{% macro api_calls(version, tables) -%}
SELECT timestamp, agent, agent_version, session_id, user_id, user_email, team, provider, model,
request_id, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens,
reasoning_tokens, cost_usd, cost_usd_reported, duration_ms, status, event_id, prompt_id,
organization, cost_center, cache_write_5m_tokens, cache_write_1h_tokens, cost_usd_computed,
ttft_ms, attempt, trace_id, span_id
{%- if version >= 5 %}, revision{% endif %}
{%- if version >= 6 %}, caller, query_source, subagent_id, subagent_name, cost_source{% endif %}
{%- if version >= 7 %}, premium_requests, nano_aiu{% endif %}
FROM {{ tables.agent_api_calls }} FINAL
{%- endmacro %}

{% macro api_usage(version, tables) -%}
SELECT timestamp, agent, agent_version, session_id, user_id, user_email, team, provider, model,
input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_usd,
cost_usd_reported, cost_usd_computed, event_id, prompt_id, organization, cost_center,
cache_write_5m_tokens, cache_write_1h_tokens, derived_from, revision
{%- if version >= 6 %}, cost_source{% endif %}
FROM {{ tables.agent_api_usage }} FINAL
{%- endmacro %}

{% macro merged(column) -%}
{#- A text column of one invocation: the value of whichever event has one. -#}
anyIf(t.{{ column }}, t.{{ column }} != '') AS {{ column }}
{%- endmacro %}

{% macro tool_calls(version, tables) -%}
{%- if version >= 6 -%}
{#- One row per tool invocation: its decision event and its result event merged, whichever
    arrived (a decision alone is a call refused or still pending; a result alone one whose
    decision was not logged). `success` is NULL when there is no result. `event_id` is the
    smallest of its events' ids; `events` says how many were merged; the events themselves
    are in `tool_events`. -#}
SELECT min(t.timestamp) AS timestamp, t.agent AS agent, t.session_id AS session_id,
{{ merged("user_id") }}, {{ merged("tool_name") }}, {{ merged("mcp_server") }},
{{ merged("decision") }}, {{ merged("decision_source") }}, any(t.success) AS success,
any(t.duration_ms) AS duration_ms, {{ merged("arguments") }}, min(t.event_id) AS event_id,
{{ merged("agent_version") }}, {{ merged("prompt_id") }}, {{ merged("user_email") }},
{{ merged("team") }}, {{ merged("tool_call_id") }}, {{ merged("permission_mode") }},
max(t.arguments_size) AS arguments_size, {{ merged("output") }}, max(t.output_size) AS output_size,
{{ merged("command") }}, {{ merged("file_path") }}, {{ merged("trace_id") }}, {{ merged("span_id") }},
count() AS events, max(t.timestamp) AS last_seen, {{ merged("tool_source") }}, {{ merged("error") }}
FROM {{ tables.agent_tool_calls }} AS t FINAL
GROUP BY t.agent, t.session_id, {{ common.invocation_key("t") }}
{%- else -%}
SELECT {{ tool_event_columns }} FROM {{ tables.agent_tool_calls }} FINAL
{%- endif %}
{%- endmacro %}

{% macro tool_events(version, tables) -%}
SELECT {{ tool_event_columns }}, phase, tool_source, error FROM {{ tables.agent_tool_calls }} FINAL
{%- endmacro %}

{% macro detections(version, tables) -%}
SELECT timestamp, rule_id, severity, agent, session_id, user_id, evidence, event_id, user_email,
team, tool_name FROM {{ tables.agent_detections }} FINAL
{%- endmacro %}

{% macro api_errors(version, tables) -%}
SELECT {{ envelope }}, request_id, provider, model, status, error_message, attempt, duration_ms
FROM {{ tables.agent_api_errors }} FINAL
{%- endmacro %}

{% macro user_prompts(version, tables) -%}
SELECT {{ envelope }}, prompt_length, prompt_text FROM {{ tables.agent_user_prompts }} FINAL
{%- endmacro %}

{% macro session_starts(version, tables) -%}
SELECT {{ envelope }}, provider, model, approval_policy, sandbox, permission_mode, mcp_servers
FROM {{ tables.agent_session_starts }} FINAL
{%- endmacro %}

{% macro code_changes(version, tables) -%}
SELECT {{ envelope }}, lines_added, lines_removed, commits, pull_requests, tool_name, file_path
FROM {{ tables.agent_code_changes }} FINAL
{%- endmacro %}

{% macro sessions(version, tables) -%}
{#- From version 5 a session's tokens and cost come from its api_call rows when it has any, else
    from its api_usage rows (metrics-only set-ups): decided here, at query time, so it does
    not matter which signal arrived first. -#}
SELECT t.session_id AS session_id, t.agent AS agent, max(t.agent_version) AS agent_version,
max(t.user_id) AS user_id, max(t.user_email) AS user_email, max(t.team) AS team,
min(t.first_seen) AS first_seen, max(t.last_seen) AS last_seen, {{ calls }} AS api_calls,
{% if version >= 6 %}uniqExactMerge(t.tool_invocations){% else %}sum(t.tool_calls){% endif %} AS tool_calls,
{%- if version >= 5 %}
  {%- for name in usage_tokens[:4] %} if({{ calls }} > 0, sum(t.{{ name }}), sum(t.usage_{{ name }})) AS {{ name }},{% endfor %}
  multiIf({{ calls }} > 0, if({{ priced_calls }} = 0, NULL, sum(t.cost_usd)),
  {{ usage }} > 0, if({{ priced_usage }} = 0, NULL, sum(t.usage_cost_usd)), sum(t.cost_usd)) AS cost_usd,
  if({{ calls }} > 0, sum(t.reasoning_tokens), sum(t.usage_reasoning_tokens)) AS reasoning_tokens,
  {{ calls }} - {{ priced_calls }} AS unpriced_api_calls,
{%- else %}
  {%- for name in usage_tokens[:4] %} sum(t.{{ name }}) AS {{ name }},{% endfor %}
  if(sum(t.priced_api_calls) = 0 AND {{ calls }} > 0, NULL, sum(t.cost_usd)) AS cost_usd,
  sum(t.reasoning_tokens) AS reasoning_tokens,
  {{ calls }} - sum(t.priced_api_calls) AS unpriced_api_calls,
{%- endif %}
sum(t.api_errors) AS api_errors, sum(t.user_prompts) AS user_prompts,
sum(t.detections) AS detections, sum(t.lines_added) AS lines_added,
sum(t.lines_removed) AS lines_removed, max(t.organization) AS organization
{%- if version >= 5 %},
  {{ usage }} AS usage_records, {{ usage }} - {{ priced_usage }} AS unpriced_usage_records,
  multiIf({{ calls }} > 0, 'api_calls', {{ usage }} > 0, 'api_usage', '') AS tokens_from
{%- endif %}
{%- if version >= 6 %}, sum(t.tool_calls) AS tool_events{% endif %}
{%- if version >= 7 %}, sum(t.premium_requests) AS premium_requests, sum(t.nano_aiu) AS nano_aiu{% endif %}
FROM {{ tables.agent_sessions }} AS t GROUP BY t.agent, t.session_id
{%- endmacro %}

{% macro usage_hourly(version, tables) -%}
{%- if version >= 5 -%}
{#- api_call rollups plus the api_usage rollups of sessions that have no api_call rows, the same
    rule as `sessions`. GLOBAL: on a cluster the session list is gathered once. The union's
    parts are (name, from api_call rollups, from api_usage rollups). -#}
{%- set union = namespace(parts=[["api_calls", "h.api_calls", "toUInt64(0)"]]) %}
{%- for name in usage_tokens %}
  {%- set union.parts = union.parts + [[name, "h." ~ name, "a." ~ name]] %}
{%- endfor %}
{%- set parts = union.parts + [
    ["priced_calls", "toInt64(h.priced_api_calls) + h.priced_api_calls_repriced", "toInt64(0)"],
    ["usage_records", "toUInt64(0)", "a.usage_records"],
    ["priced_usage", "toInt64(0)", "a.priced_usage_records"],
    ["reported", "h.reported_api_calls", "a.reported_usage_records"],
    ["cost_usd", "h.cost_usd", "a.cost_usd"],
    ["cost_usd_reported", "h.cost_usd_reported", "a.cost_usd_reported"],
    ["duration_ms", "h.duration_ms", "toFloat64(0)"],
] %}
SELECT {% for key in usage_keys %}u.{{ key }} AS {{ key }}, {% endfor -%}
sum(u.api_calls) AS api_calls,
{%- for name in usage_tokens %} sum(u.{{ name }}) AS {{ name }},{% endfor %}
if(sum(u.priced_calls) + sum(u.priced_usage) = 0 AND sum(u.api_calls) + sum(u.usage_records) > 0,
NULL, sum(u.cost_usd)) AS cost_usd,
sum(u.api_calls) - sum(u.priced_calls) AS unpriced_api_calls,
if(sum(u.reported) = 0, NULL, sum(u.cost_usd_reported)) AS cost_usd_reported,
sum(u.duration_ms) AS duration_ms_total, sum(u.usage_records) AS usage_records,
sum(u.usage_records) - sum(u.priced_usage) AS unpriced_usage_records
FROM (SELECT {% for key in usage_keys %}h.{{ key }} AS {{ key }}, {% endfor -%}
{%- for name, calls_part, _ in parts %}{{ calls_part }} AS {{ name }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ tables.agent_usage_hourly }} AS h
UNION ALL
SELECT {% for key in usage_keys %}a.{{ key }} AS {{ key }}, {% endfor -%}
{%- for name, _, usage_part in parts %}{{ usage_part }} AS {{ name }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ tables.agent_api_usage_hourly }} AS a WHERE (a.agent, a.session_id) GLOBAL NOT IN (SELECT s.agent, s.session_id FROM {{ tables.agent_sessions }} AS s GROUP BY s.agent, s.session_id HAVING sum(s.api_calls) > 0)) AS u
GROUP BY {% for key in usage_keys %}u.{{ key }}{{ ", " if not loop.last }}{% endfor %}
{%- else -%}
SELECT {% for key in usage_keys %}t.{{ key }} AS {{ key }}, {% endfor -%}
{{ calls }} AS api_calls,
{%- for name in usage_tokens %} sum(t.{{ name }}) AS {{ name }},{% endfor %}
if(sum(t.priced_api_calls) = 0 AND {{ calls }} > 0, NULL, sum(t.cost_usd)) AS cost_usd,
{{ calls }} - sum(t.priced_api_calls) AS unpriced_api_calls,
if(sum(t.reported_api_calls) = 0, NULL, sum(t.cost_usd_reported)) AS cost_usd_reported,
sum(t.duration_ms) AS duration_ms_total
FROM {{ tables.agent_usage_hourly }} AS t
GROUP BY {% for key in usage_keys %}t.{{ key }}{{ ", " if not loop.last }}{% endfor %}
{%- endif %}
{%- endmacro %}

{% macro call_reconciliation(version, tables, otlp) -%}
{#- Per session: API calls seen by OTLP, by session files, by both, and OTLP's coverage of the
    calls the files show. A call is the same in both sources when both name it with the same
    event id (the importer gives a file record the request id, or the time and prompt, of its
    OTLP twin). -#}
{%- set tokens = "input_tokens + cache_read_tokens + cache_write_tokens + output_tokens" %}
SELECT agent, session_id, max(user_id) AS user_id, max(user_email) AS user_email,
min(first_seen) AS first_seen, max(last_seen) AS last_seen,
count() AS api_calls, countIf(in_otlp) AS otlp_calls, countIf(in_files) AS file_calls,
countIf(in_otlp AND in_files) AS both_calls,
countIf(in_otlp AND NOT in_files) AS otlp_only_calls,
countIf(in_files AND NOT in_otlp) AS file_only_calls,
sum(otlp_tokens) AS otlp_tokens, sum(file_tokens) AS file_tokens,
if(countIf(in_files) = 0, NULL, round(100 * countIf(in_otlp AND in_files) / countIf(in_files), 2)) AS coverage_pct
FROM (SELECT c.agent AS agent, c.session_id AS session_id, c.event_id AS event_id,
max(c.user_id) AS user_id, max(c.user_email) AS user_email,
min(c.timestamp) AS first_seen, max(c.timestamp) AS last_seen,
max(c.source = '{{ otlp }}') AS in_otlp,
max(c.source != '{{ otlp }}') AS in_files,
maxIf({{ tokens }}, c.source = '{{ otlp }}') AS otlp_tokens,
maxIf({{ tokens }}, c.source != '{{ otlp }}') AS file_tokens
FROM {{ tables.agent_call_sources }} AS c FINAL GROUP BY c.agent, c.session_id, c.event_id)
GROUP BY agent, session_id
{%- endmacro %}
