//! Topics: a named set of partition logs inside one project, with their
//! configuration (`topic.json`), the produce path (partition choice,
//! size limits, idempotent producers) and fetches (by offset or time, with
//! a long-poll wait).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{Error, IoContext, Result};
use crate::log::partition::PartitionLog;
use crate::log::{CleanupPolicy, Durability, FsyncPolicy, LogConfig};
use crate::record::{ProduceRecord, Record};

/// A topic's settings, as given at creation (unset fields take defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions (1..=1024).
    pub partitions: u32,
    /// Delete segments whose newest record is older than this many ms
    /// (`None`: keep forever). Default 7 days.
    #[serde(default = "default_retention_ms")]
    pub retention_ms: Option<i64>,
    /// Keep each partition under this many bytes by deleting its oldest
    /// segments (`None`: no limit).
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// `delete` (retention) or `compact` (latest value per key).
    #[serde(default)]
    pub cleanup: CleanupPolicy,
    /// Segment size at which the active segment rolls (default 64 MiB).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Age in ms at which the active segment rolls (default 7 days).
    #[serde(default = "default_segment_ms")]
    pub segment_ms: i64,
}

fn default_retention_ms() -> Option<i64> {
    LogConfig::default().retention_ms
}
fn default_segment_bytes() -> u64 {
    LogConfig::default().segment_bytes
}
fn default_segment_ms() -> i64 {
    LogConfig::default().segment_ms
}

impl TopicConfig {
    /// A config with `partitions` partitions and every other field default.
    pub fn new(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            retention_ms: default_retention_ms(),
            retention_bytes: None,
            cleanup: CleanupPolicy::Delete,
            segment_bytes: default_segment_bytes(),
            segment_ms: default_segment_ms(),
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(Error::InvalidConfig(format!(
                "partitions must be 1..={MAX_PARTITIONS}, not {}",
                self.partitions
            )));
        }
        if !(4096..=1 << 30).contains(&self.segment_bytes) {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes must be 4096..=1073741824, not {}",
                self.segment_bytes
            )));
        }
        if self.segment_ms < 1 {
            return Err(Error::InvalidConfig("segment_ms must be positive".into()));
        }
        if self.retention_ms.is_some_and(|ms| ms < 1) {
            return Err(Error::InvalidConfig("retention_ms must be positive".into()));
        }
        Ok(())
    }

    pub(crate) fn log_config(&self, fsync: FsyncPolicy) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: 4096,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            cleanup: self.cleanup,
            fsync,
        }
    }
}

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// What `describe` tells about one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// First retained offset.
    pub first_offset: u64,
    /// Offset the next record will get.
    pub next_offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Number of segment files.
    pub segments: usize,
}

/// What `describe` tells about a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Its settings.
    pub config: TopicConfig,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
}

/// An idempotent producer's identity for one produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSeq {
    /// The producer's id (any non-zero number the client picks, e.g. random).
    pub producer_id: u64,
    /// The request's sequence number: must not decrease between requests;
    /// resending the last one returns the original offsets without writing.
    pub sequence: u64,
}

/// Where one produced record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecordPosition {
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
}

/// The answer to a produce request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProduceAck {
    /// One position per record, in request order.
    pub offsets: Vec<RecordPosition>,
    /// What the acknowledgement guarantees.
    pub durability: Durability,
    /// True when the request was a retry of an already written idempotent
    /// batch (nothing new was written).
    pub duplicate: bool,
}

/// The answer to a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    /// Records, in offset order.
    pub records: Vec<Record>,
    /// Offset to fetch next.
    pub next_offset: u64,
    /// First retained offset of the partition.
    pub log_start_offset: u64,
    /// Offset the next produced record will get (the high watermark).
    pub high_watermark: u64,
}

/// Limits applied to produce requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceLimits {
    /// Largest single record (encoded).
    pub max_record_bytes: usize,
    /// Largest request (sum of encoded records).
    pub max_batch_bytes: usize,
}

/// One partition: its log behind a lock, and a notifier for long polls.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) log: Mutex<PartitionLog>,
    pub(crate) appended: Notify,
    next_offset: AtomicU64,
}

impl Partition {
    fn new(log: PartitionLog) -> Self {
        let next = log.next_offset();
        Partition {
            log: Mutex::new(log),
            appended: Notify::new(),
            next_offset: AtomicU64::new(next),
        }
    }

    /// Locks the log; a poisoned lock (a panic while holding it) is taken
    /// over, the log's state being updated only after successful writes.
    pub(crate) fn lock(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The high watermark without taking the lock.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    name: String,
    config: TopicConfig,
    created_ms: i64,
}

/// A topic of one project.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: String,
    dir: PathBuf,
    created_ms: i64,
    fsync: FsyncPolicy,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition>>>,
    round_robin: AtomicU32,
    idempotent: Mutex<()>,
}

impl Topic {
    /// Creates the topic's directory and partitions.
    pub(crate) fn create(
        dir: &Path,
        name: &str,
        config: TopicConfig,
        fsync: FsyncPolicy,
        now: i64,
    ) -> Result<Self> {
        config.validate()?;
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let meta = TopicMeta {
            name: name.to_string(),
            config: config.clone(),
            created_ms: now,
        };
        write_json_atomic(&dir.join("topic.json"), &meta)?;
        Self::open(dir, fsync, now)
    }

    /// Opens an existing topic directory.
    pub(crate) fn open(dir: &Path, fsync: FsyncPolicy, now: i64) -> Result<Self> {
        let meta_path = dir.join("topic.json");
        let raw = std::fs::read(&meta_path).ctx(|| format!("reading {}", meta_path.display()))?;
        let meta: TopicMeta = serde_json::from_slice(&raw).map_err(|e| Error::Corrupt {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        let mut parts = Vec::with_capacity(meta.config.partitions as usize);
        for p in 0..meta.config.partitions {
            let log = PartitionLog::open(
                &meta.name,
                p,
                &dir.join(p.to_string()),
                meta.config.log_config(fsync),
                now,
            )?;
            parts.push(Arc::new(Partition::new(log)));
        }
        Ok(Topic {
            name: meta.name,
            dir: dir.to_path_buf(),
            created_ms: meta.created_ms,
            fsync,
            config: RwLock::new(meta.config),
            partitions: RwLock::new(parts),
            round_robin: AtomicU32::new(0),
            idempotent: Mutex::new(()),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn partition(&self, p: u32) -> Result<Arc<Partition>> {
        let parts = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        parts
            .get(p as usize)
            .cloned()
            .ok_or_else(|| Error::UnknownPartition {
                topic: self.name.clone(),
                partition: p,
                partitions: parts.len() as u32,
            })
    }

    /// Describes the topic.
    pub(crate) fn info(&self) -> TopicInfo {
        let partitions = self
            .partitions()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let log = p.lock();
                PartitionInfo {
                    partition: i as u32,
                    first_offset: log.log_start_offset(),
                    next_offset: log.next_offset(),
                    bytes: log.size_bytes(),
                    segments: log.segment_count(),
                }
            })
            .collect();
        TopicInfo {
            name: self.name.clone(),
            config: self.config(),
            created_ms: self.created_ms,
            partitions,
        }
    }

    /// Grows the topic to `count` partitions.
    pub(crate) fn add_partitions(&self, count: u32, now: i64) -> Result<()> {
        let mut cfg = self.config.write().unwrap_or_else(|p| p.into_inner());
        if count <= cfg.partitions {
            return Err(Error::InvalidConfig(format!(
                "topic {:?} has {} partitions; the new count must be larger, not {count}",
                self.name, cfg.partitions
            )));
        }
        let mut next = cfg.clone();
        next.partitions = count;
        next.validate()?;
        let mut parts = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        for p in cfg.partitions..count {
            let log = PartitionLog::open(
                &self.name,
                p,
                &self.dir.join(p.to_string()),
                next.log_config(self.fsync),
                now,
            )?;
            parts.push(Arc::new(Partition::new(log)));
        }
        write_json_atomic(
            &self.dir.join("topic.json"),
            &TopicMeta {
                name: self.name.clone(),
                config: next.clone(),
                created_ms: self.created_ms,
            },
        )?;
        *cfg = next;
        Ok(())
    }

    /// Appends a batch; see [`crate::Streams::produce`].
    pub(crate) fn produce(
        &self,
        records: &[ProduceRecord],
        producer: Option<ProducerSeq>,
        limits: ProduceLimits,
        now: i64,
    ) -> Result<ProduceAck> {
        let cfg = self.config();
        let parts = self.partitions();
        let n = parts.len() as u32;
        let mut total = 0usize;
        for r in records {
            let size = r.encoded_len();
            if size > limits.max_record_bytes {
                return Err(Error::RecordTooLarge {
                    size,
                    max: limits.max_record_bytes,
                });
            }
            total += size;
            if cfg.cleanup == CleanupPolicy::Compact && r.key.is_none() {
                return Err(Error::KeyRequired {
                    topic: self.name.clone(),
                });
            }
            if let Some(p) = r.partition
                && p >= n
            {
                return Err(Error::UnknownPartition {
                    topic: self.name.clone(),
                    partition: p,
                    partitions: n,
                });
            }
        }
        if total > limits.max_batch_bytes {
            return Err(Error::BatchTooLarge {
                size: total,
                max: limits.max_batch_bytes,
            });
        }
        // Partition choice: explicit, key hash, else round-robin (starting,
        // for idempotent producers, at a point derived from the producer and
        // sequence so that a retry lands on the same partitions).
        let mut rr = match producer {
            Some(ps) => {
                (hash64(ps.producer_id ^ ps.sequence.rotate_left(32)) % u64::from(n)) as u32
            }
            None => 0,
        };
        let keyless = records
            .iter()
            .filter(|r| r.partition.is_none() && r.key.is_none())
            .count() as u32;
        if producer.is_none() && keyless > 0 {
            rr = self.round_robin.fetch_add(keyless, Ordering::Relaxed) % n;
        }
        let mut assigned = Vec::with_capacity(records.len());
        let mut groups: Vec<Vec<&ProduceRecord>> = vec![Vec::new(); n as usize];
        for r in records {
            let p = match (r.partition, &r.key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, n),
                (None, None) => {
                    let p = rr % n;
                    rr = rr.wrapping_add(1);
                    p
                }
            };
            assigned.push(p);
            groups[p as usize].push(r);
        }
        let mut bases = vec![0u64; n as usize];
        let mut durability = match self.fsync {
            FsyncPolicy::EveryBatch => Durability::Fsync,
            FsyncPolicy::IntervalMs(_) => Durability::OsBuffer,
        };
        let mut duplicate = false;
        let _guard;
        let mut already: Vec<Option<u64>> = vec![None; n as usize];
        if let Some(ps) = producer {
            _guard = self.idempotent.lock().unwrap_or_else(|p| p.into_inner());
            let mut last: Option<u64> = None;
            for (i, part) in parts.iter().enumerate() {
                if let Some(st) = part.lock().producer(ps.producer_id) {
                    last = Some(last.map_or(st.seq, |l| l.max(st.seq)));
                    if st.seq == ps.sequence && st.count as usize == groups[i].len() {
                        already[i] = Some(st.base_offset);
                    }
                }
            }
            if let Some(l) = last {
                if ps.sequence < l {
                    return Err(Error::StaleSequence {
                        producer_id: ps.producer_id,
                        sequence: ps.sequence,
                        last: l,
                    });
                }
                duplicate = ps.sequence == l;
            }
        }
        let mut wrote = false;
        for (i, group) in groups.iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            if duplicate && let Some(base) = already[i] {
                bases[i] = base;
                continue;
            }
            let part = &parts[i];
            let mut log = part.lock();
            let a = log.append(group, now, producer.map(|p| (p.producer_id, p.sequence)))?;
            part.next_offset.store(log.next_offset(), Ordering::Release);
            drop(log);
            part.appended.notify_waiters();
            bases[i] = a.base_offset;
            durability = a.durability;
            wrote = true;
        }
        let mut next_in = vec![0u64; n as usize];
        let offsets = assigned
            .iter()
            .map(|&p| {
                let o = bases[p as usize] + next_in[p as usize];
                next_in[p as usize] += 1;
                RecordPosition {
                    partition: p,
                    offset: o,
                }
            })
            .collect();
        Ok(ProduceAck {
            offsets,
            durability,
            duplicate: duplicate && !wrote,
        })
    }

    /// Reads from a partition; see [`crate::Streams::fetch`].
    pub(crate) fn fetch(
        &self,
        partition: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<FetchResult> {
        let part = self.partition(partition)?;
        let log = part.lock();
        let records = log.read(offset, max_records, max_bytes)?;
        let next_offset = records.last().map_or(offset, |r| r.offset + 1);
        Ok(FetchResult {
            records,
            next_offset,
            log_start_offset: log.log_start_offset(),
            high_watermark: log.next_offset(),
        })
    }

    /// Fetches, waiting up to `wait` for data when there is none yet.
    pub(crate) async fn fetch_wait(
        &self,
        partition: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<FetchResult> {
        let part = self.partition(partition)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = part.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if part.next_offset() > offset || tokio::time::Instant::now() >= deadline {
                return self.fetch(partition, offset, max_records, max_bytes);
            }
            // Validate the offset before waiting on it.
            {
                let log = part.lock();
                if offset < log.log_start_offset() || offset > log.next_offset() {
                    drop(log);
                    return self.fetch(partition, offset, max_records, max_bytes);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.fetch(partition, offset, max_records, max_bytes);
            }
        }
    }

    /// The first offset with a timestamp >= `ts` in a partition.
    pub(crate) fn offset_for_time(&self, partition: u32, ts: i64) -> Result<u64> {
        self.partition(partition)?.lock().offset_for_time(ts)
    }

    /// Retention, compaction and interval fsync for every partition.
    pub(crate) fn maintain(&self, now: i64) -> Result<crate::log::partition::CleanupReport> {
        let mut total = crate::log::partition::CleanupReport::default();
        for part in self.partitions() {
            let mut log = part.lock();
            let r = match log.config().cleanup {
                CleanupPolicy::Delete => log.enforce_retention(now)?,
                CleanupPolicy::Compact => log.compact()?,
            };
            if let FsyncPolicy::IntervalMs(ms) = self.fsync {
                let _ = ms;
                log.sync(now)?;
            }
            total.segments += r.segments;
            total.bytes_freed += r.bytes_freed;
            total.records_removed += r.records_removed;
        }
        Ok(total)
    }

    /// Syncs every partition.
    pub(crate) fn sync(&self, now: i64) -> Result<()> {
        for part in self.partitions() {
            part.lock().sync(now)?;
        }
        Ok(())
    }
}

/// The partition for a key: CRC-32C of the key modulo the partition count
/// (stable across restarts and versions).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    crc32c::crc32c(key) % partitions.max(1)
}

fn hash64(mut x: u64) -> u64 {
    // splitmix64 finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Writes JSON to `path` atomically (temporary file, fsync, rename, fsync
/// of the directory).
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(value).map_err(|e| Error::Decode(e.to_string()))?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(&data)
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))?;
    if let Some(dir) = path.parent() {
        crate::log::partition::sync_dir(dir)?;
    }
    Ok(())
}
