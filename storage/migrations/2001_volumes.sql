-- Block volumes (sparse raw files) and their snapshots.
CREATE TABLE volumes (
    id          TEXT PRIMARY KEY NOT NULL,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    attached_to TEXT,
    source      TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE volume_snapshots (
    id          TEXT PRIMARY KEY NOT NULL,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    volume_id   TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    method      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (project_id, name)
);
