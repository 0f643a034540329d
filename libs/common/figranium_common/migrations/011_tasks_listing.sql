-- The console's task list shows the newest tasks first ("ORDER BY updated_at DESC, id"):
-- with this index an unfiltered list reads only the rows it shows instead of sorting the
-- whole table.
CREATE INDEX tasks_newest ON tasks (updated_at DESC, id);
