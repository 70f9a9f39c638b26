//! All control-plane state lives behind this module: one SQLite file (WAL)
//! opened through sqlx, with migrations embedded in the binary. Callers use
//! the typed functions of the submodules, never SQL, so PostgreSQL can take
//! SQLite's place here alone.

pub mod events;
pub mod idempotency;
pub mod instances;
pub mod operations;
pub mod projects;
pub mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The control plane's database.
#[derive(Clone)]
pub struct Store {
    /// The connection pool (other services run their migrations on it too).
    pub pool: SqlitePool,
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Begins a write transaction. `BEGIN IMMEDIATE` takes SQLite's write
    /// lock up front (waiting up to the busy timeout), so concurrent
    /// writers queue instead of failing with `SQLITE_BUSY_SNAPSHOT` when a
    /// read transaction tries to upgrade.
    pub async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Opens (creating if needed) the database file and runs migrations.
    pub async fn open(path: &Path) -> Result<Store, sqlx::Error> {
        let url = format!("sqlite://{}", path.display());
        let opts = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator
            .run(&pool)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
        Ok(Store { pool })
    }
}
