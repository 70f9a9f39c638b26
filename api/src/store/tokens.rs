//! API tokens: random, shown once, stored as SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{SqliteConnection, SqlitePool};

use super::now_ms;
use super::projects::Project;

/// Hash under which a token is stored.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a token for `project_id`; returns the plaintext (shown once).
pub async fn create(
    conn: &mut SqliteConnection,
    project_id: &str,
    name: &str,
) -> Result<String, sqlx::Error> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("mct_{}", hex::encode(raw));
    sqlx::query(
        "INSERT INTO tokens (id, project_id, token_sha256, name, created_at) VALUES (?,?,?,?,?)",
    )
    .bind(format!("tok-{}", uuid::Uuid::now_v7().simple()))
    .bind(project_id)
    .bind(digest(&token))
    .bind(name)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(token)
}

/// The project a token belongs to.
pub async fn authenticate(pool: &SqlitePool, token: &str) -> Result<Option<Project>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.name, p.is_admin, p.created_at, p.max_instances, p.max_vcpus, \
         p.max_memory_mib, p.max_volumes, p.max_buckets, p.max_topics \
         FROM tokens t JOIN projects p ON p.id = t.project_id WHERE t.token_sha256 = ?",
    )
    .bind(digest(token))
    .fetch_optional(pool)
    .await
}
