//! [`Streams`]: the service object that owns every project's topics,
//! consumer groups, queues and stream jobs under one data directory, and the
//! entry point for the control plane.
//!
//! Every call takes a project id; names are looked up within that project
//! only, so a project never sees another's resources.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{Error, IoContext, Result};
use crate::group::{
    Assignment, AssignmentStrategy, DEFAULT_SESSION_TIMEOUT_MS, Group, GroupInfo, TopicPartition,
};
use crate::job::{JobRegistry, JobSpec, JobStatus};
use crate::log::FsyncPolicy;
use crate::log::partition::CleanupReport;
use crate::metering::{Metering, ResourceKind, UsageRecord};
use crate::queue::{Queue, QueueConfig, QueueInfo, ReceivedMessage, SendMessage};
use crate::record::ProduceRecord;
use crate::topic::{
    FetchResult, ProduceAck, ProduceLimits, ProducerSeq, Topic, TopicConfig, TopicInfo,
    write_json_atomic,
};

/// Service-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsConfig {
    /// Where everything is stored.
    pub data_dir: PathBuf,
    /// When topic partitions and queue journals are synced.
    pub fsync: FsyncPolicy,
    /// Largest record (encoded key + value + headers + 22 bytes).
    pub max_record_bytes: usize,
    /// Largest produce request.
    pub max_batch_bytes: usize,
}

impl StreamsConfig {
    /// Defaults: fsync at most every second, 1 MiB records, 16 MiB batches.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StreamsConfig {
            data_dir: data_dir.into(),
            fsync: FsyncPolicy::IntervalMs(1000),
            max_record_bytes: 1 << 20,
            max_batch_bytes: 16 << 20,
        }
    }
}

/// How to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Most records to return.
    pub max_records: usize,
    /// Byte budget (at least one record is returned if any is there).
    pub max_bytes: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_records: 1000,
            max_bytes: 1 << 20,
        }
    }
}

/// A member's join request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// The member's id (the client picks it, e.g. a UUID).
    pub member_id: String,
    /// Topics it reads.
    pub topics: Vec<String>,
    /// Assignment strategy (the first member's choice wins).
    pub strategy: AssignmentStrategy,
    /// Remove the member after this long without a heartbeat.
    pub session_timeout_ms: u64,
}

impl JoinGroup {
    /// A join with the default strategy and session timeout.
    pub fn new(member_id: impl Into<String>, topics: &[&str]) -> Self {
        JoinGroup {
            member_id: member_id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            strategy: AssignmentStrategy::Range,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
        }
    }
}

type Key = (String, String);

struct QueueSlot {
    queue: Mutex<Queue>,
    changed: Notify,
}

pub(crate) struct Inner {
    pub(crate) config: StreamsConfig,
    topics: RwLock<HashMap<Key, Arc<Topic>>>,
    groups: Mutex<HashMap<Key, Group>>,
    queues: RwLock<HashMap<Key, Arc<QueueSlot>>>,
    pub(crate) jobs: JobRegistry,
    pub(crate) metering: Metering,
    pub(crate) closing: AtomicBool,
    pub(crate) closed: Notify,
    /// Serializes topic and queue creation and deletion.
    admin: Mutex<()>,
}

/// The streams service: topics, consumer groups, queues and stream jobs of
/// every project, stored under one data directory. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

/// Checks a project, topic, group, queue or job name: 1 to 128 of
/// `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            what,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 128 {
        return bad("must be 1 to 128 characters");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("may only hold letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

fn key(project: &str, name: &str) -> Key {
    (project.to_string(), name.to_string())
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for e in rd {
        let e = e.ctx(|| format!("listing {}", dir.display()))?;
        if e.file_type()
            .ctx(|| format!("stat in {}", dir.display()))?
            .is_dir()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if validate_name("entry", &name).is_ok() {
                out.push((name, e.path()));
            }
        }
    }
    Ok(out)
}

impl Streams {
    /// Opens (creating) the data directory and loads every topic, group
    /// offset and queue; torn tails are repaired. Stream jobs that were
    /// running are not started until [`Streams::resume_jobs`].
    pub fn open(config: StreamsConfig) -> Result<Streams> {
        let dir = &config.data_dir;
        for sub in ["topics", "groups", "queues", "jobs"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        }
        let now = crate::now_ms();
        let mut topics = HashMap::new();
        for (project, pdir) in subdirs(&dir.join("topics"))? {
            for (name, tdir) in subdirs(&pdir)? {
                if tdir.join("topic.json").exists() {
                    topics.insert(
                        key(&project, &name),
                        Arc::new(Topic::open(&tdir, config.fsync, now)?),
                    );
                }
            }
        }
        let mut groups = HashMap::new();
        for (project, pdir) in subdirs(&dir.join("groups"))? {
            let rd = std::fs::read_dir(&pdir).ctx(|| format!("listing {}", pdir.display()))?;
            for e in rd {
                let e = e.ctx(|| format!("listing {}", pdir.display()))?;
                let fname = e.file_name().to_string_lossy().into_owned();
                if let Some(g) = fname.strip_suffix(".json") {
                    groups.insert(key(&project, g), Group::load(g, &e.path())?);
                }
            }
        }
        let fsync_queues = matches!(config.fsync, FsyncPolicy::EveryBatch);
        let mut queues = HashMap::new();
        for (project, pdir) in subdirs(&dir.join("queues"))? {
            for (name, qdir) in subdirs(&pdir)? {
                let cfg_path = qdir.join("queue.json");
                let Ok(raw) = std::fs::read(&cfg_path) else {
                    continue;
                };
                let cfg: QueueConfig =
                    serde_json::from_slice(&raw).map_err(|e| Error::Corrupt {
                        path: cfg_path.clone(),
                        reason: e.to_string(),
                    })?;
                let q = Queue::open(&name, &qdir, cfg, fsync_queues)?;
                queues.insert(
                    key(&project, &name),
                    Arc::new(QueueSlot {
                        queue: Mutex::new(q),
                        changed: Notify::new(),
                    }),
                );
            }
        }
        let jobs = JobRegistry::load(&dir.join("jobs"))?;
        Ok(Streams {
            inner: Arc::new(Inner {
                config,
                topics: RwLock::new(topics),
                groups: Mutex::new(groups),
                queues: RwLock::new(queues),
                jobs,
                metering: Metering::default(),
                closing: AtomicBool::new(false),
                closed: Notify::new(),
                admin: Mutex::new(()),
            }),
        })
    }

    /// The service configuration.
    pub fn config(&self) -> &StreamsConfig {
        &self.inner.config
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- topics

    pub(crate) fn topic(&self, project: &str, name: &str) -> Result<Arc<Topic>> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        topics
            .get(&(project.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| Error::UnknownTopic {
                topic: name.to_string(),
            })
    }

    /// Creates a topic.
    pub fn create_topic(
        &self,
        project: &str,
        name: &str,
        config: TopicConfig,
    ) -> Result<TopicInfo> {
        self.check_open()?;
        validate_name("project", project)?;
        validate_name("topic", name)?;
        config.validate()?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self.topic(project, name).is_ok() {
            return Err(Error::TopicExists {
                topic: name.to_string(),
            });
        }
        let dir = self
            .inner
            .config
            .data_dir
            .join("topics")
            .join(project)
            .join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).ctx(|| format!("removing stale {}", dir.display()))?;
        }
        let topic = Arc::new(Topic::create(
            &dir,
            name,
            config,
            self.inner.config.fsync,
            crate::now_ms(),
        )?);
        let info = topic.info();
        self.inner
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key(project, name), topic);
        Ok(info)
    }

    /// The project's topic names, sorted.
    pub fn list_topics(&self, project: &str) -> Vec<String> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = topics
            .keys()
            .filter(|(p, _)| p == project)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Describes a topic: its config and, per partition, first and next
    /// offsets and bytes.
    pub fn describe_topic(&self, project: &str, name: &str) -> Result<TopicInfo> {
        Ok(self.topic(project, name)?.info())
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, project: &str, name: &str) -> Result<()> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .inner
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(project, name))
            .ok_or_else(|| Error::UnknownTopic {
                topic: name.to_string(),
            })?;
        let dir = topic.dir().to_path_buf();
        let trash = self.inner.config.data_dir.join(format!(
            "trash-{}-{}",
            crate::now_ms(),
            std::process::id()
        ));
        std::fs::rename(&dir, &trash).ctx(|| format!("moving {} away", dir.display()))?;
        std::fs::remove_dir_all(&trash).ctx(|| format!("removing {}", trash.display()))
    }

    /// Grows a topic to `partitions` partitions (never shrinks). Keys hash
    /// to new partitions from then on.
    pub fn add_partitions(&self, project: &str, name: &str, partitions: u32) -> Result<TopicInfo> {
        self.check_open()?;
        let t = self.topic(project, name)?;
        t.add_partitions(partitions, crate::now_ms())?;
        Ok(t.info())
    }

    /// Appends records. Each record goes to its `partition` if given, else
    /// to `crc32c(key) % partitions`, else round-robin. With `producer`,
    /// a retry of the producer's last sequence returns the original offsets
    /// without writing again (`duplicate: true`).
    pub fn produce(
        &self,
        project: &str,
        topic: &str,
        records: &[ProduceRecord],
        producer: Option<ProducerSeq>,
    ) -> Result<ProduceAck> {
        self.check_open()?;
        let t = self.topic(project, topic)?;
        let limits = ProduceLimits {
            max_record_bytes: self.inner.config.max_record_bytes,
            max_batch_bytes: self.inner.config.max_batch_bytes,
        };
        let ack = t.produce(records, producer, limits, crate::now_ms())?;
        let bytes: usize = records.iter().map(|r| r.encoded_len()).sum();
        self.inner
            .metering
            .add(project, ResourceKind::Topic, topic, |c| {
                c.requests += 1;
                if !ack.duplicate {
                    c.bytes_in += bytes as u64;
                    c.records_in += records.len() as u64;
                }
            });
        Ok(ack)
    }

    fn meter_fetch(&self, project: &str, topic: &str, r: &FetchResult) {
        let bytes: usize = r.records.iter().map(|r| r.encoded_len()).sum();
        self.inner
            .metering
            .add(project, ResourceKind::Topic, topic, |c| {
                c.requests += 1;
                c.bytes_out += bytes as u64;
                c.records_out += r.records.len() as u64;
            });
    }

    /// Reads records from `offset` (without waiting). Fetching the next
    /// offset gives no records; offsets outside the retained range are
    /// [`Error::OffsetOutOfRange`] with the valid range.
    pub fn fetch(
        &self,
        project: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        opts: FetchOptions,
    ) -> Result<FetchResult> {
        let r = self.topic(project, topic)?.fetch(
            partition,
            offset,
            opts.max_records,
            opts.max_bytes,
        )?;
        self.meter_fetch(project, topic, &r);
        Ok(r)
    }

    /// Like [`Streams::fetch`], but when nothing is there yet waits up to
    /// `wait` for records to be appended (long poll).
    pub async fn fetch_wait(
        &self,
        project: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        opts: FetchOptions,
        wait: Duration,
    ) -> Result<FetchResult> {
        let t = self.topic(project, topic)?;
        let r = t
            .fetch_wait(partition, offset, opts.max_records, opts.max_bytes, wait)
            .await?;
        self.meter_fetch(project, topic, &r);
        Ok(r)
    }

    /// The first offset in a partition whose timestamp is at least `ts_ms`
    /// (the next offset when none is).
    pub fn offset_for_time(
        &self,
        project: &str,
        topic: &str,
        partition: u32,
        ts_ms: i64,
    ) -> Result<u64> {
        self.topic(project, topic)?
            .offset_for_time(partition, ts_ms)
    }

    // ---------------------------------------------------------------- groups

    fn partition_counts(&self, project: &str) -> impl Fn(&str) -> Option<u32> + '_ {
        let project = project.to_string();
        move |t: &str| self.topic(&project, t).ok().map(|t| t.config().partitions)
    }

    fn with_group<T>(
        &self,
        project: &str,
        group: &str,
        create: bool,
        f: impl FnOnce(&mut Group) -> Result<T>,
    ) -> Result<T> {
        validate_name("project", project)?;
        validate_name("group", group)?;
        let mut groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(project, group);
        if !groups.contains_key(&k) {
            if !create {
                return Err(Error::UnknownGroup {
                    group: group.to_string(),
                });
            }
            let path = self
                .inner
                .config
                .data_dir
                .join("groups")
                .join(project)
                .join(format!("{group}.json"));
            groups.insert(k.clone(), Group::load(group, &path)?);
        }
        let g = groups.get_mut(&k).ok_or_else(|| Error::UnknownGroup {
            group: group.to_string(),
        })?;
        f(g)
    }

    /// Joins (or rejoins) a consumer group; answers the member's partitions
    /// and the generation. A new member or a change of topics rebalances
    /// the group.
    pub fn join_group(&self, project: &str, group: &str, join: JoinGroup) -> Result<Assignment> {
        self.check_open()?;
        validate_name("member", &join.member_id)?;
        for t in &join.topics {
            self.topic(project, t)?;
        }
        let counts = self.partition_counts(project);
        self.with_group(project, group, true, |g| {
            Ok(g.join(
                &join.member_id,
                join.topics,
                join.strategy,
                join.session_timeout_ms,
                crate::now_ms(),
                &counts,
            ))
        })
    }

    /// Records a member's heartbeat and answers its current assignment (a
    /// new generation means the group rebalanced).
    pub fn heartbeat(&self, project: &str, group: &str, member_id: &str) -> Result<Assignment> {
        let counts = self.partition_counts(project);
        self.with_group(project, group, false, |g| {
            g.heartbeat(member_id, crate::now_ms(), &counts)
        })
    }

    /// Removes a member now (rather than after its session timeout).
    pub fn leave_group(&self, project: &str, group: &str, member_id: &str) -> Result<()> {
        let counts = self.partition_counts(project);
        self.with_group(project, group, false, |g| g.leave(member_id, &counts))
    }

    /// Commits offsets (each the next offset to read), durably. With
    /// `member = Some((id, generation))` the commit is refused unless the
    /// generation is current and the partitions are the member's.
    pub fn commit_offsets(
        &self,
        project: &str,
        group: &str,
        member: Option<(&str, u64)>,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        for (tp, _) in offsets {
            self.topic(project, &tp.topic)?.partition(tp.partition)?;
        }
        self.with_group(project, group, true, |g| g.commit(member, offsets))
    }

    /// The group's committed offset for a partition.
    pub fn committed_offset(
        &self,
        project: &str,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>> {
        self.with_group(project, group, false, |g| Ok(g.committed(topic, partition)))
    }

    /// Describes a group: members, assignment, committed offsets and lag
    /// per partition.
    pub fn describe_group(&self, project: &str, group: &str) -> Result<GroupInfo> {
        let counts = self.partition_counts(project);
        let project_s = project.to_string();
        let hw = move |t: &str, p: u32| {
            let topic = self.topic(&project_s, t).ok()?;
            let part = topic.partition(p).ok()?;
            let log = part.lock();
            Some((log.log_start_offset(), log.next_offset()))
        };
        let now = crate::now_ms();
        self.with_group(project, group, false, |g| {
            g.expire(now, &counts);
            Ok(g.info(now, &counts, &hw))
        })
    }

    /// The project's group ids (those with members or committed offsets).
    pub fn list_groups(&self, project: &str) -> Vec<String> {
        let groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = groups
            .iter()
            .filter(|((p, _), g)| p == project && !g.is_empty())
            .map(|((_, n), _)| n.clone())
            .collect();
        v.sort();
        v
    }

    // ---------------------------------------------------------------- queues

    fn queue(&self, project: &str, name: &str) -> Result<Arc<QueueSlot>> {
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        queues
            .get(&(project.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| Error::UnknownQueue {
                queue: name.to_string(),
            })
    }

    /// Creates a queue. A redrive policy's dead-letter queue must exist.
    pub fn create_queue(
        &self,
        project: &str,
        name: &str,
        config: QueueConfig,
    ) -> Result<QueueInfo> {
        self.check_open()?;
        validate_name("project", project)?;
        validate_name("queue", name)?;
        config.validate()?;
        if let Some(r) = &config.redrive {
            if r.dead_letter_queue == name {
                return Err(Error::InvalidConfig(
                    "a queue cannot be its own dead-letter queue".into(),
                ));
            }
            self.queue(project, &r.dead_letter_queue)?;
        }
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self.queue(project, name).is_ok() {
            return Err(Error::QueueExists {
                queue: name.to_string(),
            });
        }
        let dir = self
            .inner
            .config
            .data_dir
            .join("queues")
            .join(project)
            .join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).ctx(|| format!("removing stale {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        write_json_atomic(&dir.join("queue.json"), &config)?;
        let q = Queue::open(
            name,
            &dir,
            config,
            matches!(self.inner.config.fsync, FsyncPolicy::EveryBatch),
        )?;
        let info = q.info(crate::now_ms());
        self.inner
            .queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key(project, name),
                Arc::new(QueueSlot {
                    queue: Mutex::new(q),
                    changed: Notify::new(),
                }),
            );
        Ok(info)
    }

    /// The project's queue names, sorted.
    pub fn list_queues(&self, project: &str) -> Vec<String> {
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = queues
            .keys()
            .filter(|(p, _)| p == project)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Describes a queue: settings and message counts.
    pub fn describe_queue(&self, project: &str, name: &str) -> Result<QueueInfo> {
        let slot = self.queue(project, name)?;
        let q = slot.queue.lock().unwrap_or_else(|p| p.into_inner());
        Ok(q.info(crate::now_ms()))
    }

    /// Deletes a queue and its messages.
    pub fn delete_queue(&self, project: &str, name: &str) -> Result<()> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.inner
            .queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(project, name))
            .ok_or_else(|| Error::UnknownQueue {
                queue: name.to_string(),
            })?;
        let dir = self
            .inner
            .config
            .data_dir
            .join("queues")
            .join(project)
            .join(name);
        std::fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))
    }

    /// Sends messages; answers their ids.
    pub fn send(
        &self,
        project: &str,
        queue: &str,
        messages: &[SendMessage],
    ) -> Result<Vec<String>> {
        self.check_open()?;
        let slot = self.queue(project, queue)?;
        let ids = slot
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(messages, crate::now_ms())?;
        slot.changed.notify_waiters();
        let bytes: usize = messages.iter().map(|m| m.body.len()).sum();
        self.inner
            .metering
            .add(project, ResourceKind::Queue, queue, |c| {
                c.requests += 1;
                c.bytes_in += bytes as u64;
                c.records_in += messages.len() as u64;
            });
        Ok(ids)
    }

    /// Receives up to `max` messages now (no waiting), hiding them for
    /// `visibility_ms` (the queue's default when `None`). Messages that
    /// reached the redrive limit are moved to the dead-letter queue instead.
    pub fn receive_now(
        &self,
        project: &str,
        queue: &str,
        max: usize,
        visibility_ms: Option<u64>,
    ) -> Result<Vec<ReceivedMessage>> {
        self.check_open()?;
        let slot = self.queue(project, queue)?;
        let now = crate::now_ms();
        let (got, redrive) = slot
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .receive(max.clamp(1, 10_000), visibility_ms, now)?;
        if !redrive.is_empty() {
            // Send to each DLQ first, then forget in the source.
            let mut by_dlq: HashMap<String, Vec<_>> = HashMap::new();
            for r in redrive {
                by_dlq.entry(r.dlq.clone()).or_default().push(r);
            }
            for (dlq, moves) in by_dlq {
                let target = self.queue(project, &dlq)?;
                target
                    .queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send_with(moves.iter().map(|m| (&m.message, m.sent_ms, 0)), now)?;
                target.changed.notify_waiters();
                let ids: Vec<u64> = moves.iter().map(|m| m.id).collect();
                slot.queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .forget(&ids)?;
            }
        }
        let bytes: usize = got.iter().map(|m| m.body.len()).sum();
        self.inner
            .metering
            .add(project, ResourceKind::Queue, queue, |c| {
                c.requests += 1;
                c.bytes_out += bytes as u64;
                c.records_out += got.len() as u64;
            });
        Ok(got)
    }

    /// Receives up to `max` messages, waiting up to `wait` for one to be
    /// visible (long poll; SQS's WaitTimeSeconds).
    pub async fn receive(
        &self,
        project: &str,
        queue: &str,
        max: usize,
        visibility_ms: Option<u64>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let slot = self.queue(project, queue)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = slot.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.receive_now(project, queue, max, visibility_ms)?;
            let now_i = tokio::time::Instant::now();
            if !got.is_empty() || now_i >= deadline {
                return Ok(got);
            }
            let now = crate::now_ms();
            let next = slot
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_visible_ms(now);
            let until = match next {
                Some(t) => deadline.min(now_i + Duration::from_millis((t - now).max(1) as u64)),
                None => deadline,
            };
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    /// Deletes a received message by its receipt handle.
    pub fn delete_message(&self, project: &str, queue: &str, receipt_handle: &str) -> Result<()> {
        let slot = self.queue(project, queue)?;
        slot.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delete(receipt_handle)?;
        self.inner
            .metering
            .add(project, ResourceKind::Queue, queue, |c| c.requests += 1);
        Ok(())
    }

    /// Sets an in-flight message's visibility timeout to `timeout_ms` from
    /// now (0 makes it visible again at once).
    pub fn change_visibility(
        &self,
        project: &str,
        queue: &str,
        receipt_handle: &str,
        timeout_ms: u64,
    ) -> Result<()> {
        let slot = self.queue(project, queue)?;
        slot.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .change_visibility(receipt_handle, timeout_ms, crate::now_ms())?;
        slot.changed.notify_waiters();
        self.inner
            .metering
            .add(project, ResourceKind::Queue, queue, |c| c.requests += 1);
        Ok(())
    }

    // ----------------------------------------------------------- maintenance

    /// One maintenance pass: retention and compaction of every topic,
    /// interval fsyncs, expired queue messages and journal rewrites.
    pub fn maintain(&self) -> Result<CleanupReport> {
        let now = crate::now_ms();
        let topics: Vec<Arc<Topic>> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut total = CleanupReport::default();
        for t in topics {
            let r = t.maintain(now)?;
            total.segments += r.segments;
            total.bytes_freed += r.bytes_freed;
            total.records_removed += r.records_removed;
        }
        let queues: Vec<Arc<QueueSlot>> = self
            .inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for q in queues {
            let mut q = q.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.maintain(now)?;
            q.sync()?;
        }
        Ok(total)
    }

    /// Spawns a task that runs [`Streams::maintain`] every `every` until
    /// shutdown. Needs a tokio runtime.
    pub fn spawn_maintenance(&self, every: Duration) -> Result<tokio::task::JoinHandle<()>> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::NoRuntime("spawn_maintenance"))?;
        let me = self.clone();
        Ok(rt.spawn(async move {
            loop {
                let closed = me.inner.closed.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if me.inner.closing.load(Ordering::Acquire) {
                    return;
                }
                tokio::select! {
                    _ = &mut closed => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let m = me.clone();
                let _ = tokio::task::spawn_blocking(move || m.maintain()).await;
            }
        }))
    }

    /// Usage counters per project and resource, with current storage bytes
    /// and partition counts of topics and queues.
    pub fn usage_snapshot(&self) -> Vec<UsageRecord> {
        let mut out: Vec<UsageRecord> = self
            .inner
            .metering
            .snapshot()
            .into_iter()
            .map(|(project, kind, name, counters)| UsageRecord {
                project,
                kind,
                name,
                counters,
                storage_bytes: 0,
                partitions: 0,
            })
            .collect();
        let topics: Vec<(Key, Arc<Topic>)> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        for ((project, name), t) in topics {
            let info = t.info();
            let bytes: u64 = info.partitions.iter().map(|p| p.bytes).sum();
            let parts = info.partitions.len() as u32;
            match out
                .iter_mut()
                .find(|u| u.kind == ResourceKind::Topic && u.project == project && u.name == name)
            {
                Some(u) => {
                    u.storage_bytes = bytes;
                    u.partitions = parts;
                }
                None => out.push(UsageRecord {
                    project,
                    kind: ResourceKind::Topic,
                    name,
                    counters: Default::default(),
                    storage_bytes: bytes,
                    partitions: parts,
                }),
            }
        }
        let queues: Vec<(Key, Arc<QueueSlot>)> = self
            .inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, q)| (k.clone(), q.clone()))
            .collect();
        for ((project, name), q) in queues {
            let bytes = q
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .info(0)
                .journal_bytes;
            match out
                .iter_mut()
                .find(|u| u.kind == ResourceKind::Queue && u.project == project && u.name == name)
            {
                Some(u) => u.storage_bytes = bytes,
                None => out.push(UsageRecord {
                    project,
                    kind: ResourceKind::Queue,
                    name,
                    counters: Default::default(),
                    storage_bytes: bytes,
                    partitions: 0,
                }),
            }
        }
        out
    }

    // ------------------------------------------------------------------ jobs

    /// Creates a stream job and starts its tasks (one per input partition).
    /// Creates the output topic (with the input's partition count) and the
    /// changelog topic when missing.
    pub async fn start_job(&self, project: &str, spec: JobSpec) -> Result<JobStatus> {
        self.check_open()?;
        crate::job::runner::start(self, project, spec, true).await
    }

    /// Restarts every job that was running when the service last stopped
    /// (or crashed); each resumes from its last checkpoint.
    pub async fn resume_jobs(&self) -> Result<Vec<String>> {
        self.check_open()?;
        crate::job::runner::resume_all(self).await
    }

    /// Stops a job's tasks (after their current batch); its state and
    /// checkpoint stay, and a later start with the same spec resumes.
    pub async fn stop_job(&self, project: &str, name: &str) -> Result<JobStatus> {
        crate::job::runner::stop(self, project, name).await
    }

    /// Stops (if running) and forgets a job; its output and changelog topics
    /// stay.
    pub async fn delete_job(&self, project: &str, name: &str) -> Result<()> {
        crate::job::runner::stop(self, project, name).await?;
        self.inner.jobs.remove(project, name)
    }

    /// A job's spec, state, and per-task progress and lag.
    pub fn job_status(&self, project: &str, name: &str) -> Result<JobStatus> {
        crate::job::runner::status(self, project, name)
    }

    /// The project's job names, sorted.
    pub fn list_jobs(&self, project: &str) -> Vec<String> {
        self.inner.jobs.names(project)
    }

    /// Stops accepting requests, stops every job after its current batch
    /// (checkpointing it), syncs every log and journal.
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.closed.notify_waiters();
        crate::job::runner::stop_all(self).await;
        let now = crate::now_ms();
        let topics: Vec<Arc<Topic>> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for t in topics {
            t.sync(now)?;
        }
        let queues: Vec<Arc<QueueSlot>> = self
            .inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for q in queues {
            q.queue.lock().unwrap_or_else(|p| p.into_inner()).sync()?;
        }
        Ok(())
    }
}
