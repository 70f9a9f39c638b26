//! Sink definitions in SQLite.

use serde::Serialize;
use sqlx::SqlitePool;

/// A sink's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SinkSpec {
    /// Owner.
    pub project_id: String,
    /// Name (unique in the project).
    pub name: String,
    /// Topic read.
    pub topic: String,
    /// Bucket written (the same project's).
    pub bucket: String,
    /// Key prefix of the objects.
    pub prefix: String,
    /// Records per object at most.
    pub max_records: i64,
    /// Longest a record waits before its object is written (ms).
    pub flush_ms: i64,
    /// Creation time (ms).
    pub created_at: i64,
}

const COLUMNS: &str = "project_id, name, topic, bucket, prefix, max_records, flush_ms, created_at";

/// Stores a new sink; `false` when the name is taken.
pub async fn insert(pool: &SqlitePool, s: &SinkSpec) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT OR IGNORE INTO sinks \
         (project_id, name, topic, bucket, prefix, max_records, flush_ms, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&s.project_id)
    .bind(&s.name)
    .bind(&s.topic)
    .bind(&s.bucket)
    .bind(&s.prefix)
    .bind(s.max_records)
    .bind(s.flush_ms)
    .bind(s.created_at)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// One sink.
pub async fn get(
    pool: &SqlitePool,
    project: &str,
    name: &str,
) -> Result<Option<SinkSpec>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sinks WHERE project_id = ? AND name = ?"
    )))
    .bind(project)
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// A project's sinks.
pub async fn list(pool: &SqlitePool, project: &str) -> Result<Vec<SinkSpec>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sinks WHERE project_id = ? ORDER BY name"
    )))
    .bind(project)
    .fetch_all(pool)
    .await
}

/// Every sink (daemon start).
pub async fn all(pool: &SqlitePool) -> Result<Vec<SinkSpec>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sinks ORDER BY project_id, name"
    )))
    .fetch_all(pool)
    .await
}

/// Removes a sink; `false` when there was none.
pub async fn delete(pool: &SqlitePool, project: &str, name: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sinks WHERE project_id = ? AND name = ?")
        .bind(project)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}
