{#- Pieces of SQL that more than one template of this package uses. -#}

{% macro invocation_key(alias) -%}
{#- One tool invocation: the vendor's call id, which its decision and result events share; an
    event without one (Gemini CLI logs a single event per call) is an invocation of its own. -#}
if({{ alias }}.tool_call_id != '', {{ alias }}.tool_call_id, {{ alias }}.event_id)
{%- endmacro %}
