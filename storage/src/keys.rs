//! S3 access keys: each belongs to one project. The secret is returned
//! once, by [`create`]; listings never show it.

use rand::Rng;
use sqlx::SqlitePool;

use crate::now_ms;

/// An access key as listed (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id (`AKMC…`), also the key's REST id.
    pub access_key_id: String,
    /// The owning project.
    pub project_id: String,
    /// Creation time (unix ms).
    pub created_at: i64,
}

/// A freshly created key, with its secret (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessKey {
    /// The key (no secret).
    pub key: AccessKey,
    /// The secret access key.
    pub secret_access_key: String,
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Creates an access key for `project_id`.
pub async fn create(pool: &SqlitePool, project_id: &str) -> Result<NewAccessKey, sqlx::Error> {
    let key = AccessKey {
        access_key_id: format!("AKMC{}", random_string(ID_ALPHABET, 16)),
        project_id: project_id.to_owned(),
        created_at: now_ms(),
    };
    let secret = random_string(SECRET_ALPHABET, 40);
    sqlx::query(
        "INSERT INTO s3_keys (access_key_id, secret, project_id, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&key.access_key_id)
    .bind(&secret)
    .bind(&key.project_id)
    .bind(key.created_at)
    .execute(pool)
    .await?;
    Ok(NewAccessKey {
        key,
        secret_access_key: secret,
    })
}

/// Inserts a key with a chosen id and secret (tests, imports).
pub async fn insert(
    pool: &SqlitePool,
    project_id: &str,
    access_key_id: &str,
    secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO s3_keys (access_key_id, secret, project_id, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(access_key_id)
    .bind(secret)
    .bind(project_id)
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok(())
}

/// The project's keys, oldest first.
pub async fn list(pool: &SqlitePool, project_id: &str) -> Result<Vec<AccessKey>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT access_key_id, project_id, created_at FROM s3_keys \
         WHERE project_id = ? ORDER BY created_at, access_key_id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(access_key_id, project_id, created_at)| AccessKey {
            access_key_id,
            project_id,
            created_at,
        })
        .collect())
}

/// Deletes one of the project's keys; false when it has no such key.
pub async fn delete(
    pool: &SqlitePool,
    project_id: &str,
    access_key_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM s3_keys WHERE project_id = ? AND access_key_id = ?")
        .bind(project_id)
        .bind(access_key_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The secret and project of an access key.
pub async fn lookup(
    pool: &SqlitePool,
    access_key_id: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT secret, project_id FROM s3_keys WHERE access_key_id = ?")
        .bind(access_key_id)
        .fetch_optional(pool)
        .await
}
