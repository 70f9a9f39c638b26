//! Consumer groups: members join with the topics they read and get
//! partitions (range or round-robin) under a generation number; members
//! heartbeat, and one silent for longer than its session timeout is
//! removed and the partitions reassigned. Committed offsets are durable
//! (`groups/{project}/{group}.json`, written atomically per commit).
//!
//! The protocol is deliberately small: a join or a change in membership or
//! in partition counts bumps the generation and recomputes every member's
//! assignment at once (there is no separate sync phase); members learn the
//! new assignment from their next heartbeat. Commits that carry a member and
//! generation are refused when the generation is old or the partition is
//! no longer the member's, so a consumer that lost a partition cannot move
//! its offset; the new owner resumes from the last commit (at-least-once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::topic::write_json_atomic;

/// How partitions are spread over members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentStrategy {
    /// Per topic, contiguous ranges of partitions to members in id order.
    #[default]
    Range,
    /// All subscribed partitions dealt to members in turn.
    RoundRobin,
}

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

/// A member's view of the group after a join or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The group's generation: it changes on every rebalance.
    pub generation: u64,
    /// The member.
    pub member_id: String,
    /// The partitions this member owns in this generation.
    pub partitions: Vec<TopicPartition>,
}

/// One member as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// Member id.
    pub member_id: String,
    /// Topics it subscribed to.
    pub topics: Vec<String>,
    /// Partitions it owns.
    pub partitions: Vec<TopicPartition>,
    /// Milliseconds since its last join or heartbeat.
    pub idle_ms: i64,
    /// Its session timeout.
    pub session_timeout_ms: u64,
}

/// Committed offset and lag of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset (the next record the group will read), if any.
    pub committed: Option<u64>,
    /// The partition's next offset.
    pub high_watermark: u64,
    /// Records not yet consumed: `high_watermark - committed` (from the log
    /// start when nothing is committed).
    pub lag: u64,
}

/// What `describe_group` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// Group id.
    pub group: String,
    /// Current generation.
    pub generation: u64,
    /// Assignment strategy.
    pub strategy: AssignmentStrategy,
    /// Live members.
    pub members: Vec<MemberInfo>,
    /// Offsets and lag for every partition of the subscribed or committed
    /// topics.
    pub partitions: Vec<PartitionLag>,
}

#[derive(Debug, Clone)]
struct Member {
    topics: Vec<String>,
    last_seen_ms: i64,
    session_timeout_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GroupFile {
    strategy: AssignmentStrategy,
    offsets: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Looks up a partition's (log start, next offset).
pub(crate) type HighWatermarks<'a> = dyn Fn(&str, u32) -> Option<(u64, u64)> + 'a;

/// Default session timeout.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;

/// One consumer group's state.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    path: PathBuf,
    strategy: AssignmentStrategy,
    generation: u64,
    members: BTreeMap<String, Member>,
    assignment: BTreeMap<String, Vec<TopicPartition>>,
    counts_at_rebalance: BTreeMap<String, u32>,
    offsets: BTreeMap<String, BTreeMap<u32, u64>>,
}

impl Group {
    /// Loads the group's committed offsets, or starts an empty group.
    pub(crate) fn load(id: &str, path: &Path) -> Result<Self> {
        let file: GroupFile = match std::fs::read(path) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| Error::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => GroupFile::default(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(Group {
            id: id.to_string(),
            path: path.to_path_buf(),
            strategy: file.strategy,
            generation: 0,
            members: BTreeMap::new(),
            assignment: BTreeMap::new(),
            counts_at_rebalance: BTreeMap::new(),
            offsets: file.offsets,
        })
    }

    fn persist(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let file = GroupFile {
            strategy: self.strategy,
            offsets: self.offsets.clone(),
        };
        write_json_atomic(&self.path, &file)
    }

    fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect()
    }

    fn assignment_of(&self, member: &str) -> Assignment {
        Assignment {
            generation: self.generation,
            member_id: member.to_string(),
            partitions: self.assignment.get(member).cloned().unwrap_or_default(),
        }
    }

    /// Recomputes every member's partitions and bumps the generation.
    fn rebalance(&mut self, counts: &dyn Fn(&str) -> Option<u32>) {
        self.generation += 1;
        self.assignment = self
            .members
            .keys()
            .map(|m| (m.clone(), Vec::new()))
            .collect();
        self.counts_at_rebalance.clear();
        let topics = self.subscribed_topics();
        for t in &topics {
            self.counts_at_rebalance
                .insert(t.clone(), counts(t).unwrap_or(0));
        }
        match self.strategy {
            AssignmentStrategy::Range => {
                for t in &topics {
                    let n = self.counts_at_rebalance.get(t).copied().unwrap_or(0);
                    let subs: Vec<&String> = self
                        .members
                        .iter()
                        .filter(|(_, m)| m.topics.contains(t))
                        .map(|(id, _)| id)
                        .collect();
                    if subs.is_empty() {
                        continue;
                    }
                    let k = subs.len() as u32;
                    let (per, extra) = (n / k, n % k);
                    let mut p = 0;
                    for (i, id) in subs.iter().enumerate() {
                        let take = per + u32::from((i as u32) < extra);
                        let list = self.assignment.entry((*id).clone()).or_default();
                        for q in p..p + take {
                            list.push(TopicPartition {
                                topic: t.clone(),
                                partition: q,
                            });
                        }
                        p += take;
                    }
                }
            }
            AssignmentStrategy::RoundRobin => {
                let all: Vec<TopicPartition> = topics
                    .iter()
                    .flat_map(|t| {
                        let n = self.counts_at_rebalance.get(t).copied().unwrap_or(0);
                        (0..n).map(move |p| TopicPartition {
                            topic: t.clone(),
                            partition: p,
                        })
                    })
                    .collect();
                let ids: Vec<String> = self.members.keys().cloned().collect();
                let mut i = 0usize;
                for tp in all {
                    // Next member (in turn) subscribed to this topic.
                    for _ in 0..ids.len() {
                        let id = &ids[i % ids.len()];
                        i += 1;
                        if self.members[id].topics.contains(&tp.topic) {
                            self.assignment.entry(id.clone()).or_default().push(tp);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Removes members whose session expired; rebalances when any was, or
    /// when a subscribed topic's partition count changed. Returns whether
    /// it rebalanced.
    pub(crate) fn expire(&mut self, now: i64, counts: &dyn Fn(&str) -> Option<u32>) -> bool {
        let before = self.members.len();
        self.members
            .retain(|_, m| now.saturating_sub(m.last_seen_ms) <= m.session_timeout_ms as i64);
        let counts_changed = self
            .counts_at_rebalance
            .iter()
            .any(|(t, &n)| counts(t).unwrap_or(0) != n);
        if self.members.len() != before || counts_changed {
            self.rebalance(counts);
            return true;
        }
        false
    }

    /// Adds (or refreshes) a member; rebalances when it is new or its topics
    /// changed.
    pub(crate) fn join(
        &mut self,
        member: &str,
        topics: Vec<String>,
        strategy: AssignmentStrategy,
        session_timeout_ms: u64,
        now: i64,
        counts: &dyn Fn(&str) -> Option<u32>,
    ) -> Assignment {
        self.expire(now, counts);
        let mut topics = topics;
        topics.sort();
        topics.dedup();
        let changed = self.members.get(member).is_none_or(|m| m.topics != topics);
        if self.members.is_empty() {
            self.strategy = strategy;
        }
        self.members.insert(
            member.to_string(),
            Member {
                topics,
                last_seen_ms: now,
                session_timeout_ms,
            },
        );
        if changed {
            self.rebalance(counts);
        }
        self.assignment_of(member)
    }

    /// Records a heartbeat and answers the member's current assignment.
    pub(crate) fn heartbeat(
        &mut self,
        member: &str,
        now: i64,
        counts: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Assignment> {
        self.expire(now, counts);
        let m = self
            .members
            .get_mut(member)
            .ok_or_else(|| Error::UnknownMember {
                group: self.id.clone(),
                member: member.to_string(),
            })?;
        m.last_seen_ms = now;
        Ok(self.assignment_of(member))
    }

    /// Removes a member at its request.
    pub(crate) fn leave(
        &mut self,
        member: &str,
        counts: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<()> {
        if self.members.remove(member).is_none() {
            return Err(Error::UnknownMember {
                group: self.id.clone(),
                member: member.to_string(),
            });
        }
        self.rebalance(counts);
        Ok(())
    }

    /// Commits offsets (each the next offset to read). With `member`, the
    /// generation must be current and the partitions the member's own.
    pub(crate) fn commit(
        &mut self,
        member: Option<(&str, u64)>,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        if let Some((id, generation)) = member {
            let owned = self
                .assignment
                .get(id)
                .ok_or_else(|| Error::UnknownMember {
                    group: self.id.clone(),
                    member: id.to_string(),
                })?;
            if generation != self.generation {
                return Err(Error::IllegalGeneration {
                    group: self.id.clone(),
                    generation,
                    current: self.generation,
                });
            }
            if let Some((tp, _)) = offsets.iter().find(|(tp, _)| !owned.contains(tp)) {
                return Err(Error::InvalidConfig(format!(
                    "member {id:?} of group {:?} does not own {} partition {} in generation {generation}",
                    self.id, tp.topic, tp.partition
                )));
            }
        }
        for (tp, off) in offsets {
            self.offsets
                .entry(tp.topic.clone())
                .or_default()
                .insert(tp.partition, *off);
        }
        self.persist()
    }

    /// The committed offset of a partition.
    pub(crate) fn committed(&self, topic: &str, partition: u32) -> Option<u64> {
        self.offsets
            .get(topic)
            .and_then(|m| m.get(&partition))
            .copied()
    }

    /// Describes the group; `hw` gives a partition's (log start, next
    /// offset), `counts` a topic's partition count.
    pub(crate) fn info(
        &self,
        now: i64,
        counts: &dyn Fn(&str) -> Option<u32>,
        hw: &HighWatermarks<'_>,
    ) -> GroupInfo {
        let members = self
            .members
            .iter()
            .map(|(id, m)| MemberInfo {
                member_id: id.clone(),
                topics: m.topics.clone(),
                partitions: self.assignment.get(id).cloned().unwrap_or_default(),
                idle_ms: now.saturating_sub(m.last_seen_ms),
                session_timeout_ms: m.session_timeout_ms,
            })
            .collect();
        let mut topics = self.subscribed_topics();
        topics.extend(self.offsets.keys().cloned());
        let mut partitions = Vec::new();
        for t in topics {
            for p in 0..counts(&t).unwrap_or(0) {
                let Some((start, next)) = hw(&t, p) else {
                    continue;
                };
                let committed = self.committed(&t, p);
                let from = committed.unwrap_or(start).max(start);
                partitions.push(PartitionLag {
                    topic: t.clone(),
                    partition: p,
                    committed,
                    high_watermark: next,
                    lag: next.saturating_sub(from),
                });
            }
        }
        GroupInfo {
            group: self.id.clone(),
            generation: self.generation,
            strategy: self.strategy,
            members,
            partitions,
        }
    }

    /// Whether the group has neither members nor offsets.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.offsets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four(_: &str) -> Option<u32> {
        Some(4)
    }

    #[test]
    fn range_and_round_robin_cover_every_partition_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        for strategy in [AssignmentStrategy::Range, AssignmentStrategy::RoundRobin] {
            let mut g = Group::load("g", &dir.path().join("g.json")).expect("load");
            for (i, m) in ["a", "b", "c"].iter().enumerate() {
                g.join(
                    m,
                    vec!["t".into(), "u".into()],
                    strategy,
                    1000,
                    i as i64,
                    &four,
                );
            }
            assert_eq!(g.generation, 3);
            let mut all: Vec<TopicPartition> = g.assignment.values().flatten().cloned().collect();
            all.sort();
            assert_eq!(all.len(), 8);
            all.dedup();
            assert_eq!(all.len(), 8);
        }
    }

    #[test]
    fn session_timeout_reassigns_and_stale_commits_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.json");
        let mut g = Group::load("g", &path).expect("load");
        let a = g.join(
            "a",
            vec!["t".into()],
            AssignmentStrategy::Range,
            100,
            0,
            &four,
        );
        let b = g.join(
            "b",
            vec!["t".into()],
            AssignmentStrategy::Range,
            100,
            0,
            &four,
        );
        assert_eq!(b.partitions.len(), 2);
        assert!(matches!(
            g.commit(
                Some(("a", a.generation)),
                &[(
                    TopicPartition {
                        topic: "t".into(),
                        partition: 0
                    },
                    5
                )]
            ),
            Err(Error::IllegalGeneration { .. })
        ));
        // b keeps heartbeating, a goes silent.
        g.heartbeat("b", 80, &four).expect("hb");
        let b2 = g.heartbeat("b", 150, &four).expect("hb");
        assert_eq!(b2.partitions.len(), 4);
        assert!(b2.generation > b.generation);
        assert!(matches!(
            g.heartbeat("a", 150, &four),
            Err(Error::UnknownMember { .. })
        ));
        g.commit(
            Some(("b", b2.generation)),
            &[(
                TopicPartition {
                    topic: "t".into(),
                    partition: 3,
                },
                9,
            )],
        )
        .expect("commit");
        let g2 = Group::load("g", &path).expect("reload");
        assert_eq!(g2.committed("t", 3), Some(9));
    }
}
