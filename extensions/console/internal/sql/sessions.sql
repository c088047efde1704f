{% from '_filters.sql' import sessions with context %}
-- One page of sessions; every column of the view, so columns added to it appear here too.
SELECT *, count() OVER () AS total_rows
FROM sessions
WHERE {{ sessions() }}
{%- if search %}
  AND (positionCaseInsensitive(session_id, {q:String}) > 0
    OR positionCaseInsensitive(user_email, {q:String}) > 0
    OR positionCaseInsensitive(user_id, {q:String}) > 0
    OR positionCaseInsensitive(team, {q:String}) > 0
    OR positionCaseInsensitive(agent, {q:String}) > 0)
{%- endif %}
ORDER BY {{ sort }} {{ direction }} NULLS LAST, session_id
LIMIT {limit:UInt32} OFFSET {offset:UInt32}
