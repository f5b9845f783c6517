-- Health checks (lamplighter.health_checks) and the figures the checks read. Times come from
-- lamplighter.now(), the database's clock.

-- name: health_workers --
-- Registered workers: live (heartbeat within the lease) and silent (not yet removed by a rescue).
SELECT count(*) FILTER (WHERE heartbeat_at > lamplighter.now() - make_interval(secs => %(lease_seconds)s)) AS live,
       coalesce(jsonb_agg(jsonb_build_object('worker', hostname || ':' || pid,
                                             'silent_s', round(extract(epoch FROM lamplighter.now() - heartbeat_at)))
                          ORDER BY hostname, pid)
                FILTER (WHERE heartbeat_at <= lamplighter.now() - make_interval(secs => %(lease_seconds)s)),
                '[]') AS silent
FROM lamplighter.workers;

-- name: health_scheduler_lease --
-- The scheduler leader's lease: who holds it, whether it is current, how long since it was renewed.
SELECT holder, expires_at > lamplighter.now() AS current,
       extract(epoch FROM lamplighter.now() - renewed_at)::double precision AS renewed_age
FROM lamplighter.scheduler_lease;

-- name: health_check_insert --
-- One run's result.
INSERT INTO lamplighter.health_checks (ok, checks, duration_ms)
VALUES (%(ok)s, %(checks)s::jsonb, %(duration_ms)s)
RETURNING id, checked_at;

-- name: health_check_latest --
-- The newest result and its age by the database's clock.
SELECT id, checked_at, ok, checks,
       extract(epoch FROM lamplighter.now() - checked_at)::double precision AS age
FROM lamplighter.health_checks
ORDER BY checked_at DESC
LIMIT 1;

-- name: health_check_prune_batch --
-- One bounded batch of results older than the retention.
DELETE FROM lamplighter.health_checks
WHERE id IN (SELECT id FROM lamplighter.health_checks
             WHERE checked_at < lamplighter.now() - make_interval(secs => %(retention_seconds)s)
             ORDER BY checked_at LIMIT %(batch_size)s);
