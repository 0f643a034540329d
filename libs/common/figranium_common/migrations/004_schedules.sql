-- The scheduler's view of every task schedule; the task JSON's `schedule` field is the
-- client's view (Figranium keeps it there) and both are written in one transaction.
-- Exactly one of cron / interval_minutes is set: intervals that do not divide 60 are
-- fixed intervals from the previous due time (see figranium_common.schedules).
CREATE TABLE schedules (
    task_id               text PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    cron                  text,
    interval_minutes      integer CHECK (interval_minutes BETWEEN 1 AND 60),
    timezone              text NOT NULL DEFAULT 'UTC',
    next_run              timestamptz,
    enabled               boolean NOT NULL,
    misfire_policy        text NOT NULL DEFAULT 'run_once'
                          CHECK (misfire_policy IN ('run_once', 'skip')),
    allow_overlap         boolean NOT NULL DEFAULT false,
    last_run              timestamptz,
    last_run_status       text,
    last_run_duration_ms  integer,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_minutes IS NULL)),
    CHECK (NOT enabled OR next_run IS NOT NULL)
);
-- What the claim query scans: only enabled schedules, by due time.
CREATE INDEX schedules_due ON schedules (next_run) WHERE enabled;

-- One row per live scheduler replica, refreshed every few seconds; a replica whose row
-- is older than a few heartbeats is gone (GET /api/schedules/status/all).
CREATE TABLE scheduler_heartbeats (
    replica_id  text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

-- "Is the previous scheduled run of this task still going?" (allowOverlap false).
CREATE INDEX executions_task_unfinished ON executions (task_id) WHERE phase <> 'finished';
