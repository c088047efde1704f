{% from '_filters.sql' import events with context %}
SELECT *, count() OVER () AS total_rows
FROM detections
WHERE {{ events() }}
{%- if severities %} AND has({severities:Array(String)}, severity){% endif %}
ORDER BY timestamp DESC, event_id
LIMIT {limit:UInt32} OFFSET {offset:UInt32}
