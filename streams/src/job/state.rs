//! A task's local state store: the open windows per key with their running
//! aggregates, the largest event time seen, and the task's checkpoint.
//!
//! The store lives in memory and is backed by a compacted changelog topic
//! (`{job}-changelog`, one partition per task). After each processing
//! batch the task appends, as **one** log batch (one write, one CRC), a
//! record per window changed in the batch (key `["w", key, start]`, value
//! the window's state, or a tombstone when the window closed) followed by
//! the checkpoint record (key `"checkpoint"`: next input offset, largest
//! event time, and the output partitions' ends after the batch's output).
//! A batch is thus either wholly in the changelog or, torn by a crash, cut
//! away by the torn-tail repair: state and input offset always move
//! together. Restoring replays the changelog (compaction keeps the latest
//! record per key, which is the same final state).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spec::{Aggregate, AggregateOp};
use crate::record::{ProduceRecord, Record};

/// Running aggregate of one numeric field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    /// Values seen.
    pub n: u64,
    /// Their sum.
    pub sum: f64,
    /// Smallest.
    pub min: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Acc {
    fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        self.sum += o.sum;
        for (mine, theirs, f) in [
            (&mut self.min, o.min, f64::min as fn(f64, f64) -> f64),
            (&mut self.max, o.max, f64::max),
        ] {
            if let Some(t) = theirs {
                *mine = Some(mine.map_or(t, |m| f(m, t)));
            }
        }
    }
}

/// One open window of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// The key's JSON value.
    pub key: Value,
    /// Window end (exclusive).
    pub end: i64,
    /// Records aggregated.
    pub count: u64,
    /// One accumulator per aggregate.
    pub accs: Vec<Acc>,
}

impl WindowState {
    /// An empty window.
    pub fn new(key: Value, end: i64, aggregates: usize) -> Self {
        WindowState {
            key,
            end,
            count: 0,
            accs: vec![Acc::default(); aggregates],
        }
    }

    /// Adds one record; `values[i]` is aggregate i's field value, if numeric.
    pub fn add(&mut self, values: &[Option<f64>]) {
        self.count += 1;
        for (acc, v) in self.accs.iter_mut().zip(values) {
            if let Some(v) = v {
                acc.add(*v);
            }
        }
    }

    /// Folds another window of the same key in (session merges).
    pub fn merge(&mut self, o: &WindowState) {
        self.count += o.count;
        self.end = self.end.max(o.end);
        for (a, b) in self.accs.iter_mut().zip(&o.accs) {
            a.merge(b);
        }
    }

    /// The output record's JSON value.
    pub fn output(&self, start: i64, aggregates: &[Aggregate]) -> Value {
        let mut m = Map::new();
        m.insert("key".into(), self.key.clone());
        m.insert("window_start".into(), start.into());
        m.insert("window_end".into(), self.end.into());
        for (a, acc) in aggregates.iter().zip(&self.accs) {
            let v: Value = match a.op {
                AggregateOp::Count => self.count.into(),
                AggregateOp::Sum => acc.sum.into(),
                AggregateOp::Min => acc.min.map_or(Value::Null, Value::from),
                AggregateOp::Max => acc.max.map_or(Value::Null, Value::from),
                AggregateOp::Avg => {
                    if acc.n == 0 {
                        Value::Null
                    } else {
                        (acc.sum / acc.n as f64).into()
                    }
                }
            };
            m.insert(a.output_name(), v);
        }
        Value::Object(m)
    }
}

/// The checkpoint stored with the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Next input offset to process.
    pub input_offset: u64,
    /// Largest event time seen (`i64::MIN`: none).
    pub max_event_ts: i64,
    /// Output partition → its next offset right after this batch's output.
    pub out_ends: BTreeMap<u32, u64>,
    /// Records processed so far.
    pub processed: u64,
    /// Window results emitted so far.
    pub emitted: u64,
    /// Records dropped as late so far.
    pub late: u64,
    /// Records skipped (not JSON, no key, no event time) so far.
    pub invalid: u64,
}

/// State key: (key's canonical JSON text, window start).
pub type StateKey = (String, i64);

/// The store.
#[derive(Debug, Default)]
pub struct TaskState {
    windows: BTreeMap<StateKey, WindowState>,
    by_end: BTreeSet<(i64, String, i64)>,
    dirty: BTreeSet<StateKey>,
    /// The last checkpoint restored or written.
    pub checkpoint: Option<Checkpoint>,
}

const CHECKPOINT_KEY: &[u8] = b"checkpoint";

impl TaskState {
    /// The window stored under a key.
    pub fn get(&self, k: &StateKey) -> Option<&WindowState> {
        self.windows.get(k)
    }

    /// Open windows of one key (for session merging).
    pub fn windows_of(&self, key: &str) -> Vec<(i64, WindowState)> {
        self.windows
            .range((key.to_string(), i64::MIN)..=(key.to_string(), i64::MAX))
            .map(|((_, s), w)| (*s, w.clone()))
            .collect()
    }

    /// Stores a window.
    pub fn put(&mut self, k: StateKey, w: WindowState) {
        if let Some(old) = self.windows.get(&k) {
            self.by_end.remove(&(old.end, k.0.clone(), k.1));
        }
        self.by_end.insert((w.end, k.0.clone(), k.1));
        self.dirty.insert(k.clone());
        self.windows.insert(k, w);
    }

    /// Removes a window.
    pub fn remove(&mut self, k: &StateKey) -> Option<WindowState> {
        let w = self.windows.remove(k)?;
        self.by_end.remove(&(w.end, k.0.clone(), k.1));
        self.dirty.insert(k.clone());
        Some(w)
    }

    /// Removes and returns every window whose end is at or before
    /// `closed_before` (ordered by end, key, start).
    pub fn pop_closed(&mut self, closed_before: i64) -> Vec<(StateKey, WindowState)> {
        let mut out = Vec::new();
        while let Some(first) = self.by_end.first().cloned() {
            if first.0 > closed_before {
                break;
            }
            let k = (first.1, first.2);
            if let Some(w) = self.remove(&k) {
                out.push((k, w));
            }
        }
        out
    }

    /// Number of open windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The changelog records for everything changed since the last call,
    /// followed by the checkpoint record.
    pub fn changelog_batch(
        &mut self,
        checkpoint: &Checkpoint,
        partition: u32,
    ) -> Vec<ProduceRecord> {
        let mut out = Vec::with_capacity(self.dirty.len() + 1);
        for k in std::mem::take(&mut self.dirty) {
            let key = serde_json::to_vec(&("w", &k.0, k.1)).unwrap_or_default();
            let value = self
                .windows
                .get(&k)
                .map(|w| Bytes::from(serde_json::to_vec(w).unwrap_or_default()));
            out.push(ProduceRecord {
                key: Some(key.into()),
                value,
                partition: Some(partition),
                ..Default::default()
            });
        }
        out.push(ProduceRecord {
            key: Some(Bytes::from_static(CHECKPOINT_KEY)),
            value: Some(serde_json::to_vec(checkpoint).unwrap_or_default().into()),
            partition: Some(partition),
            ..Default::default()
        });
        self.checkpoint = Some(checkpoint.clone());
        out
    }

    /// Applies one changelog record while restoring; returns false when
    /// the record is not understood.
    pub fn apply_changelog(&mut self, r: &Record) -> bool {
        let Some(k) = &r.key else { return false };
        if &k[..] == CHECKPOINT_KEY {
            return match r.value.as_deref().map(serde_json::from_slice::<Checkpoint>) {
                Some(Ok(c)) => {
                    self.checkpoint = Some(c);
                    true
                }
                _ => false,
            };
        }
        let Ok((_, key, start)) = serde_json::from_slice::<(String, String, i64)>(k) else {
            return false;
        };
        let sk = (key, start);
        match r
            .value
            .as_deref()
            .map(serde_json::from_slice::<WindowState>)
        {
            None => {
                self.remove(&sk);
            }
            Some(Ok(w)) => self.put(sk, w),
            Some(Err(_)) => return false,
        }
        true
    }

    /// Forgets what is dirty (after a restore).
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_roundtrip_restores_the_same_state() {
        let mut s = TaskState::default();
        let mut w = WindowState::new(Value::from("a"), 10, 1);
        w.add(&[Some(2.0)]);
        s.put(("\"a\"".into(), 0), w.clone());
        s.put(
            ("\"b\"".into(), 0),
            WindowState::new(Value::from("b"), 20, 1),
        );
        s.remove(&("\"b\"".into(), 0));
        let cp = Checkpoint {
            input_offset: 7,
            ..Default::default()
        };
        let batch = s.changelog_batch(&cp, 0);
        assert_eq!(batch.len(), 3);
        let mut r = TaskState::default();
        for (i, p) in batch.into_iter().enumerate() {
            let rec = Record {
                offset: i as u64,
                timestamp: 0,
                key: p.key,
                value: p.value,
                headers: vec![],
            };
            assert!(r.apply_changelog(&rec));
        }
        assert_eq!(r.checkpoint, Some(cp));
        assert_eq!(r.get(&("\"a\"".into(), 0)), Some(&w));
        assert_eq!(r.len(), 1);
        assert_eq!(r.pop_closed(10).len(), 1);
        assert!(r.is_empty());
    }
}
