//! minicloud streams: durable partitioned topics (Kafka's log model),
//! consumer groups, SQS-style queues and stateful stream jobs (Samza's
//! model), as an in-process library. The control plane (`api`) exposes it
//! over HTTP; everything here is plain Rust calls on a [`Streams`] value.
//!
//! # Map
//!
//! - [`service`]: [`Streams`], the service object opened on a data
//!   directory; every call takes a project id (tenant) and sees only that
//!   project's resources. Start here.
//! - [`topic`]: topic config, describe, the produce path (partition
//!   choice, limits, idempotent producers) and fetches with long-poll.
//! - [`log`]: the storage under a topic partition: [`log::batch`] (on-disk
//!   batch format with CRC-32C), [`log::index`] (sparse offset and time
//!   indexes), [`log::segment`] (one segment file, torn-tail repair),
//!   [`log::partition`] (segments, roll, retention, compaction, fsync).
//! - [`record`]: records in and out.
//! - [`binary`]: the compact binary batch encodings for produce and fetch.
//! - [`group`]: consumer groups (assignment, generations, heartbeats,
//!   session expiry, durable committed offsets, lag).
//! - [`queue`]: SQS-style queues and their journal ([`queue::journal`]).
//! - [`job`]: stream jobs: [`job::spec`], [`job::window`], [`job::state`],
//!   [`job::runner`].
//! - [`metering`]: usage counters for billing.
//! - [`error`]: the [`Error`] type and its [`ErrorKind`] for HTTP statuses.
//!
//! # On disk
//!
//! ```text
//! {data_dir}/topics/{project}/{topic}/topic.json           config
//! {data_dir}/topics/{project}/{topic}/{partition}/{base:020}.log        batches
//! {data_dir}/topics/{project}/{topic}/{partition}/{base:020}.index      offset index
//! {data_dir}/topics/{project}/{topic}/{partition}/{base:020}.timeindex  time index
//! {data_dir}/groups/{project}/{group}.json                  committed offsets
//! {data_dir}/queues/{project}/{queue}/queue.json            config
//! {data_dir}/queues/{project}/{queue}/journal               message journal
//! {data_dir}/jobs/{project}/{job}.json                      spec, running flag
//! ```
//!
//! A job's state lives in the topic `{job}-changelog` of its project.
#![deny(missing_docs)]

pub mod binary;
pub mod error;
pub mod group;
pub mod job;
pub mod log;
pub mod metering;
pub mod queue;
pub mod record;
pub mod service;
pub mod topic;

pub use error::{Error, ErrorKind, Result};
pub use group::{Assignment, AssignmentStrategy, GroupInfo, PartitionLag, TopicPartition};
pub use job::{JobSpec, JobState, JobStatus, TaskStatus};
pub use log::{CleanupPolicy, Durability, FsyncPolicy};
pub use metering::{ResourceKind, UsageCounters, UsageRecord};
pub use queue::{QueueConfig, QueueInfo, ReceivedMessage, RedrivePolicy, SendMessage};
pub use record::{Header, ProduceRecord, Record};
pub use service::{FetchOptions, JoinGroup, Streams, StreamsConfig};
pub use topic::{
    FetchResult, PartitionInfo, ProduceAck, ProducerSeq, RecordPosition, TopicConfig, TopicInfo,
};

/// Milliseconds since the Unix epoch, from the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
