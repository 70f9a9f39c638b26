//! minicloud storage: S3-compatible object storage (and, later, block
//! volumes for VMs).
//!
//! Object storage ([`s3`]) is an `s3s` service over a backend of ours:
//! object bytes live in the data directory as files named by random ids
//! (never by the object key, so no key can name a path outside the
//! store), written to a temporary file, fsynced and renamed; metadata
//! (buckets, objects, multipart uploads, access keys) lives in the
//! control plane's SQLite file, in tables created by [`migrate`]
//! (versions 2000–2999).

pub mod keys;
pub mod s3;
pub mod volumes;

use sqlx::SqlitePool;

/// Errors of the storage crate's non-S3 API.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Applying the storage migrations failed.
    #[error("storage migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database error.
    #[error("storage database: {0}")]
    Db(#[from] sqlx::Error),
    /// A filesystem error.
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Applies storage's migrations (versions 2000–2999). Other crates'
/// applied migrations in the same `_sqlx_migrations` table are ignored.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StorageError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
