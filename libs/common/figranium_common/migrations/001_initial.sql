-- Tasks are stored as the JSON the client sent (unknown fields kept), keyed by id.
CREATE TABLE tasks (
    id          text PRIMARY KEY,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE task_versions (
    task_id     text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    id          text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    snapshot    jsonb NOT NULL,
    PRIMARY KEY (task_id, id)
);

CREATE TABLE executions (
    id             text PRIMARY KEY,
    task_id        text,
    task_name      text,
    mode           text NOT NULL DEFAULT 'agent',
    source         text NOT NULL,
    url            text,
    method         text,
    path           text,
    phase          text NOT NULL CHECK (phase IN ('queued', 'running', 'finished')),
    status         integer,
    outcome        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    duration_ms    integer,
    attempts       integer NOT NULL DEFAULT 0,
    task_snapshot  jsonb NOT NULL,
    variables      jsonb NOT NULL DEFAULT '{}'::jsonb,
    result         jsonb
);
CREATE INDEX executions_created_at ON executions (created_at DESC);
CREATE INDEX executions_unfinished ON executions (phase) WHERE phase <> 'finished';

-- Every run event once: redelivered events hit the primary key and change nothing.
CREATE TABLE execution_events (
    execution_id  text NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    seq           integer NOT NULL,
    type          text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, attempt, seq)
);
-- At most one result per execution, whichever attempt produced it first.
CREATE UNIQUE INDEX execution_events_one_result ON execution_events (execution_id)
    WHERE type = 'result';

CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
