//! minicloud streams (WIP)
#![deny(missing_docs)]

pub mod error;
pub mod log;
pub mod record;

pub use error::{Error, ErrorKind, Result};

/// Milliseconds since the Unix epoch, from the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
