//! SQS-style queues: send (with delay), receive up to N with a visibility
//! timeout (long poll in [`crate::Streams::receive`]), delete by receipt
//! handle, change visibility, redrive to a dead-letter queue after
//! `max_receive_count` receives, retention.
//!
//! State is in memory and every change is first written to the queue's
//! [`journal`]; on open the journal is replayed, so a restart loses no
//! message and keeps receive counts and in-flight visibility: a message
//! received before a crash stays hidden until its visibility timeout ends,
//! exactly as without the crash. Moving a message to its dead-letter queue
//! writes the DLQ's send before the source's delete, so a crash between
//! the two can leave a copy in both (at-least-once), never in neither.

pub mod journal;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use journal::{Entry, Journal};

/// Where and when a queue's messages go after too many receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedrivePolicy {
    /// The dead-letter queue's name (same project).
    pub dead_letter_queue: String,
    /// A message received this many times without being deleted is moved
    /// on its next receive.
    pub max_receive_count: u32,
}

/// A queue's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Default visibility timeout (ms), 0..=12 h. Default 30 s.
    #[serde(default = "default_visibility")]
    pub visibility_timeout_ms: u64,
    /// Default delay before a sent message is visible (ms), 0..=15 min.
    #[serde(default)]
    pub delay_ms: u64,
    /// Messages older than this are dropped (ms), 60 s..=14 days. Default
    /// 4 days.
    #[serde(default = "default_retention")]
    pub retention_ms: u64,
    /// Largest body in bytes, 1..=1 MiB. Default 256 KiB.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Optional dead-letter redrive.
    #[serde(default)]
    pub redrive: Option<RedrivePolicy>,
}

fn default_visibility() -> u64 {
    30_000
}
fn default_retention() -> u64 {
    4 * 24 * 3600 * 1000
}
fn default_max_message() -> usize {
    256 * 1024
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout_ms: default_visibility(),
            delay_ms: 0,
            retention_ms: default_retention(),
            max_message_bytes: default_max_message(),
            redrive: None,
        }
    }
}

impl QueueConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.visibility_timeout_ms > 12 * 3600 * 1000 {
            return bad(format!(
                "visibility_timeout_ms must be at most 43200000, not {}",
                self.visibility_timeout_ms
            ));
        }
        if self.delay_ms > 15 * 60 * 1000 {
            return bad(format!(
                "delay_ms must be at most 900000, not {}",
                self.delay_ms
            ));
        }
        if !(1000..=14 * 24 * 3600 * 1000).contains(&self.retention_ms) {
            return bad(format!(
                "retention_ms must be 1000..=1209600000, not {}",
                self.retention_ms
            ));
        }
        if !(1..=1 << 20).contains(&self.max_message_bytes) {
            return bad(format!(
                "max_message_bytes must be 1..=1048576, not {}",
                self.max_message_bytes
            ));
        }
        if let Some(r) = &self.redrive
            && r.max_receive_count == 0
        {
            return bad("redrive max_receive_count must be at least 1".into());
        }
        Ok(())
    }
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The body (text, as in SQS).
    pub body: String,
    /// Delay before it can be received (ms); the queue's default when unset.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Message attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedMessage {
    /// The message id (hex).
    pub message_id: String,
    /// The handle to delete it or change its visibility with; valid until
    /// the message is received again.
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it was sent (ms).
    pub sent_ms: i64,
}

/// Counts shown by `describe_queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueInfo {
    /// Queue name.
    pub name: String,
    /// Settings.
    pub config: QueueConfig,
    /// Messages that can be received now.
    pub visible: usize,
    /// Messages received and not yet deleted nor visible again.
    pub in_flight: usize,
    /// Messages sent with a delay that has not ended.
    pub delayed: usize,
    /// Journal size in bytes.
    pub journal_bytes: u64,
}

#[derive(Debug, Clone)]
struct Message {
    body: String,
    attributes: BTreeMap<String, String>,
    sent_ms: i64,
    visible_ms: i64,
    receive_count: u32,
}

/// A message on its way to a dead-letter queue (the caller sends it there,
/// then calls [`Queue::forget`]).
#[derive(Debug, Clone)]
pub(crate) struct Redrive {
    pub(crate) id: u64,
    pub(crate) dlq: String,
    pub(crate) message: SendMessage,
    pub(crate) sent_ms: i64,
}

/// One queue.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) config: QueueConfig,
    journal: Journal,
    messages: BTreeMap<u64, Message>,
    /// (visible_ms, id) of every message.
    schedule: BTreeSet<(i64, u64)>,
    next_id: u64,
}

impl Queue {
    /// Opens a queue from its journal.
    pub(crate) fn open(name: &str, dir: &Path, config: QueueConfig, fsync: bool) -> Result<Self> {
        let (journal, entries) = Journal::open(&dir.join("journal"), fsync)?;
        let mut q = Queue {
            name: name.to_string(),
            config,
            journal,
            messages: BTreeMap::new(),
            schedule: BTreeSet::new(),
            next_id: 1,
        };
        for e in entries {
            q.apply(e);
        }
        Ok(q)
    }

    fn apply(&mut self, e: Entry) {
        match e {
            Entry::Send {
                id,
                body,
                attributes,
                sent_ms,
                visible_ms,
                receive_count,
            } => {
                self.next_id = self.next_id.max(id + 1);
                if let Some(old) = self.messages.insert(
                    id,
                    Message {
                        body,
                        attributes,
                        sent_ms,
                        visible_ms,
                        receive_count,
                    },
                ) {
                    self.schedule.remove(&(old.visible_ms, id));
                }
                self.schedule.insert((visible_ms, id));
            }
            Entry::Receive {
                id,
                visible_ms,
                receive_count,
            } => {
                if let Some(m) = self.messages.get_mut(&id) {
                    self.schedule.remove(&(m.visible_ms, id));
                    m.visible_ms = visible_ms;
                    m.receive_count = receive_count;
                    self.schedule.insert((visible_ms, id));
                }
            }
            Entry::Visibility { id, visible_ms } => {
                if let Some(m) = self.messages.get_mut(&id) {
                    self.schedule.remove(&(m.visible_ms, id));
                    m.visible_ms = visible_ms;
                    self.schedule.insert((visible_ms, id));
                }
            }
            Entry::Delete { id } => {
                if let Some(m) = self.messages.remove(&id) {
                    self.schedule.remove(&(m.visible_ms, id));
                }
            }
        }
    }

    fn write(&mut self, entries: Vec<Entry>) -> Result<()> {
        self.journal.append(&entries)?;
        for e in entries {
            self.apply(e);
        }
        Ok(())
    }

    /// Sends messages; returns their ids.
    pub(crate) fn send(&mut self, msgs: &[SendMessage], now: i64) -> Result<Vec<String>> {
        self.send_with(msgs.iter().map(|m| (m, now, 0)), now)
    }

    /// Sends messages with explicit first-sent times and receive counts
    /// (for redrive).
    pub(crate) fn send_with<'a>(
        &mut self,
        msgs: impl Iterator<Item = (&'a SendMessage, i64, u32)>,
        now: i64,
    ) -> Result<Vec<String>> {
        let mut entries = Vec::new();
        let mut ids = Vec::new();
        for (id, (m, sent_ms, receive_count)) in (self.next_id..).zip(msgs) {
            if m.body.len() > self.config.max_message_bytes {
                return Err(Error::RecordTooLarge {
                    size: m.body.len(),
                    max: self.config.max_message_bytes,
                });
            }
            let delay = m.delay_ms.unwrap_or(self.config.delay_ms);
            if delay > 15 * 60 * 1000 {
                return Err(Error::InvalidConfig(format!(
                    "delay_ms must be at most 900000, not {delay}"
                )));
            }
            entries.push(Entry::Send {
                id,
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                sent_ms,
                visible_ms: now + delay as i64,
                receive_count,
            });
            ids.push(format!("{id:016x}"));
        }
        self.write(entries)?;
        Ok(ids)
    }

    /// Receives up to `max` visible messages, hiding them for `visibility`
    /// ms. Messages past retention are dropped; messages past the redrive
    /// limit are returned in the second list for the caller to move.
    pub(crate) fn receive(
        &mut self,
        max: usize,
        visibility_ms: Option<u64>,
        now: i64,
    ) -> Result<(Vec<ReceivedMessage>, Vec<Redrive>)> {
        let vt = visibility_ms.unwrap_or(self.config.visibility_timeout_ms) as i64;
        let mut out = Vec::new();
        let mut redrive = Vec::new();
        let mut entries = Vec::new();
        let due: Vec<u64> = self
            .schedule
            .range(..(now + 1, 0))
            .map(|&(_, id)| id)
            .collect();
        for id in due {
            if out.len() >= max {
                break;
            }
            let Some(m) = self.messages.get(&id) else {
                continue;
            };
            if now.saturating_sub(m.sent_ms) > self.config.retention_ms as i64 {
                entries.push(Entry::Delete { id });
                continue;
            }
            if let Some(r) = &self.config.redrive
                && m.receive_count >= r.max_receive_count
            {
                redrive.push(Redrive {
                    id,
                    dlq: r.dead_letter_queue.clone(),
                    message: SendMessage {
                        body: m.body.clone(),
                        delay_ms: Some(0),
                        attributes: m.attributes.clone(),
                    },
                    sent_ms: m.sent_ms,
                });
                continue;
            }
            let receive_count = m.receive_count + 1;
            entries.push(Entry::Receive {
                id,
                visible_ms: now + vt,
                receive_count,
            });
            out.push(ReceivedMessage {
                message_id: format!("{id:016x}"),
                receipt_handle: format!("{id:x}.{receive_count}"),
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                receive_count,
                sent_ms: m.sent_ms,
            });
        }
        self.write(entries)?;
        Ok((out, redrive))
    }

    /// Deletes a message moved to a dead-letter queue.
    pub(crate) fn forget(&mut self, ids: &[u64]) -> Result<()> {
        self.write(ids.iter().map(|&id| Entry::Delete { id }).collect())
    }

    fn parse_handle(&self, handle: &str) -> Result<(u64, u32)> {
        let bad = |reason| Error::InvalidReceipt {
            handle: handle.to_string(),
            reason,
        };
        let (id, count) = handle
            .split_once('.')
            .ok_or_else(|| bad("expected ID.COUNT"))?;
        let id = u64::from_str_radix(id, 16).map_err(|_| bad("the id is not hexadecimal"))?;
        let count = count
            .parse::<u32>()
            .map_err(|_| bad("the count is not a number"))?;
        Ok((id, count))
    }

    /// Deletes by receipt handle. Deleting a message that is already gone
    /// succeeds (as in SQS); a handle from an older receive is refused.
    pub(crate) fn delete(&mut self, handle: &str) -> Result<()> {
        let (id, count) = self.parse_handle(handle)?;
        match self.messages.get(&id) {
            None => Ok(()),
            Some(m) if m.receive_count != count => Err(Error::InvalidReceipt {
                handle: handle.to_string(),
                reason: "the message was received again since: use the latest receipt handle",
            }),
            Some(_) => self.write(vec![Entry::Delete { id }]),
        }
    }

    /// Changes the visibility of an in-flight message to `now + timeout`.
    pub(crate) fn change_visibility(
        &mut self,
        handle: &str,
        timeout_ms: u64,
        now: i64,
    ) -> Result<()> {
        let (id, count) = self.parse_handle(handle)?;
        if timeout_ms > 12 * 3600 * 1000 {
            return Err(Error::InvalidConfig(format!(
                "visibility timeout must be at most 43200000 ms, not {timeout_ms}"
            )));
        }
        let m = self
            .messages
            .get(&id)
            .ok_or_else(|| Error::InvalidReceipt {
                handle: handle.to_string(),
                reason: "no such message (deleted or expired)",
            })?;
        if m.receive_count != count {
            return Err(Error::InvalidReceipt {
                handle: handle.to_string(),
                reason: "the message was received again since: use the latest receipt handle",
            });
        }
        if m.visible_ms <= now {
            return Err(Error::InvalidReceipt {
                handle: handle.to_string(),
                reason: "the message is not in flight (its visibility timeout already ended)",
            });
        }
        self.write(vec![Entry::Visibility {
            id,
            visible_ms: now + timeout_ms as i64,
        }])
    }

    /// When the next hidden message becomes visible, if any.
    pub(crate) fn next_visible_ms(&self, now: i64) -> Option<i64> {
        self.schedule.range((now + 1, 0)..).next().map(|&(t, _)| t)
    }

    /// Drops expired messages and rewrites the journal when it is mostly
    /// dead entries.
    pub(crate) fn maintain(&mut self, now: i64) -> Result<()> {
        let expired: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, m)| now.saturating_sub(m.sent_ms) > self.config.retention_ms as i64)
            .map(|(&id, _)| id)
            .collect();
        self.forget(&expired)?;
        let live: u64 = self
            .messages
            .values()
            .map(|m| m.body.len() as u64 + 128)
            .sum();
        if self.journal.size() > (1 << 20) && self.journal.size() > 4 * live {
            let snapshot: Vec<Entry> = self
                .messages
                .iter()
                .map(|(&id, m)| Entry::Send {
                    id,
                    body: m.body.clone(),
                    attributes: m.attributes.clone(),
                    sent_ms: m.sent_ms,
                    visible_ms: m.visible_ms,
                    receive_count: m.receive_count,
                })
                .collect();
            self.journal.rewrite(&snapshot)?;
        }
        Ok(())
    }

    /// Syncs the journal.
    pub(crate) fn sync(&self) -> Result<()> {
        self.journal.sync()
    }

    /// Counts for `describe`.
    pub(crate) fn info(&self, now: i64) -> QueueInfo {
        let (mut visible, mut in_flight, mut delayed) = (0, 0, 0);
        for m in self.messages.values() {
            if m.visible_ms <= now {
                visible += 1;
            } else if m.receive_count > 0 {
                in_flight += 1;
            } else {
                delayed += 1;
            }
        }
        QueueInfo {
            name: self.name.clone(),
            config: self.config.clone(),
            visible,
            in_flight,
            delayed,
            journal_bytes: self.journal.size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(b: &str) -> SendMessage {
        SendMessage {
            body: b.into(),
            ..Default::default()
        }
    }

    #[test]
    fn visibility_delete_and_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = QueueConfig {
            visibility_timeout_ms: 100,
            ..Default::default()
        };
        let mut q = Queue::open("q", dir.path(), cfg.clone(), false).expect("open");
        q.send(&[msg("a"), msg("b")], 0).expect("send");
        let (got, _) = q.receive(1, None, 10).expect("receive");
        assert_eq!(got[0].body, "a");
        let (got2, _) = q.receive(10, None, 20).expect("receive");
        assert_eq!(got2.len(), 1);
        assert_eq!(got2[0].body, "b");
        q.delete(&got2[0].receipt_handle).expect("delete");
        assert!(q.receive(10, None, 50).expect("receive").0.is_empty());
        drop(q);
        let mut q = Queue::open("q", dir.path(), cfg, false).expect("reopen");
        assert!(q.receive(10, None, 50).expect("receive").0.is_empty());
        let (again, _) = q.receive(10, None, 111).expect("receive");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
        assert!(matches!(
            q.delete(&got[0].receipt_handle),
            Err(Error::InvalidReceipt { .. })
        ));
        q.delete(&again[0].receipt_handle).expect("delete");
    }
}
