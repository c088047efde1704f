{% from '_filters.sql' import sessions with context %}
-- Sessions with any event in [from, to).
SELECT count() AS sessions, sum(user_prompts) AS user_prompts
FROM sessions
WHERE {{ sessions() }}
