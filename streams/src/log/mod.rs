//! The partition log: Kafka's storage model on local files.
//!
//! - [`batch`]: the on-disk batch format (header, records, CRC-32C).
//! - [`index`]: the sparse offset and time indexes beside each segment.
//! - [`segment`]: one `{base_offset:020}.log` file, its open-time scan and
//!   torn-tail repair, reads.
//! - [`partition`]: the ordered segments of one partition, appends, rolls,
//!   retention and compaction.

pub mod batch;
pub mod index;
pub mod partition;
pub mod segment;

use serde::{Deserialize, Serialize};

/// What happens to old data in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Whole segments are deleted by time and size retention.
    #[default]
    Delete,
    /// Only the latest record per key is kept.
    Compact,
}

/// When appended data is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// `fdatasync` after every batch, before it is acknowledged.
    EveryBatch,
    /// At most this many milliseconds after a write (checked on each append
    /// and by the service's maintenance tick); acknowledged batches are in
    /// the OS page cache and survive a process crash, not a power loss.
    IntervalMs(u64),
}

/// What a produce acknowledgement guarantees; serialized as `"fsync"` or
/// `"os-buffer"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// The batch was on stable storage before the answer.
    #[serde(rename = "fsync")]
    Fsync,
    /// The batch was in the OS page cache (survives a crash of this
    /// process, not of the machine) and will be synced within the interval.
    #[serde(rename = "os-buffer")]
    OsBuffer,
}

impl Durability {
    /// The wire name: `"fsync"` or `"os-buffer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::OsBuffer => "os-buffer",
        }
    }
}

/// Per-partition log settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment when a batch would take it past this size.
    pub segment_bytes: u64,
    /// Roll the active segment when its first batch is this old.
    pub segment_ms: i64,
    /// Add an index entry every this many bytes of log.
    pub index_interval_bytes: u64,
    /// Delete segments whose newest record is older than this.
    pub retention_ms: Option<i64>,
    /// Delete the oldest segments while the partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete or compact.
    pub cleanup: CleanupPolicy,
    /// When to fsync.
    pub fsync: FsyncPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup: CleanupPolicy::Delete,
            fsync: FsyncPolicy::IntervalMs(1000),
        }
    }
}
