-- The whole result of an execution whose result is larger than RESULT_PREVIEW_BYTES. The
-- execution's own `result` is then a bounded preview with "hasFullResult": true, so lists
-- and change feeds stay small; GET /api/executions/:id/result reads this. It goes with
-- its execution (retention, DELETE, clear).
CREATE TABLE execution_results (
    execution_id  text PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    result        jsonb NOT NULL
);
