-- Every state change of a job writes a new row version, and a new entry in every index whose
-- columns or predicate it touches. Two indexes covered the whole table on columns that change
-- at each step (state, mtime) and served only operator listings: together a third of the
-- index writes of a job's claim, start and finish. The claim, rescue, pruning and stats
-- queries use the partial indexes (queue_claim_idx, queue_running_idx, queue_finished_idx).
-- `lamplighter jobs` now sorts a filtered scan instead of walking an index.
DROP INDEX IF EXISTS dramatiq.queue_state_mtime_idx;
DROP INDEX IF EXISTS dramatiq.queue_actor_mtime_idx;
