-- When each user was last active, over everything stored (for unused seats).
SELECT user_email, user_id, max(last_seen) AS last_active
FROM sessions
GROUP BY user_email, user_id
