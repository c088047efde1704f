-- Every row (and its time in nanoseconds, for the order) of one public view for one session ({{ view }} is from the query layer's list).
SELECT *, toUnixTimestamp64Nano(timestamp) AS _ns FROM {{ view }}
WHERE session_id = {id:String} AND agent = {agent:String}
  AND timestamp >= {lo:DateTime64(9, 'UTC')} AND timestamp <= {hi:DateTime64(9, 'UTC')}
ORDER BY _ns
