//! The crate's error type: one enum whose variants say exactly what went
//! wrong, with messages fit to show to an API user, and a coarse
//! [`ErrorKind`] so that the HTTP layer can pick a status code.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the streams service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A project, topic, group, queue or job name is not acceptable.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What kind of name it is ("topic", "project", ...).
        what: &'static str,
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A configuration value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The topic does not exist in this project.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The topic name.
        topic: String,
    },
    /// A topic with this name already exists in this project.
    #[error("topic {topic:?} already exists")]
    TopicExists {
        /// The topic name.
        topic: String,
    },
    /// The partition number is not one of the topic's partitions.
    #[error("topic {topic:?} has no partition {partition} (it has {partitions}: 0..{partitions})")]
    UnknownPartition {
        /// The topic name.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// A fetch asked for an offset outside the partition's retained range.
    #[error(
        "offset {offset} is out of range for {topic:?} partition {partition}: valid offsets are {first}..={next} ({next} is the next offset to be written)"
    )]
    OffsetOutOfRange {
        /// The topic name.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The first offset still retained.
        first: u64,
        /// The next offset to be written (fetching it waits for new data).
        next: u64,
    },
    /// One record (or queue message) is larger than allowed.
    #[error("record of {size} bytes is larger than the maximum of {max} bytes")]
    RecordTooLarge {
        /// The encoded size of the record.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A produce batch is larger than allowed.
    #[error("batch of {size} bytes is larger than the maximum of {max} bytes")]
    BatchTooLarge {
        /// The encoded size of the batch.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A record without a key was sent to a compacted topic.
    #[error("topic {topic:?} is compacted: every record needs a key")]
    KeyRequired {
        /// The topic name.
        topic: String,
    },
    /// An idempotent producer sent a sequence number older than its last.
    #[error(
        "producer {producer_id} sent sequence {sequence}, but its last batch had sequence {last}: sequences must not go back"
    )]
    StaleSequence {
        /// The producer id.
        producer_id: u64,
        /// The sequence sent.
        sequence: u64,
        /// The last sequence accepted.
        last: u64,
    },
    /// A binary batch or stored structure could not be decoded.
    #[error("malformed binary batch: {0}")]
    Decode(String),
    /// Stored data failed its checksum or structure checks outside a
    /// repairable tail.
    #[error("corrupt data in {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The consumer group does not exist.
    #[error("unknown consumer group {group:?}")]
    UnknownGroup {
        /// The group id.
        group: String,
    },
    /// The member is not (or no longer) part of the group.
    #[error(
        "member {member:?} is not in group {group:?} (it may have been removed after its session timed out): join again"
    )]
    UnknownMember {
        /// The group id.
        group: String,
        /// The member id.
        member: String,
    },
    /// A member used an old generation: the group has rebalanced since.
    #[error(
        "group {group:?} is at generation {current}, not {generation}: the group rebalanced, join again to get the new assignment"
    )]
    IllegalGeneration {
        /// The group id.
        group: String,
        /// The generation sent.
        generation: u64,
        /// The group's current generation.
        current: u64,
    },
    /// The queue does not exist in this project.
    #[error("unknown queue {queue:?}")]
    UnknownQueue {
        /// The queue name.
        queue: String,
    },
    /// A queue with this name already exists in this project.
    #[error("queue {queue:?} already exists")]
    QueueExists {
        /// The queue name.
        queue: String,
    },
    /// A receipt handle could not be parsed or names no message.
    #[error("invalid receipt handle {handle:?}: {reason}")]
    InvalidReceipt {
        /// The handle given.
        handle: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The stream job does not exist.
    #[error("unknown stream job {job:?}")]
    UnknownJob {
        /// The job name.
        job: String,
    },
    /// A stream job with this name already exists.
    #[error("stream job {job:?} already exists")]
    JobExists {
        /// The job name.
        job: String,
    },
    /// A stream job spec is not valid.
    #[error("invalid stream job spec: {0}")]
    InvalidJobSpec(String),
    /// A window spec is not valid.
    #[error("bad window spec: {0}")]
    BadWindow(String),
    /// The service is shutting down.
    #[error("the streams service is shutting down")]
    ShuttingDown,
    /// An async operation needs a tokio runtime and none was running.
    #[error("no tokio runtime is running: {0} must be called from within one")]
    NoRuntime(&'static str),
}

/// A coarse classification of [`Error`] for mapping to HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named thing does not exist (404).
    NotFound,
    /// The request is malformed or out of range (400).
    Invalid,
    /// The request conflicts with current state (409).
    Conflict,
    /// The payload is too large (413).
    TooLarge,
    /// The service cannot serve now (503).
    Unavailable,
    /// A server-side failure (500).
    Internal,
}

impl Error {
    /// Classifies the error for the API layer.
    pub fn kind(&self) -> ErrorKind {
        use Error::*;
        match self {
            UnknownTopic { .. }
            | UnknownPartition { .. }
            | UnknownGroup { .. }
            | UnknownQueue { .. }
            | UnknownJob { .. } => ErrorKind::NotFound,
            InvalidName { .. }
            | InvalidConfig(_)
            | OffsetOutOfRange { .. }
            | KeyRequired { .. }
            | Decode(_)
            | InvalidReceipt { .. }
            | InvalidJobSpec(_)
            | BadWindow(_) => ErrorKind::Invalid,
            TopicExists { .. }
            | QueueExists { .. }
            | JobExists { .. }
            | StaleSequence { .. }
            | UnknownMember { .. }
            | IllegalGeneration { .. } => ErrorKind::Conflict,
            RecordTooLarge { .. } | BatchTooLarge { .. } => ErrorKind::TooLarge,
            ShuttingDown | NoRuntime(_) => ErrorKind::Unavailable,
            Corrupt { .. } | Io { .. } => ErrorKind::Internal,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to `std::io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`Error::Io`] with a lazily built context.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
