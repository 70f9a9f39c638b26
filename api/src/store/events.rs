//! The lifecycle event log: every state change, kept in SQLite and fanned
//! out live to `GET /v1/events` subscribers.

use serde::Serialize;
use sqlx::{FromRow, SqliteConnection, SqlitePool};
use utoipa::ToSchema;

use super::now_ms;

/// One lifecycle event.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct LifecycleEvent {
    /// Sequence number (increasing).
    pub seq: i64,
    /// Owning project.
    pub project_id: String,
    /// e.g. `instance.state`.
    pub kind: String,
    /// The resource.
    pub resource_id: String,
    /// New state, if a state change.
    pub state: Option<String>,
    /// Why.
    pub message: Option<String>,
    /// When (unix ms).
    pub at: i64,
}

/// Appends an event (inside the caller's transaction).
pub async fn append(
    conn: &mut SqliteConnection,
    project_id: &str,
    kind: &str,
    resource_id: &str,
    state: Option<&str>,
    message: Option<&str>,
) -> Result<LifecycleEvent, sqlx::Error> {
    let at = now_ms();
    let r = sqlx::query(
        "INSERT INTO lifecycle_events (project_id, kind, resource_id, state, message, at) VALUES (?,?,?,?,?,?)",
    )
    .bind(project_id)
    .bind(kind)
    .bind(resource_id)
    .bind(state)
    .bind(message)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(LifecycleEvent {
        seq: r.last_insert_rowid(),
        project_id: project_id.into(),
        kind: kind.into(),
        resource_id: resource_id.into(),
        state: state.map(Into::into),
        message: message.map(Into::into),
        at,
    })
}

/// Events after `seq` (for a project, or all).
pub async fn since(
    pool: &SqlitePool,
    project_id: Option<&str>,
    seq: i64,
    limit: i64,
) -> Result<Vec<LifecycleEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM lifecycle_events WHERE seq > ? AND (? IS NULL OR project_id = ?) ORDER BY seq LIMIT ?",
    )
    .bind(seq)
    .bind(project_id)
    .bind(project_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}
