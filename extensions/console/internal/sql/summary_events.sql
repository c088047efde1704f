{% from '_filters.sql' import events with context %}
SELECT
    (SELECT count() FROM api_errors WHERE {{ events(true) }}) AS api_errors,
    (SELECT count() FROM tool_calls WHERE {{ events() }}) AS tool_calls,
    (SELECT count() FROM detections WHERE {{ events() }}) AS detections
