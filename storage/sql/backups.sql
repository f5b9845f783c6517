-- Backups (lamplighter.backups): one row per backups.create attempt and what became of it.

-- name: backup_start --
-- A new attempt, running. Attempts left running longer than %(abandoned_seconds)s (a worker
-- killed mid-dump) are marked failed first: they are never good.
WITH abandoned AS (
    UPDATE lamplighter.backups
    SET status = 'failed', finished_at = lamplighter.now(), error = 'abandoned: its job stopped before it finished'
    WHERE status = 'running' AND started_at < lamplighter.now() - make_interval(secs => %(abandoned_seconds)s)
    RETURNING id
)
INSERT INTO lamplighter.backups (status) VALUES ('running')
RETURNING id, started_at, (SELECT count(*) FROM abandoned) AS abandoned;

-- name: backup_dumped --
-- The dump is stored, with its checksum and its key tables' counts.
UPDATE lamplighter.backups
SET status = 'dumped', finished_at = lamplighter.now(), file_key = %(file_key)s, size_bytes = %(size_bytes)s,
    sha256 = %(sha256)s, server_version = %(server_version)s, pg_dump_version = %(pg_dump_version)s,
    row_counts = %(row_counts)s::jsonb
WHERE id = %(id)s;

-- name: backup_failed --
-- The dump did not finish (an error, or a signal): never marked good.
UPDATE lamplighter.backups
SET status = 'failed', finished_at = lamplighter.now(), error = %(error)s
WHERE id = %(id)s AND status = 'running';

-- name: backup_checked --
-- The outcome of a restore check (or a verify): verified only when the counts matched.
UPDATE lamplighter.backups
SET status = CASE WHEN %(ok)s THEN 'verified' ELSE 'unverified' END,
    verified_at = CASE WHEN %(ok)s THEN lamplighter.now() END,
    error = CASE WHEN %(ok)s THEN NULL ELSE %(error)s END
WHERE id = %(id)s AND status IN ('dumped', 'verified', 'unverified');

-- name: backup_deleted --
-- Retention removed the file; the row stays as a record.
UPDATE lamplighter.backups SET status = 'deleted', verified_at = NULL WHERE id = %(id)s;

-- name: backup_get --
SELECT id, file_key, status, started_at, finished_at, verified_at, size_bytes, sha256, server_version,
       pg_dump_version, row_counts, error
FROM lamplighter.backups WHERE id = %(id)s;

-- name: backup_list --
-- Newest first.
SELECT id, file_key, status, started_at, finished_at, verified_at, size_bytes, sha256, server_version,
       pg_dump_version, row_counts, error
FROM lamplighter.backups
WHERE %(include_deleted)s OR status <> 'deleted'
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;
