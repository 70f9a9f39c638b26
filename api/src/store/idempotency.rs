//! Idempotency keys: a write repeated with the same `Idempotency-Key` gets
//! the first answer again instead of acting twice.

use sqlx::SqlitePool;

use super::now_ms;

/// A stored answer.
pub struct Stored {
    /// Hash of the first request (method, path, body).
    pub request_sha256: String,
    /// Its status.
    pub status: u16,
    /// Its body.
    pub body: Vec<u8>,
}

/// Looks a key up.
pub async fn get(
    pool: &SqlitePool,
    project_id: &str,
    key: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    let row: Option<(String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT request_sha256, status, body FROM idempotency_keys WHERE project_id=? AND key=?",
    )
    .bind(project_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(request_sha256, status, body)| Stored {
        request_sha256,
        status: status as u16,
        body,
    }))
}

/// Records the answer to a key (first writer wins).
#[allow(clippy::too_many_arguments)]
pub async fn put(
    pool: &SqlitePool,
    project_id: &str,
    key: &str,
    method: &str,
    path: &str,
    request_sha256: &str,
    status: u16,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (project_id, key, method, path, request_sha256, status, body, created_at) \
         VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(key)
    .bind(method)
    .bind(path)
    .bind(request_sha256)
    .bind(i64::from(status))
    .bind(body)
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok(())
}
