//! Usage counters for the control plane's metering: bytes in and out,
//! records and requests per project and resource. Counters are cumulative
//! since the service opened; [`crate::Streams::usage_snapshot`] returns
//! them together with each topic's current storage bytes and partition
//! count (partition-hours and storage GiB-seconds follow from sampling
//! those), and the caller turns differences into usage events.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

/// What kind of resource a usage line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A topic.
    Topic,
    /// A queue.
    Queue,
    /// A stream job (its reads and writes).
    Job,
}

/// Cumulative counters of one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageCounters {
    /// Bytes written (produced records, sent messages).
    pub bytes_in: u64,
    /// Bytes read (fetched records, received messages).
    pub bytes_out: u64,
    /// Records or messages written.
    pub records_in: u64,
    /// Records or messages read.
    pub records_out: u64,
    /// API-level requests.
    pub requests: u64,
}

/// One line of a usage snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    /// Project id.
    pub project: String,
    /// Resource kind.
    pub kind: ResourceKind,
    /// Resource name.
    pub name: String,
    /// Counters since the service opened.
    pub counters: UsageCounters,
    /// Bytes stored now (topics and queues).
    pub storage_bytes: u64,
    /// Partitions now (topics).
    pub partitions: u32,
}

type Key = (String, ResourceKind, String);

/// The counters.
#[derive(Debug, Default)]
pub(crate) struct Metering {
    counters: Mutex<HashMap<Key, UsageCounters>>,
}

impl Metering {
    /// Adds to a resource's counters.
    pub(crate) fn add(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        f: impl FnOnce(&mut UsageCounters),
    ) {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        f(map
            .entry((project.to_string(), kind, name.to_string()))
            .or_default());
    }

    /// Copies every counter.
    pub(crate) fn snapshot(&self) -> Vec<(String, ResourceKind, String, UsageCounters)> {
        let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .map(|((p, k, n), c)| (p.clone(), *k, n.clone(), *c))
            .collect();
        v.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
        v
    }
}
