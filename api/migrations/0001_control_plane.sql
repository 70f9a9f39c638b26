-- Control plane state: projects (tenants), their API tokens, instances,
-- long-running operations, idempotency keys and the lifecycle event log.
-- Times are unix milliseconds (UTC).

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    max_instances INTEGER NOT NULL,
    max_vcpus INTEGER NOT NULL,
    max_memory_mib INTEGER NOT NULL,
    max_volumes INTEGER NOT NULL,
    max_buckets INTEGER NOT NULL,
    max_topics INTEGER NOT NULL
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    token_sha256 TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    image TEXT NOT NULL,
    vcpus INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    cmdline TEXT NOT NULL,
    run TEXT,
    user_data TEXT,
    cpu_policy TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    host TEXT,
    cpus TEXT,
    allocation TEXT,
    pid INTEGER,
    pid_starttime INTEGER,
    exit_status INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    stopped_at INTEGER,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX instances_live_name ON instances(project_id, name) WHERE deleted_at IS NULL;
CREATE INDEX instances_project ON instances(project_id, created_at);

CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX operations_target ON operations(target_id);

CREATE TABLE idempotency_keys (
    project_id TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, key)
);

CREATE TABLE lifecycle_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    state TEXT,
    message TEXT,
    at INTEGER NOT NULL
);
