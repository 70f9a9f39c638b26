-- S3-compatible object storage: access keys, buckets, objects, multipart uploads.
CREATE TABLE s3_keys (
    access_key_id TEXT PRIMARY KEY NOT NULL,
    secret        TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX s3_keys_project ON s3_keys(project_id);

CREATE TABLE s3_buckets (
    name       TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX s3_buckets_project ON s3_buckets(project_id);

CREATE TABLE s3_objects (
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    file         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    etag         TEXT NOT NULL,
    content_type TEXT,
    metadata     TEXT,
    modified_ms  INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;

CREATE TABLE s3_uploads (
    upload_id    TEXT PRIMARY KEY NOT NULL,
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    content_type TEXT,
    metadata     TEXT,
    initiated_ms INTEGER NOT NULL
);
CREATE INDEX s3_uploads_bucket ON s3_uploads(bucket, key, upload_id);

CREATE TABLE s3_parts (
    upload_id   TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    file        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    etag        TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
