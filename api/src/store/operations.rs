//! Long-running operations (launch, start, stop, reboot, delete): what the
//! caller polls with `GET /v1/operations/{id}`.

use serde::Serialize;
use sqlx::{FromRow, SqliteConnection, SqlitePool};
use utoipa::ToSchema;

use super::now_ms;

/// An operation.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Operation {
    /// Operation id.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// launch, start, stop, reboot, delete.
    pub kind: String,
    /// The instance it acts on.
    pub target_id: String,
    /// running, succeeded, failed.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Created (unix ms).
    pub created_at: i64,
    /// Finished (unix ms).
    pub finished_at: Option<i64>,
}

/// Records a new running operation.
pub async fn create(
    conn: &mut SqliteConnection,
    project_id: &str,
    kind: &str,
    target_id: &str,
) -> Result<Operation, sqlx::Error> {
    let op = Operation {
        id: format!("op-{}", uuid::Uuid::now_v7().simple()),
        project_id: project_id.into(),
        kind: kind.into(),
        target_id: target_id.into(),
        status: "running".into(),
        error: None,
        created_at: now_ms(),
        finished_at: None,
    };
    sqlx::query("INSERT INTO operations (id, project_id, kind, target_id, status, created_at) VALUES (?,?,?,?,?,?)")
        .bind(&op.id)
        .bind(&op.project_id)
        .bind(&op.kind)
        .bind(&op.target_id)
        .bind(&op.status)
        .bind(op.created_at)
        .execute(conn)
        .await?;
    Ok(op)
}

/// Marks an operation finished.
pub async fn finish(pool: &SqlitePool, id: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
    let status = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    sqlx::query(
        "UPDATE operations SET status=?, error=?, finished_at=? WHERE id=? AND status='running'",
    )
    .bind(status)
    .bind(error)
    .bind(now_ms())
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Finishes every running operation on `target_id` (used when the instance
/// reaches a settled state).
pub async fn finish_for_target(
    pool: &SqlitePool,
    target_id: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    let status = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    sqlx::query("UPDATE operations SET status=?, error=?, finished_at=? WHERE target_id=? AND status='running'")
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .bind(target_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// One operation of a project.
pub async fn get(
    pool: &SqlitePool,
    project_id: Option<&str>,
    id: &str,
) -> Result<Option<Operation>, sqlx::Error> {
    let op: Option<Operation> = sqlx::query_as("SELECT * FROM operations WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(op.filter(|o| project_id.is_none_or(|p| p == o.project_id)))
}
