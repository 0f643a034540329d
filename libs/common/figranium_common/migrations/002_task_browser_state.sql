-- A task's cookies and local storage (Playwright's storage state) at the end of its last
-- stateful run, handed to its next run. Deleting the task forgets it.
CREATE TABLE task_browser_state (
    task_id     text PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
