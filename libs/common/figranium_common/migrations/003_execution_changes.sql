-- Execution changes in commit order, for GET /api/executions/stream: the id is the SSE
-- event id, so a client resuming with Last-Event-ID reads `id > last` and misses nothing.
-- Writers take an advisory lock before inserting (see figranium_gateway.changes), so a
-- reader never sees an id while a smaller one is still uncommitted.
-- No foreign key on purpose: a `deleted` change outlives its execution.
CREATE TABLE execution_changes (
    id            bigserial PRIMARY KEY,
    execution_id  text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('queued', 'started', 'log', 'finished', 'deleted')),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_changes_created_at ON execution_changes (created_at);
