-- Cabinets: named file stores a run's downloads land in and its uploads come from
-- (Figranium's cabinets). Items' bytes live in the JetStream object store "cabinets";
-- a file item's object is `object`, a folder's files are listed in `entries`
-- ([{path, object, size, sha256}]). There is always one default cabinet.
CREATE TABLE cabinets (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    is_default  boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX cabinets_name_key ON cabinets (lower(name));
CREATE UNIQUE INDEX cabinets_one_default ON cabinets (is_default) WHERE is_default;
INSERT INTO cabinets (id, name, is_default) VALUES ('cab_basic', 'Basic Cabinet', true);

CREATE TABLE cabinet_items (
    id              text PRIMARY KEY,
    cabinet_id      text NOT NULL REFERENCES cabinets (id),
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('file', 'folder')),
    status          text NOT NULL DEFAULT 'unuploaded' CHECK (status IN ('unuploaded', 'uploaded')),
    size            bigint NOT NULL CHECK (size >= 0),
    sha256          text,
    object          text,
    entries         jsonb,
    source_task_id  text,
    source_run_id   text,
    source_url      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'file') = (object IS NOT NULL))
);
CREATE UNIQUE INDEX cabinet_items_name_key ON cabinet_items (cabinet_id, lower(name));
CREATE INDEX cabinet_items_newest ON cabinet_items (cabinet_id, created_at DESC, id DESC);
CREATE INDEX cabinet_items_unuploaded ON cabinet_items (cabinet_id, created_at DESC)
    WHERE status = 'unuploaded';
