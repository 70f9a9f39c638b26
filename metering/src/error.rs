//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in metering.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    /// The SQLite database failed (I/O, constraint, lock timeout...).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the metering migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A usage event was refused; `field` names what is wrong.
    #[error("invalid usage event {id:?}: {field}: {reason}")]
    InvalidEvent {
        /// The event's id as given.
        id: String,
        /// The offending field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A meter key that is not in [`crate::meter::CATALOG`].
    #[error("unknown meter {0:?}")]
    UnknownMeter(String),
    /// A run (interval) request that contradicts what is stored.
    #[error("run for resource {resource_id:?}: {reason}")]
    Run {
        /// The resource whose run was addressed.
        resource_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The price book text is malformed or inconsistent.
    #[error("price book: {0}")]
    PriceBook(String),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A parameter with a value outside its domain.
    #[error("invalid {name}: {reason}")]
    Invalid {
        /// The parameter.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A time, date, month or range that is not valid.
    #[error("invalid time: {0}")]
    InvalidTime(String),
    /// A month cannot be closed (not over yet, out of order, already closed).
    #[error("cannot close {month}: {reason}")]
    Close {
        /// The month, as `YYYY-MM`.
        month: String,
        /// Why not.
        reason: String,
    },
    /// No stored invoice has that id.
    #[error("invoice {0} not found")]
    InvoiceNotFound(i64),
    /// An exact computation would overflow its integer type.
    #[error("arithmetic overflow computing {0}")]
    Overflow(&'static str),
    /// A money amount or price that does not parse.
    #[error("invalid amount {0:?}: {1}")]
    InvalidAmount(String, &'static str),
    /// Stored data that this version cannot read (a bug or a manual edit).
    #[error("corrupt metering data: {0}")]
    Corrupt(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = MeteringError> = std::result::Result<T, E>;
