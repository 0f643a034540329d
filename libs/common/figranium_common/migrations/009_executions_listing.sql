-- The executions listing pages newest first, ties broken by id, with a keyset cursor
-- ("(created_at, id) < (…)"): one index per way the console filters it, so that every
-- page is an index scan that stops after its rows, at any table size. The newest-first
-- index replaces the one on created_at alone (retention's range scans use it as well).
DROP INDEX executions_created_at;
CREATE INDEX executions_newest ON executions (created_at DESC, id DESC);
CREATE INDEX executions_task_newest ON executions (task_id, created_at DESC, id DESC);
CREATE INDEX executions_outcome_newest ON executions (outcome, created_at DESC, id DESC);
