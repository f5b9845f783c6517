-- Job history: one row per attempt, written by job_finish_many and worker_rescue_lost.

-- name: history_for_job --
SELECT attempt, outcome, worker_id, started_at, finished_at, duration_ms, error_type,
       error_message, traceback, result_summary, args_digest, tenant_id
FROM lamplighter.job_history
WHERE job_id = %(job_id)s
ORDER BY attempt;
