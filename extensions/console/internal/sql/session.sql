SELECT * FROM sessions WHERE session_id = {id:String} ORDER BY first_seen
