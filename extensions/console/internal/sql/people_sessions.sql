{% from '_filters.sql' import sessions, user with context %}
-- Per user or per team ({{ key }} from the query layer): sessions and last activity.
SELECT
    {% if key == "user" %}{{ user() }}{% else %}team{% endif %} AS key,
    count() AS sessions,
    max(last_seen) AS last_active,
    uniqExact({{ user() }}) AS users,
    arraySort(groupUniqArray(agent)) AS agents
FROM sessions
WHERE {{ sessions() }}
GROUP BY key
