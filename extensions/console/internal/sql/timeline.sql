-- Every row of one public view for one session ({{ view }} is from the query layer's list).
SELECT * FROM {{ view }}
WHERE session_id = {id:String} AND agent = {agent:String}
  AND timestamp >= {lo:DateTime64(9, 'UTC')} AND timestamp <= {hi:DateTime64(9, 'UTC')}
ORDER BY timestamp
