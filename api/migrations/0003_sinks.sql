-- Object-storage sinks: a topic's records written to a bucket as
-- newline-delimited JSON objects (progress lives in the sink's consumer
-- group, `sink-<name>`, in the streams store).
CREATE TABLE sinks (
    project_id  TEXT NOT NULL REFERENCES projects(id),
    name        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    bucket      TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    max_records INTEGER NOT NULL,
    flush_ms    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (project_id, name)
);
