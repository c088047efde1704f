{% from '_filters.sql' import user with context %}
-- Agents and users active in the last 7 days whose telemetry stopped {silent_s} seconds ago.
SELECT 'agent' AS kind, agent AS name, max(last_seen) AS last_active
FROM sessions WHERE last_seen >= now() - INTERVAL 7 DAY
GROUP BY agent HAVING last_active < now() - toIntervalSecond({silent_s:UInt32})
UNION ALL
SELECT 'user' AS kind, {{ user() }} AS name, max(last_seen) AS last_active
FROM sessions WHERE last_seen >= now() - INTERVAL 7 DAY
GROUP BY name HAVING last_active < now() - toIntervalSecond({silent_s:UInt32})
ORDER BY kind, last_active
