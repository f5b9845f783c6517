-- Watermarks (lamplighter.watermarks, migration 0014): where a job reading a log in id order
-- stopped.

-- name: watermark_get --
-- The last id handled by a reader; no row before its first run.
SELECT position FROM lamplighter.watermarks WHERE name = %(name)s;

-- name: watermark_set --
-- Move a reader's watermark forward (never back: two overlapping runs keep the further one).
INSERT INTO lamplighter.watermarks AS w (name, position) VALUES (%(name)s, %(position)s)
ON CONFLICT (name) DO UPDATE SET position = greatest(w.position, EXCLUDED.position), updated_at = lamplighter.now();
