-- The index of the captures bucket: listing the bucket reads every object's info (about
-- 0.1 ms each), so pages that show captures read this table instead. One row per object,
-- written when a run reports what it stored (a `capture` event, a result's
-- stored_captures) and once at start for objects stored before the index existed.
-- created_at is epoch milliseconds, as the API's `modified` says it. No foreign key: a
-- capture may outlive its execution until retention removes it.
CREATE TABLE captures (
    name          text PRIMARY KEY,
    execution_id  text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('screenshot', 'recording', 'download')),
    size          bigint NOT NULL,
    created_at    bigint NOT NULL
);
-- Newest first with a keyset cursor ("(created_at, name) < (…)"), overall, per execution
-- and per kind (GET /api/data/screenshots).
CREATE INDEX captures_newest ON captures (created_at DESC, name DESC);
CREATE INDEX captures_execution_newest ON captures (execution_id, created_at DESC, name DESC);
CREATE INDEX captures_kind_newest ON captures (kind, created_at DESC, name DESC);

-- A capture stored while its run goes on is a change the live stream sends.
ALTER TABLE execution_changes DROP CONSTRAINT execution_changes_kind_check;
ALTER TABLE execution_changes ADD CONSTRAINT execution_changes_kind_check
    CHECK (kind IN ('queued', 'started', 'log', 'finished', 'deleted', 'capture'));
