-- alerts.failed_jobs (domain/job_alerts.py): the job history after a watermark, and failures
-- per actor in a window.

-- name: job_alerts_history_after --
-- Attempts after an id, in id order, finished at least settle seconds ago (a finish committed
-- late, with a lower id, is still ahead of the watermark when it is read).
SELECT id, job_id::text AS job_id, actor_name, outcome, error_type, finished_at
FROM lamplighter.job_history
WHERE id > %(after_id)s AND finished_at <= lamplighter.now() - make_interval(secs => %(settle_seconds)s)
ORDER BY id
LIMIT %(limit)s;

-- name: job_alerts_failures_in_window --
-- Failed, dead and lost attempts per actor in the last window_seconds.
SELECT actor_name, count(*) AS failures
FROM lamplighter.job_history
WHERE outcome IN ('failed', 'dead', 'lost')
  AND finished_at > lamplighter.now() - make_interval(secs => %(window_seconds)s)
GROUP BY actor_name;

-- name: job_alerts_start_position --
-- Where the reader starts on its first run: after the last attempt that finished before the
-- look-back (ids follow insertion, so the newest such finish has about the highest such id).
SELECT coalesce((SELECT id FROM lamplighter.job_history
                 WHERE finished_at < lamplighter.now() - make_interval(secs => %(lookback_seconds)s)
                 ORDER BY finished_at DESC LIMIT 1), 0) AS position;
