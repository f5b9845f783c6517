-- The scheduler (issue 6): schedules, ticks, the leader lease. Additive and idempotent.

-- One row per schedule. Declarations in the code (`periodic=` on an actor) are copied here by
-- the release step (`lamplighter migrate`); the scheduler process reads only this table.
--   enabled  the release step's switch: false once the declaration is gone from the code
--   paused   the operator's switch (`lamplighter schedule pause KEY`); a sync never touches it
-- next_fire_at is the next fire instant in UTC, computed in the schedule's zone; last_fire_at
-- the latest fire time the scheduler has dealt with (fired, caught up or skipped).
CREATE TABLE IF NOT EXISTS lamplighter.schedules (
    key                text PRIMARY KEY CHECK (key ~ '^[A-Za-z0-9_.:-]{1,200}$'),
    actor_name         text NOT NULL,
    queue_name         text NOT NULL,
    priority           integer NOT NULL DEFAULT 0,
    max_attempts       integer CHECK (max_attempts IS NULL OR max_attempts >= 1),
    concurrency_key    text,
    concurrency_limit  integer CHECK (concurrency_limit IS NULL OR concurrency_limit >= 1),
    cron               text NOT NULL,
    zone               text NOT NULL DEFAULT 'UTC',
    args               jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(args) = 'array'),
    kwargs             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(kwargs) = 'object'),
    misfire            text NOT NULL DEFAULT 'run_once' CHECK (misfire IN ('run_once', 'skip')),
    grace_seconds      double precision NOT NULL DEFAULT 60 CHECK (grace_seconds >= 0),
    overlap            text NOT NULL DEFAULT 'allow' CHECK (overlap IN ('allow', 'skip')),
    enabled            boolean NOT NULL DEFAULT true,
    paused             boolean NOT NULL DEFAULT false,
    paused_by          text,
    paused_at          timestamptz,
    last_fire_at       timestamptz,
    next_fire_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT lamplighter.now(),
    updated_at         timestamptz NOT NULL DEFAULT lamplighter.now()
);
-- The leader's look-up of due schedules.
CREATE INDEX IF NOT EXISTS schedules_due_idx
    ON lamplighter.schedules (next_fire_at) WHERE enabled AND NOT paused;

-- One row per tick: (schedule, fire time) is the primary key, inserted in the same transaction
-- as the job row, so a second enqueue of a tick is impossible whoever tries -- two schedulers
-- that both believe they lead, a retry after a lost commit -- even once the job was pruned.
--   kind     scheduled (on time, or late within the grace), catch_up (one run for ticks missed
--            beyond the grace, recorded with the latest of them), manual (`schedule run KEY`;
--            fire_at is the request time)
--   outcome  enqueued (job_id set), skipped_overlap (the previous run was still waiting/running),
--            skipped_misfire (misfire policy skip: ticks missed beyond the grace, none run;
--            recorded with the latest of them)
--   missed   how many fire times this row stands for (a catch-up of three missed ticks: 3)
CREATE TABLE IF NOT EXISTS lamplighter.schedule_ticks (
    schedule_key  text NOT NULL,
    fire_at       timestamptz NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('scheduled', 'catch_up', 'manual')),
    outcome       text NOT NULL CHECK (outcome IN ('enqueued', 'skipped_overlap', 'skipped_misfire')),
    job_id        uuid,
    missed        integer NOT NULL DEFAULT 1 CHECK (missed >= 1),
    recorded_at   timestamptz NOT NULL DEFAULT lamplighter.now(),
    recorded_by   text NOT NULL,
    PRIMARY KEY (schedule_key, fire_at),
    CHECK ((outcome = 'enqueued') = (job_id IS NOT NULL))
);
-- `lamplighter schedule`: the latest run of each schedule.
CREATE INDEX IF NOT EXISTS schedule_ticks_recorded_idx
    ON lamplighter.schedule_ticks (schedule_key, recorded_at DESC);
-- Pruning of old ticks.
CREATE INDEX IF NOT EXISTS schedule_ticks_fire_at_idx ON lamplighter.schedule_ticks (fire_at);

-- Overlap policy "skip": is a run of this schedule still waiting or running? Job rows enqueued
-- by the scheduler carry enqueued_by = 'cron:<key>@<fire time>'; the index holds only active
-- cron jobs, so it stays tiny and costs other jobs a predicate check.
CREATE INDEX IF NOT EXISTS queue_schedule_active_idx
    ON dramatiq.queue ((split_part(enqueued_by, '@', 1)))
    WHERE state IN ('queued', 'running') AND enqueued_by LIKE 'cron:%';

-- The leader lease: one row, held by the scheduler process that renewed it last, for a TTL
-- measured by the database's clock. No advisory lock: those do not survive a transaction-mode
-- pooler, and a vanished host keeps its session lock until TCP keepalive gives up.
CREATE TABLE IF NOT EXISTS lamplighter.scheduler_lease (
    name         text PRIMARY KEY DEFAULT 'scheduler' CHECK (name = 'scheduler'),
    holder       text NOT NULL,
    acquired_at  timestamptz NOT NULL,
    renewed_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
