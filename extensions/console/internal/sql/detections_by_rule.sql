{% from '_filters.sql' import events with context %}
SELECT rule_id, severity, count() AS detections, uniqExact(session_id) AS sessions
FROM detections
WHERE {{ events() }}
GROUP BY rule_id, severity
ORDER BY detections DESC, rule_id
